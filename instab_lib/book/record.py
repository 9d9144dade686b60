"""The book's record of every claim in every column it has: ``claims.json`` and ``claims.csv``.

A *column* is one set of numbers the claims are decided on: ``default`` (this build's run at CI
scale), each perturbation column of ``results/robustness.json`` (other CPU kernels, shifted seeds;
:mod:`instab_lib.book.robustness`) and ``paper`` (the archived paper-preset runs,
:mod:`instab_lib.book.archive`). :func:`build_record` gives one :class:`ClaimRecord` per claim with
its verdict in each column and the combined verdict (:func:`combined`): *reproduced* (or *holds*,
*pass*) only where it is so in every column the book has, *mixed* otherwise with the columns named.
The claims page, the intro's summary, the robustness page and the files read this one record;
every verdict in it is :attr:`instab_lib.book.verdicts.ClaimResult.verdict` of its column.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .claims import short_source, to_jsonable
from .verdicts import SCORED_KINDS, VERDICT_WORDS, ClaimResult, format_value

__all__ = ["Column", "ClaimRecord", "Record", "build_record", "combined", "key_effect", "CI", "PAPER"]

CI, PAPER = "default", "paper"


@dataclass(frozen=True)
class Column:
    """One column: its name, what it is, and where its numbers come from."""

    name: str
    label: str
    commit: str = ""
    processor: str = ""
    cpu_capability: str = ""
    note: str = ""


@dataclass
class ClaimRecord:
    """One claim across the columns (the entry of ``claims.json``)."""

    notebook: str
    id: str
    kind: str
    heading: str | None
    source: str
    source_short: str
    text: str
    threshold: str
    null: Any
    value: Any
    value_text: str
    effect: dict[str, Any]
    verdicts: dict[str, str | None] = field(default_factory=dict)
    outcomes: dict[str, str | None] = field(default_factory=dict)
    values: dict[str, str | None] = field(default_factory=dict)
    why_not_a_test: dict[str, str] = field(default_factory=dict)
    combined: str = ""
    combined_detail: str = ""

    @property
    def key(self) -> str:
        return f"{self.notebook}/{self.id}"

    @property
    def scored(self) -> bool:
        return self.kind in SCORED_KINDS

    def differing(self, names: Sequence[str] | None = None) -> list[str]:
        """Columns (of ``names``, default: all but ``paper``) whose outcome differs from the CI
        column's (or, without one, from the most common): empty where it is the same in all."""
        names = [c for c in self.outcomes if c != PAPER] if names is None else list(names)
        seen = {c: self.outcomes[c] for c in names if self.outcomes.get(c) is not None}
        if len(set(seen.values())) <= 1:
            return []
        ci = seen.get(CI)
        base = ci if ci is not None else max(set(seen.values()), key=list(seen.values()).count)
        return [c for c, o in seen.items() if o != base]


@dataclass
class Record:
    """Every claim in every column, with the columns described."""

    columns: list[Column]
    claims: list[ClaimRecord]
    notes: dict[str, str] = field(default_factory=dict)

    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def perturbation_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.name not in (CI, PAPER)]

    def to_json(self) -> dict[str, Any]:
        return {"columns": [asdict(c) for c in self.columns], "notes": self.notes,
                "claims": [dict(asdict(c), value=to_jsonable(c.value), null=to_jsonable(c.null)) for c in self.claims]}

    def write_json(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n")
        return path

    def csv_text(self) -> str:
        names = self.column_names()
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["notebook", "id", "kind", "heading", "source", "text", "threshold", "value", "effect"]
                   + [f"verdict_{n}" for n in names] + [f"value_{n}" for n in names] + ["combined"])
        for c in self.claims:
            w.writerow([c.notebook, c.id, c.kind, c.heading or "", c.source, c.text, c.threshold, c.value_text,
                        c.effect.get("text", "")] + [c.verdicts.get(n) or "" for n in names]
                       + [c.values.get(n) or "" for n in names] + [c.combined])
        return out.getvalue()

    def write_csv(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.csv_text())
        return path

    def by_key(self) -> dict[str, ClaimRecord]:
        return {c.key: c for c in self.claims}


def _is_estimate(v: Any) -> bool:
    return isinstance(v, Mapping) and {"est", "lo", "hi"} <= set(v)


def key_effect(value: Any) -> dict[str, Any]:
    """The one effect a scoreboard row shows: the value itself when it is an estimate, else the
    first estimate of a mapping (named, with how many more there are), else the value in short."""
    if _is_estimate(value):
        return {"label": "", "est": value["est"], "lo": value["lo"], "hi": value["hi"], "n": value.get("n"),
                "text": format_value({k: value[k] for k in ("est", "lo", "hi")})}
    if isinstance(value, Mapping):
        ests = [(k, v) for k, v in value.items() if _is_estimate(v)]
        if ests:
            k, v = ests[0]
            more = f" (+{len(ests) - 1} more)" if len(ests) > 1 else ""
            return {"label": str(k), "est": v["est"], "lo": v["lo"], "hi": v["hi"], "n": v.get("n"),
                    "text": f"{k}: {format_value({x: v[x] for x in ('est', 'lo', 'hi')})}{more}"}
        items = list(value.items())[:2]
        return {"label": "", "text": ", ".join(f"{k} {format_value(v)}" for k, v in items)
                + (", …" if len(value) > 2 else "")}
    return {"label": "", "text": format_value(value) if value is not None else "—"}


def combined(verdicts: Mapping[str, str | None], kind: str) -> tuple[str, str]:
    """The verdict of a claim over every column that has it, and the columns behind it.

    The same word in every column: that word (*reproduced* only where it is reproduced in all).
    Otherwise *mixed*, with the columns of each word named."""
    seen = {c: v for c, v in verdicts.items() if v is not None}
    if not seen:
        return "—", "no column has it"
    words = list(dict.fromkeys(seen.values()))
    if len(words) == 1:
        return words[0], f"in all {len(seen)} column(s)"
    parts = [f"{w} at {', '.join(c for c, v in seen.items() if v == w)}" for w in words]
    return "mixed", "; ".join(parts)


def _record_of(r: ClaimResult) -> ClaimRecord:
    return ClaimRecord(notebook=r.notebook, id=r.claim_id, kind=r.kind, heading=r.paper, source=r.source,
                       source_short=short_source(r.source) if r.source else "", text=r.text, threshold=r.threshold,
                       null=r.null, value=r.value, value_text=r.error or r.value_str(),
                       effect=key_effect(r.value) if r.error is None else {"label": "", "text": r.error})


def _put(rec: ClaimRecord, column: str, r: ClaimResult | None) -> None:
    rec.verdicts[column] = r.verdict if r is not None else None
    rec.outcomes[column] = r.outcome if r is not None else None
    rec.values[column] = (r.error or r.value_str()) if r is not None else None
    if r is not None and r.why_not_a_test and r.scored:
        rec.why_not_a_test[column] = r.why_not_a_test


def build_record(default: Sequence[ClaimResult], paper: Sequence[ClaimResult] | None,
                 robustness: Mapping[str, Any] | None, columns: Sequence[Column]) -> Record:
    """One :class:`ClaimRecord` per claim of ``default`` (this build's results), with its verdict in
    each column: ``default``, the perturbation columns of ``robustness``
    (:func:`instab_lib.book.robustness.outcomes`: ``{(notebook, claim): {column: (outcome, value)}}``)
    and ``paper`` (results on the archived paper-preset numbers; None where a page has no entry)."""
    paper_by = {(r.notebook, r.claim_id): r for r in (paper or [])}
    perturbed = dict(robustness or {})
    names = [c.name for c in columns]
    out = []
    for r in default:
        rec = _record_of(r)
        _put(rec, CI, r)
        for name in names:
            if name in (CI, PAPER):
                continue
            got = perturbed.get((r.notebook, r.claim_id), {}).get(name)
            rec.outcomes[name] = got[0] if got else None
            rec.verdicts[name] = VERDICT_WORDS[r.kind][got[0]] if got else None
            rec.values[name] = got[1] if got else None
        if PAPER in names:
            _put(rec, PAPER, paper_by.get((r.notebook, r.claim_id)))
        rec.combined, rec.combined_detail = combined(rec.verdicts, r.kind)
        out.append(rec)
    return Record(list(columns), out)
