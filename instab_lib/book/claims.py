"""Recorded numbers and the claim tables.

A notebook records the numbers its claims depend on with :class:`Recorder`; the claims themselves
live in the notebook's card (``notebooks/<id>.yaml``; its loader and the claims' schema are
:mod:`instab_lib.book.cards`). :mod:`instab_lib.book.verdicts` decides each claim on the numbers
(its outcome and verdict word, the page's verdict); ``instab verify``, the pages and the tests call
it on the numbers of the executed notebook, so a claim is decided by what the figure computed,
never by the notebook grading itself. A notebook asks for a verdict while it runs with
:meth:`Recorder.verdict`, so that prose stating an outcome is generated from the same field the
claim tables show.

A claim in a card
-----------------
.. code-block:: yaml

   - id: oscillation_separates
     kind: paper                 # paper | reading | beyond | finding | identity | illustration | precondition
     paper: eos                  # the heading of book/paper_claims.yml (paper and reading claims)
     source: "B Fig 1 caption: “…”"
     text: "..."
     value: osc_ratio            # expression over the recorded numbers → x
     above: 5                    # interval form: x is an Estimate; holds when x['lo'] > 5
     null: 1                     # what the statistic would be if the effect were absent
     test_if: "n_seeds >= 5"     # optional: False ⇒ "not a test", with test_reason
     test_reason: "..."

``value`` is evaluated with the recorded numbers as names; then either

* **interval form** — ``above: t`` (or ``below: t``): ``x`` must be an
  :class:`instab_lib.experiments.stats.Estimate` (recorded as a dict with ``est, lo, hi, se, n``);
  the claim holds when the whole interval lies on the claimed side (``x['lo'] > t``,
  resp. ``x['hi'] < t``) and is contradicted when it excludes the null on the other side. Its
  margin is ``(est − t)/se`` (resp. ``(t − est)/se``);
* **expression form** — ``check:`` an expression in ``x`` returning a bool, an optional
  ``contradicts:`` expression in ``x``, and an optional ``margin:`` expression in ``x``.

Every claim declares ``null``: the value ``x`` would take if the effect were absent. A fast test
asserts that the check (and ``contradicts``) is False on it, so no check passes without the effect.
Expressions see only the recorded numbers, ``np``, ``math`` and a few safe builtins.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import cards
from .verdicts import (CHECK_KINDS, KIND_ORDER, SCORED_KINDS, THIN_MARGIN, VERDICT_CLASS, ClaimResult, PageVerdict,
                       check_on_null, evaluate_claims, format_value, null_value, page_verdict, threshold_text,
                       verdict_span)

__all__ = ["NUMBERS_ENV", "Recorder", "load_numbers", "to_jsonable", "from_jsonable", "ClaimTable", "claims_html",
           "sort_results", "ClaimResult", "PageVerdict", "evaluate_claims", "page_verdict", "check_on_null",
           "null_value", "threshold_text", "format_value", "THIN_MARGIN", "VERDICT_CLASS", "verdict_span",
           "SCORED_KINDS", "CHECK_KINDS", "KIND_ORDER"]

#: Environment variable through which the runner tells a notebook where to
#: write its numbers (``_build/executed/<label>/<id>.numbers.json``).
NUMBERS_ENV = "INSTAB_NUMBERS"


def to_jsonable(value: Any) -> Any:
    """Convert numpy/torch scalars and arrays, :class:`~instab_lib.experiments.stats.Estimate` s (and
    nested containers) to JSON types.

    NaN and ±inf become the strings ``"nan"``, ``"inf"``, ``"-inf"`` so the file
    stays valid JSON; :func:`from_jsonable` turns them back into floats.
    """
    if hasattr(value, "to_dict") and callable(value.to_dict) and not isinstance(value, Mapping):
        return to_jsonable(value.to_dict())
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.floating, float)):
        f = float(value)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return f
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise TypeError(f"cannot record a value of type {type(value).__name__}")


def from_jsonable(value: Any) -> Any:
    """Inverse of :func:`to_jsonable` for the non-finite float markers."""
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: from_jsonable(v) for k, v in value.items()}
    return value


def default_numbers_path(notebook_id: str) -> Path:
    """Where numbers go when no runner set :data:`NUMBERS_ENV` (interactive use, plain papermill)."""
    from ..experiments import repo_root

    return repo_root() / "_build" / "executed" / "interactive" / f"{notebook_id}.numbers.json"


class Recorder:
    """Collects the numbers a notebook's claims are decided on and writes them as JSON.

    The file is rewritten atomically after every :meth:`record`, so a notebook
    that fails half-way leaves the numbers it did compute (and no torn file).
    """

    def __init__(self, notebook_id: str, path: str | os.PathLike | None = None) -> None:
        self.notebook_id = notebook_id
        env = os.environ.get(NUMBERS_ENV)
        self.path = Path(path or env or default_numbers_path(notebook_id))
        self.numbers: dict[str, Any] = {}

    def record(self, name: str, value: Any) -> None:
        """Record ``value`` under ``name`` (an identifier); the file is rewritten at once. Returns
        nothing, so that a cell ending in a ``record`` call shows no Python repr on the page."""
        if not name.isidentifier():
            raise ValueError(f"recorded names must be identifiers, got {name!r}")
        self.numbers[name] = to_jsonable(value)
        self.save()

    def save(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.numbers, indent=1, sort_keys=True))
        os.replace(tmp, self.path)
        return self.path

    def report(self) -> "ClaimTable":
        """The claim table of this run (HTML in a notebook, text in a terminal)."""
        # evaluate on the numbers exactly as `instab verify` reads them back (NaN/inf restored)
        numbers = from_jsonable(self.numbers)
        results = evaluate_claims(cards.load_card(self.notebook_id).get("claims", []), numbers, self.notebook_id)
        return ClaimTable(results)

    def verdict(self, claim_id: str) -> ClaimResult:
        """The card's claim ``claim_id`` decided on the numbers recorded so far, the page's
        preconditions included (one not met makes a scored claim *not a test*): the same
        :class:`~instab_lib.book.verdicts.ClaimResult` the claim table, the page's verdict and
        the claims page read. Prose that states an outcome is generated from it
        (``v = rec.verdict("x")``; ``v.verdict`` is the word, ``v.verdict_html`` the coloured word
        that names its claim). Raises ``RuntimeError`` when the claim or a precondition cannot be
        decided yet (its numbers are not recorded)."""
        claims = cards.load_card(self.notebook_id).get("claims", [])
        target = [c for c in claims if c["id"] == claim_id]
        if not target:
            raise KeyError(f"{self.notebook_id}: the card has no claim {claim_id!r}")
        pre = [c for c in claims if c["kind"] == "precondition" and c["id"] != claim_id]
        results = evaluate_claims(pre + target, from_jsonable(self.numbers), self.notebook_id)
        for r in results:
            if r.error is not None:
                what = "precondition" if r.claim_id != claim_id else "claim"
                raise RuntimeError(f"{self.notebook_id}: the {what} {r.claim_id!r} cannot be decided yet ({r.error}); "
                                   f"record its numbers before asking for the verdict of {claim_id!r}")
        return results[-1]


def load_numbers(path: str | os.PathLike) -> dict[str, Any]:
    """Read a numbers file written by :class:`Recorder`."""
    return from_jsonable(json.loads(Path(path).read_text()))


def sort_results(results: Iterable[ClaimResult]) -> list[ClaimResult]:
    """Failures first (failing checks, missing numbers), then by kind (paper, reading, beyond,
    finding, then the checks), within a kind the thinnest statistical margins first."""
    def key(r: ClaimResult) -> tuple:
        margin = r.margin if r.margin is not None and not math.isnan(r.margin) else math.inf
        return (r.ok, KIND_ORDER.index(r.kind) if r.kind in KIND_ORDER else len(KIND_ORDER), margin, r.notebook,
                r.claim_id)
    return sorted(results, key=key)


class ClaimTable:
    """Claim results as a table: HTML in a notebook, aligned text in a terminal."""

    def __init__(self, results: Iterable[ClaimResult]) -> None:
        self.results = list(results)

    @property
    def all_passed(self) -> bool:
        """Every claim in order for CI: no check fails and no number is missing. A paper claim
        that is not reproduced is a result, not a failure."""
        return bool(self.results) and all(r.ok for r in self.results)

    @property
    def failed(self) -> list[ClaimResult]:
        return [r for r in self.results if not r.ok]

    def rows(self) -> list[tuple[str, ...]]:
        out = []
        for r in sort_results(self.results):
            out.append((r.notebook, r.claim_id, r.kind, r.error or r.value_str(), r.threshold,
                        r.margin_str() + (" (thin)" if r.thin and r.outcome in ("holds", "pass") else ""), r.verdict))
        return out

    def __str__(self) -> str:
        header = ("notebook", "claim", "kind", "measured", "threshold", "margin", "verdict")
        rows = [header] + self.rows()
        widths = [min(48, max(len(row[i]) for row in rows)) for i in range(len(header))]

        def fmt(row: Sequence[str]) -> str:
            return "  ".join(cell[:w].ljust(w) for cell, w in zip(row, widths)).rstrip()

        return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]])

    def _repr_html_(self) -> str:
        return claims_html(self.results)


#: How a table names each kind.
KIND_LABEL = {"paper": "paper claim", "reading": "our reading", "beyond": "beyond the papers", "finding": "finding",
              "identity": "identity", "illustration": "illustration", "precondition": "precondition"}


def short_source(source: str) -> str:
    """Where a statement comes from, without its quote: ``B Fig 1 caption: “…”`` → ``B Fig 1 caption``."""
    cut = min((i for i in (source.find(":"), source.find("“"), source.find(";")) if i > 0), default=len(source))
    text = source[:cut].strip().rstrip(",(")
    text = text if len(text) <= 44 else text[:text.rfind(" ", 0, 42)].rstrip(",(") + " …"
    return text + ")" * max(0, text.count("(") - text.count(")"))


def measured_cell(r: ClaimResult) -> str:
    """The measured value (estimate [90% interval]) with the threshold in a tooltip and the margin."""
    tip = f"threshold: {r.threshold}" + (f"; margin {r.margin_str()}" if r.margin is not None else "")
    thin = ' <span class="claim-thin">thin</span>' if r.thin and r.outcome in ("holds", "pass") else ""
    margin = f" <small>({html.escape(r.margin_str())})</small>" if r.margin is not None else ""
    return (f'<span title="{html.escape(tip)}">{html.escape(r.error or r.value_str())}</span>{margin}{thin}')


def verdict_cell(r: ClaimResult) -> str:
    """The verdict word, and why it is not a test where it is not."""
    why = f"<br><small>{html.escape(r.why_not_a_test)}</small>" if r.why_not_a_test and r.scored else ""
    return r.verdict_html + why


def _row(r: ClaimResult, with_notebook: bool) -> str:
    nb = html.escape(r.notebook)
    page = f'<a href="../notebooks/{nb}.html">{nb}</a> · ' if with_notebook else ""
    meta = f"{page}{KIND_LABEL.get(r.kind, r.kind)} · <code>{html.escape(r.claim_id)}</code>"
    if r.scored and r.source:
        meta += f" · {html.escape(short_source(r.source))}"
    return (f'<tr data-claim="{html.escape(r.key)}" data-kind="{html.escape(r.kind)}">'
            f"<td>{html.escape(r.text)}<br><small>{meta}</small></td><td>{measured_cell(r)}</td>"
            f"<td>{verdict_cell(r)}</td></tr>")


def _table(results: Sequence[ClaimResult], with_notebook: bool) -> str:
    head = "<thead><tr><th>claim</th><th>measured [90% interval]</th><th>verdict</th></tr></thead>"
    body = "\n".join(_row(r, with_notebook) for r in sort_results(results))
    return f'<table class="claim-table">{head}<tbody>\n{body}\n</tbody></table>'


def claims_html(results: Sequence[ClaimResult], with_notebook: bool = False) -> str:
    """A page's claim table in words: the scored claims (claim, measured value with its 90 %
    interval, verdict; the threshold in a tooltip), then the checks (identities, illustrations,
    preconditions) folded in a ``<details>`` that opens by itself when one fails."""
    scored = [r for r in results if r.scored]
    checks = [r for r in results if not r.scored]
    out = [_table(scored, with_notebook)] if scored else []
    if checks:
        n_ok = sum(r.ok for r in checks)
        summary = f"Checks of the code and the experiment: {n_ok} of {len(checks)} pass"
        out.append(f'<details class="claim-checks"{" open" if n_ok < len(checks) else ""}><summary>{summary}'
                   f"</summary>\n{_table(checks, with_notebook)}\n</details>")
    return "\n".join(out)
