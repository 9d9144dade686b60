"""Stochastic estimates: Hutchinson traces and spectral densities by stochastic Lanczos quadrature."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .operators import LinearOperator
from .results import _check_op, _generator, _inner, _norms


def _rademacher(dim: int, n: int, gen: torch.Generator, dtype: torch.dtype, device: torch.device) -> Tensor:
    return (torch.randint(0, 2, (dim, n), generator=gen) * 2 - 1).to(dtype=dtype, device=device)


def hutchinson_trace(
    op: LinearOperator, n_samples: int, seed: int = 0, power: int = 1, batch: int = 8
) -> tuple[float, float]:
    """Hutchinson estimate of ``tr(H^power)`` and its standard error.

    With Rademacher probes ``z`` (``E[z zᵀ] = I``), ``zᵀ H^p z`` is unbiased for
    ``tr(H^p)``; it is computed as ``(H^a z)ᵀ (H^b z)`` with ``a = ⌈p/2⌉``,
    ``b = ⌊p/2⌋`` (``a`` products per probe). Returns ``(mean, std/√n)`` over the
    ``n_samples ≥ 2`` probes (sample standard deviation, ``ddof = 1``).
    """
    op = _check_op(op)
    if not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer ≥ 2 (for a standard error), got {n_samples!r}")
    if not isinstance(power, int) or power < 1:
        raise ValueError(f"power must be a positive integer, got {power!r}")
    gen = _generator(seed)
    a, b = (power + 1) // 2, power // 2
    vals = []
    with torch.no_grad():
        done = 0
        while done < n_samples:
            m = min(batch, n_samples - done)
            Z = _rademacher(op.dim, m, gen, op.dtype, op.device)
            cur, Zb = Z, Z if b == 0 else None
            for i in range(1, a + 1):
                cur = op.matmat(cur)
                if i == b:
                    Zb = cur
            vals.append(_inner(cur, Zb).diagonal())
            done += m
    x = torch.cat(vals).double()
    return float(x.mean()), float(x.std(unbiased=True) / math.sqrt(n_samples))


def slq_density(
    op: LinearOperator, n_probes: int, order: int, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Stochastic Lanczos quadrature (Golub–Meurant; Ghorbani et al. 2019).

    For each probe ``z`` (Rademacher, normalised), ``order`` Lanczos steps with full
    re-orthogonalisation give a tridiagonal ``T = Q diag(θ) Qᵀ``; the Gauss
    quadrature ``Σ_j (Q_{0j})² f(θ_j) ≈ zᵀ f(H) z/‖z‖² = ∫ f dμ_z`` approximates the
    spectral measure ``μ = (1/dim) Σ_i δ_{λ_i}`` in expectation.

    Returns ``nodes`` ``(n_probes, order)`` (the ``θ_j``) and ``weights``
    ``(n_probes, order)`` (the ``Q_{0j}²``; each row sums to 1). Costs
    ``n_probes · order`` products (fewer when the Krylov space closes early: then
    the unused nodes carry weight 0).
    """
    op = _check_op(op)
    if not isinstance(n_probes, int) or n_probes < 1:
        raise ValueError(f"n_probes must be a positive integer, got {n_probes!r}")
    if not isinstance(order, int) or order < 1 or order > op.dim:
        raise ValueError(f"order must be an integer in [1, dim={op.dim}], got {order!r}")
    gen = _generator(seed)
    nodes = torch.zeros(n_probes, order, dtype=op.dtype)
    weights = torch.zeros(n_probes, order, dtype=op.dtype)
    with torch.no_grad():
        for p in range(n_probes):
            z = _rademacher(op.dim, 1, gen, op.dtype, op.device)[:, 0]
            V = torch.zeros(op.dim, order, dtype=op.dtype, device=op.device)
            alpha = torch.zeros(order, dtype=op.dtype)
            beta = torch.zeros(order, dtype=op.dtype)
            v = z / _norms(z)
            m = order
            for j in range(order):
                V[:, j] = v
                w = op.matvec(v)
                alpha[j] = _inner(v, w)[0, 0]
                Vj = V[:, : j + 1]
                w = w - Vj @ _inner(Vj, w)[:, 0]
                w = w - Vj @ _inner(Vj, w)[:, 0]
                if j + 1 < order:
                    beta[j] = _norms(w)
                    if beta[j] <= 1e-12 * max(float(alpha[: j + 1].abs().max()), 1e-300):
                        m = j + 1
                        break
                    v = w / beta[j]
            Tm = torch.diag(alpha[:m]) + torch.diag(beta[: m - 1], 1) + torch.diag(beta[: m - 1], -1)
            th, Q = torch.linalg.eigh(Tm)
            nodes[p, :m] = th
            weights[p, :m] = Q[0] ** 2
            if m < order:
                nodes[p, m:] = th[-1]
    return nodes, weights


def density_on_grid(
    nodes: Tensor, weights: Tensor, grid: Tensor, sigma: float, return_se: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """Gaussian-smoothed spectral density from SLQ nodes and weights.

    ``φ(t) = (1/P) Σ_p Σ_j w_pj N(t; θ_pj, σ²)`` on ``grid`` (``(G,)``); it
    integrates to 1 (multiply by ``dim`` for eigenvalue counts) and estimates
    ``(1/dim) Σ_i N(t; λ_i, σ²)``. With ``return_se`` also the per-point standard
    error ``std_p(φ_p(t))/√P`` over the ``P`` probes (needs ``P ≥ 2``).
    """
    if nodes.shape != weights.shape or nodes.dim() != 2:
        raise ValueError("nodes and weights must both have shape (n_probes, order)")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    g = grid.to(nodes.dtype).reshape(1, 1, -1)
    k = torch.exp(-0.5 * ((g - nodes[..., None]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    per_probe = (weights[..., None] * k).sum(dim=1)  # (P, G)
    dens = per_probe.mean(dim=0)
    if not return_se:
        return dens
    if nodes.shape[0] < 2:
        raise ValueError("a standard error needs at least 2 probes")
    return dens, per_probe.std(dim=0, unbiased=True) / math.sqrt(nodes.shape[0])
