r"""MacKay's effective number of parameters ``N_eff(α) = Σ_i λ_i/(λ_i + α)`` (SANE, arXiv:2305.18490),
from stochastic Lanczos quadrature (:func:`n_eff_from_slq`, on :func:`instab_lib.curvature.slq_density`).
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

__all__ = ["n_eff_from_slq"]


def n_eff_from_slq(nodes: Tensor | np.ndarray, weights: Tensor | np.ndarray, dim: int, alpha: float,
                   absolute: bool = False) -> tuple[float, float]:
    r"""``N_eff(α)`` of a ``dim``-parameter Hessian from stochastic Lanczos quadrature
    (:func:`instab_lib.curvature.slq_density`): ``dim · mean_p Σ_j w_pj g(θ_pj)`` with
    ``g(λ) = λ/(λ+α)`` on ``λ ≥ 0`` (0 below, or ``|λ|`` with ``absolute``).

    Returns ``(estimate, standard error over probes)``. Exact for any Hessian with at
    most ``order`` distinct eigenvalues (Gauss quadrature is exact there); otherwise an
    unbiased-in-expectation quadrature estimate of ``tr g(H)``.
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    nd = np.asarray(nodes, dtype=float)
    w = np.asarray(weights, dtype=float)
    if nd.shape != w.shape or nd.ndim != 2:
        raise ValueError("nodes and weights must both have shape (n_probes, order)")
    lam = np.abs(nd) if absolute else np.clip(nd, 0.0, None)
    per = dim * np.sum(w * lam / (lam + alpha), axis=1)
    se = float(per.std(ddof=1) / math.sqrt(len(per))) if len(per) > 1 else float("nan")
    return float(per.mean()), se
