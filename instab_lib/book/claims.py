"""Recorded numbers and claim checks.

A notebook records the numbers its claims depend on with :class:`Recorder`; the
claims themselves live in the notebook's card (``notebooks/<id>.yaml``; its loader and the claims'
schema are :mod:`instab_lib.book.cards`).
:func:`evaluate_claims` evaluates them; ``instab verify``, the claims page and the
tests call it on the numbers of the executed notebook, so a claim is decided by what
the figure computed, never by the notebook grading itself.

A claim in a card
-----------------
.. code-block:: yaml

   - id: oscillation_separates
     status: reproduced          # reproduced | beyond | not_reproduced | identity | precondition
     paper: phases               # optional: the paper claim it bears on (book/paper_claims.yml)
     text: "..."
     value: osc_ratio            # expression over the recorded numbers → x
     above: 5                    # interval form: x is an Estimate; passes when x['lo'] > 5
     null: 1                     # what the statistic would be if the effect were absent

``value`` is evaluated with the recorded numbers as names; then either

* **interval form** — ``above: t`` (or ``below: t``): ``x`` must be an
  :class:`instab_lib.experiments.stats.Estimate` (recorded as a dict with ``est, lo, hi, se, n``);
  the claim holds when the whole interval lies on the claimed side (``x['lo'] > t``,
  resp. ``x['hi'] < t``). Its margin is ``(est − t)/se`` (resp. ``(t − est)/se``);
* **expression form** — ``check:`` an expression in ``x`` returning a bool, with an
  optional ``margin:`` expression in ``x`` (in units of the claim's uncertainty).

Every claim declares ``null``: the value ``x`` would take if the effect were absent (a
number for the interval form, evaluated as a point estimate; a literal ``x`` for the
expression form). A fast test asserts that the check is False on it, so no check can
pass on the null. Statuses:

============== ===============================================================================
reproduced     a claim of the papers, reproduced here; a failure fails CI
beyond         the companion's own claim (beyond the papers); a failure fails CI
not_reproduced a claim of the papers that this scale does not reproduce: ``check`` states the
               papers' claim, the measured effect is shown apart, never as a pass, and never
               fails CI (it is a finding, not a regression test)
identity       a closed-form or numerical identity (a regression test of the code)
precondition   the experiment measures what it says (runs trained, the limit bracketed, …)
============== ===============================================================================

Expressions see only the recorded numbers, ``np``, ``math`` and a few safe builtins.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import cards
from .cards import claim_form

#: Environment variable through which the runner tells a notebook where to
#: write its numbers (``_build/executed/<label>/<id>.numbers.json``).
NUMBERS_ENV = "INSTAB_NUMBERS"

#: Statuses whose failure fails CI.
GATING = frozenset({"reproduced", "beyond", "precondition", "identity"})
#: A margin (in standard errors) below this is marked as thin.
THIN_MARGIN = 2.0

_SAFE_BUILTINS: dict[str, Any] = {
    "abs": abs, "min": min, "max": max, "all": all, "any": any, "len": len, "sum": sum, "sorted": sorted,
    "round": round, "zip": zip, "range": range, "float": float, "int": int, "bool": bool, "list": list,
    "dict": dict, "tuple": tuple, "str": str, "isinstance": isinstance,
}


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


def load_numbers(path: str | os.PathLike) -> dict[str, Any]:
    """Read a numbers file written by :class:`Recorder`."""
    return from_jsonable(json.loads(Path(path).read_text()))


def _eval(expr: str, names: Mapping[str, Any]) -> Any:
    namespace = {"__builtins__": _SAFE_BUILTINS, "np": np, "math": math}
    namespace.update(names)
    return eval(compile(str(expr), "<claim>", "eval"), namespace)  # noqa: S307 - cards are repository code


def _as_estimate(x: Any, cid: str) -> Mapping[str, Any]:
    if not isinstance(x, Mapping) or not {"est", "lo", "hi"} <= set(x):
        raise TypeError(f"claim {cid!r} has an interval form (above/below), so its value must be an Estimate "
                        f"(est, lo, hi, se), got {format_value(x)}")
    return x


def _decide(claim: Mapping[str, Any], x: Any) -> tuple[bool, float | None]:
    """(check passed, margin or None) of ``claim`` on the value ``x``."""
    from ..experiments.stats import margin

    cid = str(claim.get("id"))
    if claim_form(claim) == "interval":
        e = _as_estimate(x, cid)
        side = "above" if "above" in claim else "below"
        t = float(claim[side])
        lo, hi, est = float(e["lo"]), float(e["hi"]), float(e["est"])
        passed = (lo > t) if side == "above" else (hi < t)
        passed = passed and math.isfinite(lo) and math.isfinite(hi)
        se = float(e.get("se", float("nan")))
        if e.get("log") and est > 0 and t > 0:  # a ratio: distance in log units
            return bool(passed), margin(math.log(est), math.log(t), se, side)
        return bool(passed), margin(est, t, se, side)
    passed = bool(_eval(claim["check"], {"x": x}))
    m = claim.get("margin")
    return passed, (float(_eval(m, {"x": x})) if m is not None else None)


def null_value(claim: Mapping[str, Any]) -> Any:
    """The ``x`` of the claim's declared null (a point :class:`Estimate` for the interval form)."""
    from ..experiments.stats import Estimate

    null = claim["null"]
    if claim_form(claim) == "interval" and not isinstance(null, Mapping):
        return Estimate.point(float(null)).to_dict()
    return null


def check_on_null(claim: Mapping[str, Any]) -> bool:
    """Whether the claim's check passes on its declared null (it must not)."""
    try:
        passed, _ = _decide(claim, null_value(claim))
    except Exception:  # noqa: BLE001 - a check that cannot even be evaluated on the null does not pass it
        return False
    return passed


def threshold_text(claim: Mapping[str, Any]) -> str:
    """The threshold as the tables show it: ``lo > 5`` / ``hi < 0.9``, or the check expression."""
    if "above" in claim:
        return f"lo > {claim['above']:g}"
    if "below" in claim:
        return f"hi < {claim['below']:g}"
    return str(claim.get("check", ""))


@dataclass(frozen=True)
class ClaimResult:
    """One claim evaluated on one run. ``passed`` is the check's result; :attr:`ok` says
    whether the claim is in order for CI (a not-reproduced claim never fails it);
    :attr:`verdict` is the word the tables show."""

    notebook: str
    claim_id: str
    text: str
    value: Any
    passed: bool
    error: str | None = None
    status: str = "reproduced"
    threshold: str = ""
    margin: float | None = None
    null: Any = None
    paper: str | None = None
    contradicted: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and (self.passed or self.status == "not_reproduced")

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return "FAIL"
        if self.status == "not_reproduced":
            return "holds here" if self.passed else ("contradicted" if self.contradicted else "not reproduced")
        return "pass" if self.passed else "FAIL"

    @property
    def thin(self) -> bool:
        """A statistical margin below :data:`THIN_MARGIN` standard errors."""
        return self.margin is not None and math.isfinite(self.margin) and self.margin < THIN_MARGIN

    def value_str(self) -> str:
        return format_value(self.value)

    def margin_str(self) -> str:
        if self.margin is None:
            return "—"
        if math.isnan(self.margin):
            return "n/a"
        if math.isinf(self.margin):
            return "∞" if self.margin > 0 else "−∞"
        return f"{self.margin:+.1f}σ"


def format_value(value: Any) -> str:
    """Short human form of a measured value for tables (an Estimate as ``est [lo, hi]``)."""
    if isinstance(value, Mapping) and {"est", "lo", "hi"} <= set(value):
        return f"{format_value(value['est'])} [{format_value(value['lo'])}, {format_value(value['hi'])}]" + (
            f" n={value['n']}" if value.get("n") else "")
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(format_value(v) for v in list(value)[:6])
        return f"[{inner}{', …' if len(value) > 6 else ''}]"
    if isinstance(value, dict):
        inner = ", ".join(f"{k}: {format_value(v)}" for k, v in list(value.items())[:6])
        return "{" + inner + (", …" if len(value) > 6 else "") + "}"
    return str(value)


def _contradicted(claim: Mapping[str, Any], x: Any) -> bool:
    """Interval form only: the interval excludes the null on the side opposite to the claim."""
    if claim_form(claim) != "interval" or not isinstance(x, Mapping) or "lo" not in x:
        return False
    n = float(null_value(claim)["est"])
    return bool(float(x["hi"]) < n) if "above" in claim else bool(float(x["lo"]) > n)


def evaluate_claims(
    claims: Sequence[Mapping[str, Any]],
    numbers: Mapping[str, Any] | None,
    notebook: str = "",
) -> list[ClaimResult]:
    """Evaluate each claim's ``value`` on ``numbers`` and decide it (see the module docstring).

    A claim whose numbers are missing, or whose expressions raise, fails with the
    reason in ``error`` whatever its status: a missing number is never a pass.
    """
    results = []
    for claim in claims:
        cid, text = claim["id"], claim.get("text", "")
        meta = {"status": claim.get("status", "reproduced"), "threshold": threshold_text(claim),
                "null": claim.get("null"), "paper": claim.get("paper")}
        if numbers is None:
            results.append(ClaimResult(notebook, cid, text, None, False, "no recorded numbers", **meta))
            continue
        try:
            value = _eval(claim["value"], numbers)
            passed, m = _decide(claim, value)
            results.append(ClaimResult(notebook, cid, text, value, passed, None, margin=m,
                                       contradicted=_contradicted(claim, value), **meta))
        except Exception as exc:  # noqa: BLE001 - reported as a failed claim
            results.append(ClaimResult(notebook, cid, text, None, False, f"{type(exc).__name__}: {exc}", **meta))
    return results


def sort_results(results: Iterable[ClaimResult]) -> list[ClaimResult]:
    """Failures first, then statistical claims by margin (thinnest first), then the
    deterministic ones, then the not-reproduced findings."""
    def key(r: ClaimResult) -> tuple:
        if not r.ok:
            return (0, 0.0, r.notebook, r.claim_id)
        if r.status == "not_reproduced":
            return (3, 0.0, r.notebook, r.claim_id)
        if r.margin is not None and not math.isnan(r.margin):
            return (1, r.margin, r.notebook, r.claim_id)
        return (2, 0.0, r.notebook, r.claim_id)
    return sorted(results, key=key)


class ClaimTable:
    """Claim results as a table: HTML in a notebook, aligned text in a terminal."""

    def __init__(self, results: Iterable[ClaimResult]) -> None:
        self.results = list(results)

    @property
    def all_passed(self) -> bool:
        """Every claim in order for CI (not-reproduced findings do not count against it)."""
        return bool(self.results) and all(r.ok for r in self.results)

    @property
    def failed(self) -> list[ClaimResult]:
        return [r for r in self.results if not r.ok]

    def rows(self) -> list[tuple[str, ...]]:
        out = []
        for r in sort_results(self.results):
            out.append((r.notebook, r.claim_id, r.status.replace("_", " "), r.error or r.value_str(), r.threshold,
                        r.margin_str() + (" (thin)" if r.thin else ""), r.verdict))
        return out

    def __str__(self) -> str:
        header = ("notebook", "claim", "status", "measured", "threshold", "margin", "result")
        rows = [header] + self.rows()
        widths = [min(48, max(len(row[i]) for row in rows)) for i in range(len(header))]

        def fmt(row: Sequence[str]) -> str:
            return "  ".join(cell[:w].ljust(w) for cell, w in zip(row, widths)).rstrip()

        return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]])

    def _repr_html_(self) -> str:
        return claims_html(self.results, with_notebook=False)


VERDICT_CLASS = {"pass": "claim-pass", "FAIL": "claim-fail", "not reproduced": "claim-notrep",
                 "contradicted": "claim-fail", "holds here": "claim-notrep"}


def claims_html(results: Sequence[ClaimResult], with_notebook: bool = True, link: bool = False,
                extra: tuple[str, Mapping[tuple[str, str], str]] | None = None) -> str:
    """An HTML table of claim results (failures first, thinnest margins next), with the
    verdict coloured and spelled out (readable without an emoji font). ``extra`` adds a last
    column: its header and, per ``(notebook, claim id)``, the cell's HTML ("—" where absent)."""
    head = (["page"] if with_notebook else []) + ["claim", "status", "statement", "measured", "threshold",
                                                  "margin", "result"] + ([extra[0]] if extra else [])
    lines = ['<table class="claim-table">', "<thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead>",
             "<tbody>"]
    for r in sort_results(results):
        cells = []
        if with_notebook:
            nb = html.escape(r.notebook)
            cells.append(f'<a href="../notebooks/{nb}.html">{nb}</a>' if link else nb)
        cells += [f"<code>{html.escape(r.claim_id)}</code>", html.escape(r.status.replace("_", " ")),
                  html.escape(r.text), html.escape(r.error or r.value_str()), f"<code>{html.escape(r.threshold)}</code>",
                  html.escape(r.margin_str()) + (' <span class="claim-thin">thin</span>' if r.thin else ""),
                  f'<span class="{VERDICT_CLASS.get(r.verdict, "")}">{html.escape(r.verdict)}</span>']
        if extra:
            cells.append(extra[1].get((r.notebook, r.claim_id), "—"))
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


# --------------------------------------------------------------------------- a page's verdict
#: The one-word verdicts of a page, from best to worst, with their CSS class.
PAGE_VERDICTS = {"reproduced": "claim-pass", "partly reproduced": "claim-notrep", "not reproduced": "claim-notrep",
                 "not testable at this scale": "claim-notrep", "failing": "claim-fail"}


@dataclass(frozen=True)
class PageVerdict:
    """What a page's claims say as a whole: :attr:`word` (a key of :data:`PAGE_VERDICTS`) and a
    one-line :attr:`reason` counting the claims behind it."""

    word: str
    reason: str

    @property
    def css_class(self) -> str:
        return PAGE_VERDICTS[self.word]


def _ids(results: Sequence[ClaimResult]) -> str:
    return ", ".join(r.claim_id for r in results)


def _own_text(own: Sequence[ClaimResult]) -> str:
    n_id = sum(r.status == "identity" for r in own)
    n_own = len(own) - n_id
    parts = ([f"{n_id} identity check{'s' if n_id != 1 else ''}"] if n_id else []) + (
        [f"{n_own} of the companion's own claim{'s' if n_own != 1 else ''}"] if n_own else [])
    return " and ".join(parts)


def page_verdict(results: Sequence[ClaimResult]) -> PageVerdict:
    """The verdict of one page from its claims evaluated on one run.

    * *failing*: a check that gates CI fails (or its numbers are missing) — unless every
      failing check is a precondition, then *not testable at this scale* (the experiment does
      not measure what it should, e.g. the limit is not bracketed);
    * *partly reproduced*: some of the papers' claims hold here and some are not reproduced;
    * *not reproduced*: the papers' claims on this page are not reproduced at this scale;
    * *reproduced*: every claim of the papers holds, or the page checks identities or its own
      claims only and they hold;
    * *not testable at this scale*: no claim on the page says anything about the papers.
    """
    failing = [r for r in results if not r.ok]
    if failing:
        if all(r.status == "precondition" for r in failing):
            return PageVerdict("not testable at this scale", f"the experiment's precondition(s) {_ids(failing)} "
                                                             "fail at this scale")
        return PageVerdict("failing", f"{len(failing)} check(s) fail: {_ids(failing)}")
    held = [r for r in results if r.status in ("reproduced", "not_reproduced") and r.passed]
    missed = [r for r in results if r.status == "not_reproduced" and not r.passed]
    own = [r for r in results if r.status in ("identity", "beyond") and r.passed]
    extra = f"; {_own_text(own)} hold" if own else ""
    if held and missed:
        return PageVerdict("partly reproduced", f"{len(held)} of the papers' claims hold here, {len(missed)} "
                                                f"not reproduced ({_ids(missed)}){extra}")
    if missed:
        return PageVerdict("not reproduced", f"the papers' claims on this page ({_ids(missed)}) are not "
                                             f"reproduced at this scale{extra}")
    if held:
        return PageVerdict("reproduced", f"{len(held)} of the papers' claims hold here{extra}")
    if own:
        return PageVerdict("reproduced", f"{_own_text(own)} hold; no check is marked as one of the papers' claims")
    return PageVerdict("not testable at this scale", "no claim on this page is checked at this scale")
