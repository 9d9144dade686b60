"""Input validation for the whole library: one-line ``ValueError`` s before any compute.

Every check returns the validated value (converted to ``float``/``int`` where that is
what the caller needs), so ``lr = positive("learning rate", lr)`` reads naturally.
:func:`check_parameters` validates a notebook's parameters against the ``parameters:``
section of its card (types and ranges), which ``instab run`` and the papermill runner
call before a kernel starts.

A parameter spec (one entry of a card's ``parameters:``)::

    epochs: {type: int, min: 20}
    limit_etas: {type: list, items: float, min: 0, exclusive_min: true, min_len: 2}
    executor: {type: str, nullable: true}
    slq_order: {type: int, min: 5, doc: "Lanczos steps per SLQ probe"}

``type`` is one of ``int``, ``float`` (an int is accepted), ``bool``, ``str``, ``list``
(with ``items``: the element type) or ``dict``; ``min``/``max`` bound numbers (elements
of a list), ``exclusive_min`` makes ``min`` strict, ``choices`` lists allowed values,
``min_len``/``max_len`` bound a list's length, ``unique`` forbids repeated elements and
``nullable`` admits ``None``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["positive", "nonnegative", "unit_interval", "integer", "check_positive", "check_int_at_least",
           "check_parameters", "check_parameter", "PARAMETER_TYPES"]

_NUMBER = (int, float, np.integer, np.floating)


def _is_number(v: Any) -> bool:
    return isinstance(v, _NUMBER) and not isinstance(v, (bool, np.bool_))


def positive(name: str, value: Any) -> float:
    """``float(value)``, or ``ValueError`` unless it is a finite number > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if isinstance(value, (bool, np.bool_)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def nonnegative(name: str, value: Any) -> float:
    """``float(value)``, or ``ValueError`` unless it is a finite number ≥ 0."""
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return v


def unit_interval(name: str, value: Any, *, allow_zero: bool = True) -> float:
    """``float(value)``, or ``ValueError`` unless it lies in [0, 1) (or (0, 1))."""
    v = float(value)
    lo_ok = v >= 0 if allow_zero else v > 0
    if not (lo_ok and v < 1):
        raise ValueError(f"{name} must lie in {'[0' if allow_zero else '(0'}, 1), got {value!r}")
    return v


def integer(name: str, value: Any, minimum: int = 1, *, none_ok: bool = False) -> int | None:
    """``int(value)``, or ``ValueError`` unless it is an integer ≥ ``minimum`` (or None with ``none_ok``)."""
    if value is None and none_ok:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}{' or None' if none_ok else ''}, got {value!r}")
    return int(value)


def check_positive(name: str, value: float | Sequence[float]) -> None:
    """Raise ``ValueError`` unless ``value`` (or every element of a non-empty list) is a finite number > 0."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ValueError(f"{name} must not be empty")
    for v in values:
        if not _is_number(v) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be positive and finite, got {v!r}")


def check_int_at_least(name: str, value: int, minimum: int) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer ≥ ``minimum``."""
    integer(name, value, minimum)


# --------------------------------------------------------------------------- card parameters
PARAMETER_TYPES = ("int", "float", "bool", "str", "list", "dict")
_SPEC_KEYS = {"type", "items", "min", "max", "exclusive_min", "choices", "min_len", "max_len", "unique",
              "nullable", "doc"}


def _check_scalar(name: str, v: Any, kind: str, spec: Mapping[str, Any]) -> None:
    if kind == "int":
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    elif kind == "float":
        if not _is_number(v) or not math.isfinite(float(v)):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    elif kind == "bool":
        if not isinstance(v, (bool, np.bool_)):
            raise ValueError(f"{name} must be true or false, got {v!r}")
    elif kind == "str":
        if not isinstance(v, str):
            raise ValueError(f"{name} must be a string, got {v!r}")
    elif kind == "dict":
        if not isinstance(v, Mapping):
            raise ValueError(f"{name} must be a mapping, got {v!r}")
    else:
        raise ValueError(f"unknown parameter type {kind!r} for {name} (known: {', '.join(PARAMETER_TYPES)})")
    if kind in ("int", "float"):
        if "min" in spec:
            lo = spec["min"]
            if (v <= lo) if spec.get("exclusive_min") else (v < lo):
                raise ValueError(f"{name} must be {'>' if spec.get('exclusive_min') else '≥'} {lo}, got {v!r}")
        if "max" in spec and v > spec["max"]:
            raise ValueError(f"{name} must be ≤ {spec['max']}, got {v!r}")
    if "choices" in spec and v not in spec["choices"]:
        raise ValueError(f"{name} must be one of {spec['choices']}, got {v!r}")


def check_parameter(name: str, value: Any, spec: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` (one line) unless ``value`` satisfies the card's ``spec``."""
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise ValueError(f"parameter {name}: unknown spec key(s) {sorted(unknown)}")
    if value is None:
        if spec.get("nullable"):
            return
        raise ValueError(f"{name} must not be None")
    kind = spec.get("type")
    if kind == "list":
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list, got {value!r}")
        if len(value) < spec.get("min_len", 0):
            raise ValueError(f"{name} must hold at least {spec['min_len']} value(s), got {list(value)!r}")
        if "max_len" in spec and len(value) > spec["max_len"]:
            raise ValueError(f"{name} must hold at most {spec['max_len']} value(s), got {list(value)!r}")
        if spec.get("unique") and len(set(map(repr, value))) != len(value):
            raise ValueError(f"{name} must not repeat a value, got {list(value)!r}")
        item = spec.get("items")
        if item:
            sub = {k: spec[k] for k in ("min", "max", "exclusive_min", "choices") if k in spec}
            for i, v in enumerate(value):
                _check_scalar(f"{name}[{i}]", v, item, sub)
        return
    _check_scalar(name, value, kind, spec)


def check_parameters(specs: Mapping[str, Mapping[str, Any]], values: Mapping[str, Any], where: str = "") -> None:
    """Check every parameter of ``values`` that has a spec; raise ``ValueError`` with
    ``"<where>: <reason>"`` on the first bad one."""
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            continue
        try:
            check_parameter(name, value, spec)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}" if where else str(exc)) from None


_SAFE = {"len": len, "min": min, "max": max, "abs": abs, "all": all, "any": any, "sorted": sorted, "set": set,
         "sum": sum, "int": int, "float": float, "isinstance": isinstance, "list": list, "tuple": tuple}


def check_constraints(constraints: Sequence[Mapping[str, str]], values: Mapping[str, Any], where: str = "") -> None:
    """Cross-parameter conditions of a card (``constraints:``, each ``{check: <expression over
    the parameters>, message: <reason>}``): raise ``ValueError("<where>: <message> (<values>)")``
    for the first that is false."""
    for c in constraints:
        expr = c["check"]
        names = {k: values[k] for k in values}
        try:
            ok = bool(eval(compile(expr, "<constraint>", "eval"), {"__builtins__": _SAFE}, names))  # noqa: S307
        except Exception as exc:  # noqa: BLE001 - a condition that cannot be evaluated is not met
            ok, why = False, f"{type(exc).__name__}: {exc}"
        else:
            why = ""
        if not ok:
            used = {k: v for k, v in values.items() if k in expr}
            detail = ", ".join(f"{k}={v!r}" for k, v in used.items())
            msg = f"{c.get('message', expr)} ({detail}{'; ' + why if why else ''})"
            raise ValueError(f"{where}: {msg}" if where else msg)
