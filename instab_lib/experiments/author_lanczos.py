"""Two Lanczos recurrences side by side: the textbook step and the step of the author's public code.

This module is a *transcription for illustration*, written for the book page
``notebooks/author_lanczos.py`` and its test. It is not the author's code and
copies none of it: it restates, in a few lines of NumPy, the recurrence that
``lanczos_alg`` in ``spectral.py`` of ``lawrencewang94/jax_eigs`` (commit
``8db90d3``, read 2026-12) computes, so that the one step in which it differs from
the textbook recurrence can be run and measured without JAX. The benchmark
``benchmarks/bench_author_solver.py`` runs the author's own function.

The recurrence (``H`` symmetric, ``v_1`` a unit start vector, ``β_0 v_0 = 0``)::

    w     = H v_i − β_{i−1} v_{i−1}
    α_i   = w · v_i
    w     = w − α_i v_i
    w     = w − V_i V_iᵀ w            (full re-orthogonalisation)
    β_i   = ‖w‖                       (textbook)
    v_i+1 = w / β_i

gives ``V_kᵀ H V_k = T_k``, the tridiagonal matrix with ``α`` on the diagonal and
``β`` beside it, whose eigenvalues (Ritz values) approximate the extreme eigenvalues
of ``H``. The author's step divides the re-orthogonalised ``w`` by the norm ``ρ_i``
that ``w`` had *before* re-orthogonalisation and then takes the norm::

    β_i = ‖w − V_i V_iᵀ w‖ / ρ_i      (author),  ρ_i = ‖w‖ before re-orthogonalisation

so ``β_i ≤ 1`` for every ``i`` (a projection does not lengthen a vector), while
``v_{i+1}`` — a unit vector in the same direction — is unchanged. The Lanczos basis
and the diagonal ``α`` are therefore right, and only the off-diagonal of ``T`` is
wrong; its eigenvalues are no longer those of ``V_kᵀ H V_k``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["STEPS", "LanczosRun", "lanczos_tridiagonal", "tridiagonal", "ritz_values", "diagonal_example"]

#: The two ways of taking β: ``"textbook"`` (``β = ‖w‖``) and ``"author"`` (``β = ‖w‖/ρ``).
STEPS = ("textbook", "author")


@dataclass(frozen=True)
class LanczosRun:
    """The output of :func:`lanczos_tridiagonal`.

    ``alpha`` (k,), ``beta`` (k−1,): diagonal and off-diagonal of ``T_k``;
    ``rho`` (k−1,): the norm of each new residual *before* re-orthogonalisation;
    ``V`` (k, dim): the Lanczos vectors (rows); ``n_matvec``: products with ``H``;
    ``step``: which β was used.
    """

    alpha: np.ndarray
    beta: np.ndarray
    rho: np.ndarray
    V: np.ndarray
    n_matvec: int
    step: str

    @property
    def order(self) -> int:
        return len(self.alpha)


def lanczos_tridiagonal(
    matvec: Callable[[np.ndarray], np.ndarray],
    v0: np.ndarray,
    order: int,
    step: str = "textbook",
) -> LanczosRun:
    """Run ``order`` Lanczos steps from ``v0`` with full re-orthogonalisation.

    Args:
        matvec: ``v ↦ H v`` for a symmetric ``H`` (float64 arrays of shape ``(dim,)``;
            the result is cast to float64).
        v0: start vector ``(dim,)`` (normalised here).
        order: number of steps ``k`` (= products with ``H``), ``1 ≤ k ≤ dim``.
        step: ``"textbook"`` or ``"author"`` (see the module docstring). Everything
            else — start vector, re-orthogonalisation (two classical Gram–Schmidt
            passes against all previous vectors), the subtraction of ``β_{i−1} v_{i−1}``
            with the run's own β — is the same for both.

    Returns:
        :class:`LanczosRun`. If the Krylov space is exhausted (new residual below
        ``1e-12 ρ``) the run stops early and ``order`` is the number of steps done.
    """
    if step not in STEPS:
        raise ValueError(f"step must be one of {STEPS}, got {step!r}")
    v0 = np.asarray(v0, dtype=np.float64).reshape(-1)
    dim = v0.size
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= order <= dim:
        raise ValueError(f"order must be an integer in 1…{dim}, got {order!r}")
    n0 = float(np.linalg.norm(v0))
    if not np.isfinite(n0) or n0 == 0.0:
        raise ValueError("v0 must be a finite, non-zero vector")
    V = np.zeros((order, dim))
    alpha = np.zeros(order)
    beta = np.zeros(max(order - 1, 0))
    rho = np.zeros(max(order - 1, 0))
    V[0] = v0 / n0
    n_matvec = 0
    for i in range(order):
        w = np.asarray(matvec(V[i]), dtype=np.float64).reshape(-1).copy()
        n_matvec += 1
        if i > 0:
            w -= beta[i - 1] * V[i - 1]
        alpha[i] = w @ V[i]
        w -= alpha[i] * V[i]
        if i == order - 1:
            break
        r = float(np.linalg.norm(w))
        Vi = V[: i + 1]
        for _ in range(2):  # "twice is enough"
            w -= Vi.T @ (Vi @ w)
        if step == "author":
            w /= r  # the one line that differs: normalise by the pre-re-orthogonalisation norm
        b = float(np.linalg.norm(w))
        if b <= 1e-12 * (1.0 if step == "author" else r):
            return LanczosRun(alpha[: i + 1], beta[:i], rho[:i], V[: i + 1], n_matvec, step)
        rho[i] = r
        beta[i] = b
        V[i + 1] = w / b
    return LanczosRun(alpha, beta, rho, V, n_matvec, step)


def tridiagonal(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """The dense symmetric tridiagonal matrix with diagonal ``alpha`` (k,) and off-diagonal ``beta`` (k−1,)."""
    alpha = np.asarray(alpha, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    if beta.shape != (max(len(alpha) - 1, 0),):
        raise ValueError(f"beta must have {len(alpha) - 1} entries, got {beta.shape}")
    return np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)


def ritz_values(run: LanczosRun, order: int | None = None) -> np.ndarray:
    """Eigenvalues (descending) of the leading ``order × order`` block of the run's ``T``.

    Both recurrences build ``T`` one row at a time, so the leading block of an
    order-60 run is what an order-``m`` run from the same start would return.
    """
    m = run.order if order is None else int(order)
    if not 1 <= m <= run.order:
        raise ValueError(f"order must be in 1…{run.order}, got {order!r}")
    return np.linalg.eigvalsh(tridiagonal(run.alpha[:m], run.beta[: m - 1]))[::-1].copy()


def diagonal_example(seed: int = 0, outliers: tuple[float, ...] = (20.0, 15.0, 10.0),
                     n_bulk: int = 197, half_width: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """A known spectrum: ``outliers`` plus ``n_bulk`` values uniform in ``[−half_width, half_width]``.

    Returns ``(eigenvalues, v0)``: the diagonal of ``H`` (outliers first) and a
    standard-normal start vector, both drawn from ``numpy.random.default_rng(seed)``.
    """
    rng = np.random.default_rng(seed)
    eig = np.concatenate([np.asarray(outliers, dtype=np.float64), rng.uniform(-half_width, half_width, n_bulk)])
    v0 = rng.standard_normal(eig.size)
    return eig, v0
