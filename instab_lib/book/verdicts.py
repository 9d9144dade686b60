"""A claim's outcome and verdict, computed from one run's numbers (issue 19).

Every claim of a card (``notebooks/<id>.yaml``; schema in :mod:`instab_lib.book.cards`) has a
``kind``. :func:`evaluate_claims` evaluates the claims of one page on the numbers of one run and
gives each a :class:`ClaimResult` whose :attr:`ClaimResult.outcome` and
:attr:`ClaimResult.verdict` are *the* field every table, page, count and sentence reads.

Outcomes
--------
Scored kinds (:data:`SCORED_KINDS`: ``paper``, ``reading``, ``beyond``, ``finding``):

* ``holds`` — the check passes (interval form: the whole 90 % interval beyond the threshold);
* ``not resolved`` — the check fails without contradicting (the interval includes the null);
* ``contradicted`` — interval form: the interval excludes the null on the side opposite to the
  claim; expression form: the card's optional ``contradicts:`` expression in ``x`` is true;
* ``not a test`` — the claim's ``test_if`` is False on the numbers (the setting is too small or
  unlike the paper's: ``test_reason`` says why), or a precondition of the page is not met.

Check kinds (:data:`CHECK_KINDS`: ``identity``, ``illustration``, ``precondition``): ``pass`` or
``FAIL``. A claim whose numbers are missing, or whose expressions raise, is ``error``.

Verdict words (:data:`VERDICT_WORDS`): paper and reading claims read *reproduced / not reproduced
/ contradicted / not a test*; beyond and finding claims *holds / not shown / contradicted / not a
test*; identities and illustrations *pass / FAIL*; preconditions *met / not met*; an error *FAIL*.

Only a failing check and missing numbers fail CI (:attr:`ClaimResult.ok`); a paper claim that is
not reproduced is a result, not a failure. What CI pins about scored claims lives apart, in the
tests' expectation file (:func:`compare_expectations`).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .cards import claim_form

__all__ = ["SCORED_KINDS", "CHECK_KINDS", "KIND_ORDER", "OUTCOMES", "VERDICT_WORDS", "VERDICT_CLASS", "ClaimResult",
           "evaluate_claims", "null_value", "check_on_null", "threshold_text", "format_value", "PageVerdict",
           "page_verdict", "kind_counts", "compare_expectations", "verdict_span", "THIN_MARGIN"]

#: Kinds that get a verdict (scored against a statement) and never fail CI by their outcome.
SCORED_KINDS = ("paper", "reading", "beyond", "finding")
#: Kinds that are checks: pass or FAIL, and a FAIL fails CI.
CHECK_KINDS = ("identity", "illustration", "precondition")
#: The order in which tables list the kinds.
KIND_ORDER = SCORED_KINDS + CHECK_KINDS
HOLDS, NOT_RESOLVED, CONTRADICTED, NOT_A_TEST = "holds", "not resolved", "contradicted", "not a test"
PASS, FAIL, ERROR = "pass", "FAIL", "error"
#: Every outcome a claim can have.
OUTCOMES = (HOLDS, NOT_RESOLVED, CONTRADICTED, NOT_A_TEST, PASS, FAIL, ERROR)

_PAPER_WORDS = {HOLDS: "reproduced", NOT_RESOLVED: "not reproduced", CONTRADICTED: "contradicted",
                NOT_A_TEST: "not a test", ERROR: "FAIL"}
_OWN_WORDS = {HOLDS: "holds", NOT_RESOLVED: "not shown", CONTRADICTED: "contradicted", NOT_A_TEST: "not a test",
              ERROR: "FAIL"}
_CHECK_WORDS = {PASS: "pass", FAIL: "FAIL", ERROR: "FAIL"}
#: kind -> outcome -> the word every table and sentence shows.
VERDICT_WORDS: dict[str, dict[str, str]] = {
    "paper": _PAPER_WORDS, "reading": _PAPER_WORDS, "beyond": _OWN_WORDS, "finding": _OWN_WORDS,
    "identity": _CHECK_WORDS, "illustration": _CHECK_WORDS,
    "precondition": {PASS: "met", FAIL: "not met", ERROR: "FAIL"},
}
#: verdict word -> CSS class (book/_static/companion.css).
VERDICT_CLASS = {"reproduced": "claim-pass", "holds": "claim-pass", "pass": "claim-pass", "met": "claim-pass",
                 "not reproduced": "claim-notrep", "not shown": "claim-notrep", "contradicted": "claim-fail",
                 "not a test": "claim-nottest", "FAIL": "claim-fail", "not met": "claim-fail",
                 "mixed": "claim-notrep", "failing": "claim-fail", "partly reproduced": "claim-notrep",
                 "checks only": "claim-pass", "no paper claim": "claim-nottest", "not tested": "claim-nottest"}
#: A margin (in standard errors) below this is marked as thin.
THIN_MARGIN = 2.0

_SAFE_BUILTINS: dict[str, Any] = {
    "abs": abs, "min": min, "max": max, "all": all, "any": any, "len": len, "sum": sum, "sorted": sorted,
    "round": round, "zip": zip, "range": range, "float": float, "int": int, "bool": bool, "list": list,
    "dict": dict, "tuple": tuple, "str": str, "isinstance": isinstance,
}


def verdict_span(word: str, claim: str | None = None, column: str | None = None) -> str:
    """A verdict word as coloured HTML; with ``claim`` (``"<notebook>/<id>"``) and ``column`` (the
    numbers it was decided on: ``default``, ``paper``, a perturbation, ``combined``) it carries
    ``data-claim``/``data-column``/``data-verdict`` so tests can read every place a claim's verdict
    is shown."""
    attrs = ""
    if claim:
        attrs = (f' data-claim="{html.escape(claim)}" data-column="{html.escape(column or "default")}"'
                 f' data-verdict="{html.escape(word)}"')
    return f'<span class="{VERDICT_CLASS.get(word, "")}"{attrs}>{html.escape(word)}</span>'


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


def _contradicted(claim: Mapping[str, Any], x: Any) -> bool:
    """Interval form: the interval excludes the null on the side opposite to the claim. Expression
    form: the card's ``contradicts:`` expression in ``x`` (False when the card has none)."""
    if claim_form(claim) == "expression":
        expr = claim.get("contradicts")
        return bool(_eval(expr, {"x": x})) if expr is not None else False
    if not isinstance(x, Mapping) or "lo" not in x:
        return False
    n = float(null_value(claim)["est"])
    return bool(float(x["hi"]) < n) if "above" in claim else bool(float(x["lo"]) > n)


def null_value(claim: Mapping[str, Any]) -> Any:
    """The ``x`` of the claim's declared null (a point :class:`Estimate` for the interval form)."""
    from ..experiments.stats import Estimate

    null = claim["null"]
    if claim_form(claim) == "interval" and not isinstance(null, Mapping):
        return Estimate.point(float(null)).to_dict()
    return null


def check_on_null(claim: Mapping[str, Any]) -> bool:
    """Whether the claim's declared null passes its check or contradicts it (it must do neither:
    the null is what the statistic would be if the effect were absent)."""
    x = null_value(claim)
    try:
        passed, _ = _decide(claim, x)
    except Exception:  # noqa: BLE001 - a check that cannot even be evaluated on the null does not pass it
        passed = False
    try:
        contra = claim_form(claim) == "expression" and _contradicted(claim, x)
    except Exception:  # noqa: BLE001
        contra = False
    return passed or contra


def threshold_text(claim: Mapping[str, Any]) -> str:
    """The threshold as the tables show it: ``lo > 5`` / ``hi < 0.9``, or the check expression."""
    if "above" in claim:
        return f"lo > {claim['above']:g}"
    if "below" in claim:
        return f"hi < {claim['below']:g}"
    return str(claim.get("check", ""))


def format_value(value: Any) -> str:
    """Short human form of a measured value for tables (an Estimate as ``est [lo, hi]``; None, a statistic
    that could not be computed, as "not computable")."""
    if value is None:
        return "not computable"
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


@dataclass(frozen=True)
class ClaimResult:
    """One claim evaluated on one run.

    ``passed`` is the check's result and ``contradicted`` whether it is contradicted; ``tested`` is
    False where ``test_if`` is False or a precondition of the page is not met (``why_not_a_test``
    says which). :attr:`outcome` and :attr:`verdict` are derived from them and the ``kind``."""

    notebook: str
    claim_id: str
    text: str
    value: Any
    passed: bool
    error: str | None = None
    kind: str = "identity"
    threshold: str = ""
    margin: float | None = None
    null: Any = None
    paper: str | None = None
    contradicted: bool = False
    tested: bool = True
    why_not_a_test: str | None = None
    source: str = ""
    column: str = "default"

    @property
    def scored(self) -> bool:
        """A claim with a verdict (paper, reading, beyond, finding), not a check."""
        return self.kind in SCORED_KINDS

    @property
    def outcome(self) -> str:
        if self.error is not None:
            return ERROR
        if not self.scored:
            return PASS if self.passed else FAIL
        if not self.tested:
            return NOT_A_TEST
        if self.passed:
            return HOLDS
        return CONTRADICTED if self.contradicted else NOT_RESOLVED

    @property
    def verdict(self) -> str:
        """The word every table and sentence shows (:data:`VERDICT_WORDS`)."""
        return VERDICT_WORDS.get(self.kind, _CHECK_WORDS)[self.outcome]

    @property
    def ok(self) -> bool:
        """In order for CI: its numbers exist and its expressions evaluate, and a check passes.
        A scored claim never fails CI by its outcome."""
        return self.error is None and (self.scored or self.passed)

    @property
    def key(self) -> str:
        return f"{self.notebook}/{self.claim_id}"

    @property
    def verdict_html(self) -> str:
        """The verdict as a coloured word that names its claim (``data-claim``, ``data-verdict``)."""
        return verdict_span(self.verdict, self.key, self.column)

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


def _one(claim: Mapping[str, Any], numbers: Mapping[str, Any] | None, notebook: str) -> ClaimResult:
    meta = {"kind": claim.get("kind", "identity"), "threshold": threshold_text(claim), "null": claim.get("null"),
            "paper": claim.get("paper"), "source": str(claim.get("source", ""))}
    cid, text = claim["id"], claim.get("text", "")
    if numbers is None:
        return ClaimResult(notebook, cid, text, None, False, "no recorded numbers", **meta)
    try:
        value = _eval(claim["value"], numbers)
        if value is None and "test_if" in claim and not _eval(claim["test_if"], numbers):
            # the statistic cannot be computed in a setting that cannot test the claim (recorded as None):
            # not a test, with its reason; where the claim would be tested, None is an error below
            return ClaimResult(notebook, cid, text, None, False, None, tested=False,
                               why_not_a_test=str(claim["test_reason"]).strip(), **meta)
        passed, m = _decide(claim, value)
        contra = _contradicted(claim, value)
        tested, why = True, None
        if "test_if" in claim:
            tested = bool(_eval(claim["test_if"], numbers))
            why = None if tested else str(claim["test_reason"]).strip()
    except Exception as exc:  # noqa: BLE001 - reported as a claim that cannot be decided
        return ClaimResult(notebook, cid, text, None, False, f"{type(exc).__name__}: {exc}", **meta)
    return ClaimResult(notebook, cid, text, value, passed, None, margin=m, contradicted=contra, tested=tested,
                       why_not_a_test=why, **meta)


def evaluate_claims(
    claims: Sequence[Mapping[str, Any]],
    numbers: Mapping[str, Any] | None,
    notebook: str = "",
) -> list[ClaimResult]:
    """Evaluate each claim of one page on ``numbers`` (see the module docstring).

    A claim whose numbers are missing, or whose expressions raise, is an ``error`` whatever its
    kind: a missing number is never a pass. When a ``precondition`` of the page is not met (or
    cannot be evaluated), every scored claim of the page is ``not a test``.
    """
    results = [_one(c, numbers, notebook) for c in claims]
    unmet = [r.claim_id for r in results if r.kind == "precondition" and (r.error or not r.passed)]
    if unmet:
        why = f"a precondition of the page is not met ({', '.join(unmet)})"
        results = [replace(r, tested=False, why_not_a_test=why) if r.scored and r.error is None else r
                   for r in results]
    return results


def kind_counts(results: Iterable[ClaimResult]) -> dict[str, dict[str, int]]:
    """kind -> verdict word -> how many (kinds and words in table order)."""
    out: dict[str, dict[str, int]] = {}
    for r in results:
        out.setdefault(r.kind, {})
        out[r.kind][r.verdict] = out[r.kind].get(r.verdict, 0) + 1
    return {k: out[k] for k in KIND_ORDER if k in out}


# --------------------------------------------------------------------------- a page's verdict
def _count_text(counts: Mapping[str, int]) -> str:
    order = ("reproduced", "holds", "not reproduced", "not shown", "contradicted", "not a test", "FAIL")
    return ", ".join(f"{counts[w]} {w}" for w in order if counts.get(w))


@dataclass(frozen=True)
class PageVerdict:
    """What a page's claims say as a whole. :attr:`word` counts only the page's paper claims
    (or says *checks only*, *no paper claim*, *failing*); :attr:`reason` gives the paper claims'
    counts and, apart, the readings', our own claims' and the checks'."""

    word: str
    reason: str

    @property
    def css_class(self) -> str:
        return VERDICT_CLASS.get(self.word, "")


def _paper_word(counts: Mapping[str, int]) -> str:
    n_rep, n_not = counts.get("reproduced", 0), counts.get("not reproduced", 0)
    n_con = counts.get("contradicted", 0)
    if not (n_rep or n_not or n_con):
        return "not a test"
    if n_rep and not (n_not or n_con):
        return "reproduced"
    if n_rep:
        return "partly reproduced"
    return "contradicted" if n_con and not n_not else "not reproduced"


def page_verdict(results: Sequence[ClaimResult]) -> PageVerdict:
    """The verdict of one page from its claims evaluated on one run.

    * *failing*: a check fails or numbers are missing (the page is broken, whatever else);
    * otherwise, where the page has paper claims, their verdict: *reproduced* (every paper claim
      that is a test is reproduced), *partly reproduced*, *not reproduced*, *contradicted*, or
      *not a test* (none of them is a test here);
    * *no paper claim*: readings or claims beyond the papers only;
    * *checks only*: identities, illustrations and preconditions only.
    """
    counts = kind_counts(results)
    failing = [r for r in results if not r.ok]
    checks = sum(n for k in CHECK_KINDS for n in counts.get(k, {}).values())
    n_check_ok = sum(1 for r in results if not r.scored and r.ok)
    parts = []
    for kind, label in (("paper", "paper claims"), ("reading", "our readings"), ("beyond", "beyond the papers"),
                        ("finding", "findings")):
        if counts.get(kind):
            parts.append(f"{label}: {_count_text(counts[kind])}")
    if checks:
        parts.append(f"checks: {n_check_ok} of {checks} pass")
    reason = "; ".join(parts) or "no claim"
    if failing:
        return PageVerdict("failing", f"{len(failing)} check(s) fail or lack numbers: "
                                      f"{', '.join(r.claim_id for r in failing)}; {reason}")
    if counts.get("paper"):
        return PageVerdict(_paper_word(counts["paper"]), reason)
    if any(counts.get(k) for k in SCORED_KINDS):
        return PageVerdict("no paper claim", reason)
    return PageVerdict("checks only", f"{n_check_ok} pass")


# --------------------------------------------------------------------------- expectations
def compare_expectations(results: Iterable[ClaimResult], expected: Mapping[str, Any],
                         notebooks: Iterable[str] | None = None) -> list[str]:
    """Differences between the computed verdicts of scored claims and the expectation of one label
    (``{notebook: {claim: verdict or [verdicts]}}``, e.g. the tests' ``tests/expectations.yml``):
    a verdict outside the expected ones, a scored claim with no expectation, an expectation for a
    claim that does not exist. ``notebooks`` limits the comparison to those pages. Empty: agree."""
    results = list(results)
    pages = set(notebooks) if notebooks is not None else {r.notebook for r in results} | set(expected)
    problems = []
    seen = set()
    for r in results:
        if r.notebook not in pages or not r.scored:
            continue
        seen.add((r.notebook, r.claim_id))
        want = (expected.get(r.notebook) or {}).get(r.claim_id)
        if want is None:
            problems.append(f"{r.key}: verdict {r.verdict!r} has no expectation")
            continue
        allowed = [want] if isinstance(want, str) else list(want)
        if r.verdict not in allowed:
            problems.append(f"{r.key}: verdict {r.verdict!r}, expected {' or '.join(map(repr, allowed))}")
    for nid in sorted(pages):
        for cid in (expected.get(nid) or {}):
            if (nid, cid) not in seen:
                problems.append(f"{nid}/{cid}: expected but not a scored claim of the card")
    return problems
