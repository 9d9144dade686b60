r"""The stability limit of a network, measured the way its runs show it.

For a quadratic, GD is stable iff :math:`\eta < 2/S` with :math:`S = \lambda_{\max}`.
A network's sharpness is not constant: it grows during training (progressive
sharpening), so a learning rate far below :math:`2/S_0` at initialisation can still
become unstable later (NOTES.md measures :math:`S_0 \approx 1.7` but :math:`\max_t S_t
\approx 40\text{–}55` for the fMNIST MLP). The companion therefore defines

* a run at learning rate η is **unstable** when it reaches :math:`\eta\, S_t \ge 2` at some
  evaluated step, or diverges;
* the **stability limit** of a grid of runs is the smallest unstable η. It is bracketed by
  the largest stable η below it; :func:`stability_limit` returns the bracket and its
  geometric mean as the point estimate (the dotted line of the figures); for a single stable
  run, :math:`2/\max_t S_t` is an estimate of the limit from below.

Use :math:`2/S_0` only where the sharpness does not grow (the DLN, quadratics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def is_unstable(eta: float, max_sharpness: float, diverged: bool = False) -> bool:
    r"""True when :math:`\eta \max_t S_t \ge 2` or the run diverged (NaN sharpness counts as diverged)."""
    if eta <= 0:
        raise ValueError(f"learning rate must be positive, got {eta!r}")
    if diverged or not math.isfinite(max_sharpness):
        return True
    return eta * max_sharpness >= 2.0


@dataclass(frozen=True)
class StabilityLimit:
    """A measured stability limit: the bracket [largest stable η, smallest unstable η] and its geometric mean."""

    estimate: float  # geometric mean of the bracket (or the one side that exists)
    largest_stable: float | None
    smallest_unstable: float | None
    consistent: bool  # False when some η below smallest_unstable is unstable or above it is stable again

    def __str__(self) -> str:
        lo = "—" if self.largest_stable is None else f"{self.largest_stable:g}"
        hi = "—" if self.smallest_unstable is None else f"{self.smallest_unstable:g}"
        return f"η* ≈ {self.estimate:.4g} (stable up to {lo}, unstable from {hi})"


def stability_limit(
    etas: Sequence[float], max_sharpness: Sequence[float], diverged: Sequence[bool] | None = None
) -> StabilityLimit:
    """The stability limit of a grid of runs (one η per run; repeated η over seeds allowed).

    An η counts as unstable when any of its runs is (:func:`is_unstable`). Raises
    ``ValueError`` when the grid has no run or the lengths differ.
    """
    etas_a = np.asarray(etas, dtype=float)
    s_a = np.asarray(max_sharpness, dtype=float)
    d_a = np.zeros(len(etas_a), dtype=bool) if diverged is None else np.asarray(diverged, dtype=bool)
    if etas_a.size == 0 or not (etas_a.shape == s_a.shape == d_a.shape):
        raise ValueError("need one max sharpness (and divergence flag) per learning rate, and at least one run")
    grid = np.unique(etas_a)
    unstable = np.array([any(is_unstable(e, s, d) for e2, s, d in zip(etas_a, s_a, d_a) if e2 == e) for e in grid])
    hi = float(grid[unstable][0]) if unstable.any() else None
    below = grid[grid < hi] if hi is not None else grid
    lo = float(below.max()) if below.size else None
    consistent = hi is None or bool(np.all(unstable[grid >= hi]))
    if lo is not None and hi is not None:
        est = math.sqrt(lo * hi)
    else:
        est = float(hi if hi is not None else lo)  # one-sided: the grid does not bracket the limit
    return StabilityLimit(est, lo, hi, consistent)
