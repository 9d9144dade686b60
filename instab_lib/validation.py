"""Input validation for the whole library: one-line ``ValueError`` s before any compute.

Every check returns the validated value (converted to ``float``/``int`` where that is
what the caller needs), so ``lr = positive("learning rate", lr)`` reads naturally. The
specs of a notebook card's parameters are checked by :mod:`instab_lib.book.cards`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = ["positive", "nonnegative", "unit_interval", "integer", "check_positive", "check_int_at_least"]

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
