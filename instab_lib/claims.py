"""Recorded numbers and claim checks.

A notebook records the numbers its claim depends on with :class:`Recorder`; the
claims themselves live in the notebook's card (``notebooks/<id>.yaml``) as two
expressions, ``value`` (over the recorded numbers) and ``check`` (over ``x``,
the value). :func:`evaluate_claims` evaluates them; ``instab verify`` and the
tests call it on the numbers of the executed notebook, so a claim is decided
by what the figure actually computed, never by the notebook grading itself.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

#: Environment variable through which the runner tells a notebook where to
#: write its numbers (``_build/executed/<label>/<id>.numbers.json``).
NUMBERS_ENV = "INSTAB_NUMBERS"

_SAFE_BUILTINS: dict[str, Any] = {
    "abs": abs,
    "min": min,
    "max": max,
    "all": all,
    "any": any,
    "len": len,
    "sum": sum,
    "sorted": sorted,
    "round": round,
    "zip": zip,
    "range": range,
    "float": float,
    "int": int,
    "bool": bool,
}


def to_jsonable(value: Any) -> Any:
    """Convert numpy/torch scalars and arrays (and nested containers) to JSON types.

    NaN and ±inf become the strings ``"nan"``, ``"inf"``, ``"-inf"`` so the file
    stays valid JSON; :func:`from_jsonable` turns them back into floats.
    """
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
    from . import repo_root

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
        """Record ``value`` under ``name`` (an identifier); the file is rewritten at once."""
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

    def report(self):
        """The claim table of this run (a pandas-free HTML/Markdown display object)."""
        from .notebooks import load_card

        # evaluate on the numbers exactly as `instab verify` reads them back (NaN/inf restored)
        numbers = from_jsonable(self.numbers)
        results = evaluate_claims(load_card(self.notebook_id).get("claims", []), numbers, self.notebook_id)
        return ClaimTable(results)


def load_numbers(path: str | os.PathLike) -> dict[str, Any]:
    """Read a numbers file written by :class:`Recorder`."""
    return from_jsonable(json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class ClaimResult:
    """One claim evaluated on one run."""

    notebook: str
    claim_id: str
    text: str
    value: Any
    passed: bool
    error: str | None = None

    def value_str(self) -> str:
        return format_value(self.value)


def format_value(value: Any) -> str:
    """Short human form of a measured value for tables."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(format_value(v) for v in list(value)[:6])
        return f"[{inner}{', …' if len(value) > 6 else ''}]"
    if isinstance(value, dict):
        inner = ", ".join(f"{k}: {format_value(v)}" for k, v in list(value.items())[:6])
        return "{" + inner + (", …" if len(value) > 6 else "") + "}"
    return str(value)


def _eval(expr: str, names: Mapping[str, Any]) -> Any:
    namespace = {"__builtins__": _SAFE_BUILTINS, "np": np, "math": math}
    namespace.update(names)
    return eval(compile(expr, "<claim>", "eval"), namespace)  # noqa: S307 - cards are repository code


def evaluate_claims(
    claims: Sequence[Mapping[str, Any]],
    numbers: Mapping[str, Any] | None,
    notebook: str = "",
) -> list[ClaimResult]:
    """Evaluate each claim's ``value`` on ``numbers`` and its ``check`` on that value.

    A claim whose numbers are missing, or whose expressions raise, fails with the
    reason in ``error``: a missing number is never a pass.
    """
    results = []
    for claim in claims:
        cid, text = claim["id"], claim.get("text", "")
        if numbers is None:
            results.append(ClaimResult(notebook, cid, text, None, False, "no recorded numbers"))
            continue
        try:
            value = _eval(claim["value"], numbers)
            passed = bool(_eval(claim["check"], {"x": value}))
            results.append(ClaimResult(notebook, cid, text, value, passed))
        except Exception as exc:  # noqa: BLE001 - reported as a failed claim
            results.append(ClaimResult(notebook, cid, text, None, False, f"{type(exc).__name__}: {exc}"))
    return results


class ClaimTable:
    """Displays claim results as a table in a notebook (HTML) or a terminal (text)."""

    def __init__(self, results: Iterable[ClaimResult]) -> None:
        self.results = list(results)

    @property
    def all_passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        return [
            (r.notebook, r.claim_id, r.text, r.error or r.value_str(), "PASS" if r.passed else "FAIL")
            for r in self.results
        ]

    def __str__(self) -> str:
        header = ("notebook", "claim", "statement", "measured", "result")
        rows = [header] + self.rows()
        widths = [min(60, max(len(row[i]) for row in rows)) for i in range(5)]

        def fmt(row: Sequence[str]) -> str:
            return "  ".join(cell[:w].ljust(w) for cell, w in zip(row, widths))

        lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        lines = ["| claim | statement | measured | result |", "|---|---|---|---|"]
        for _, cid, text, measured, result in self.rows():
            mark = "✅ pass" if result == "PASS" else "❌ FAIL"
            lines.append(f"| `{cid}` | {text} | {measured} | {mark} |")
        return "\n".join(lines)


def check_positive(name: str, value: float | Sequence[float]) -> None:
    """Raise ``ValueError`` unless ``value`` (or every element) is a finite number > 0."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ValueError(f"{name} must not be empty")
    for v in values:
        if not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be positive and finite, got {v!r}")


def check_int_at_least(name: str, value: int, minimum: int) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer ≥ ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
