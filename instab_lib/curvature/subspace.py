"""Block LOBPCG (:func:`lobpcg`) and power iteration (:func:`power_iteration`)."""

from __future__ import annotations

import torch
from torch import Tensor

from .krylov import DEFAULT_TOL
from .operators import LinearOperator
from .results import (
    _WHICH,
    EigResult,
    _check_common,
    _check_op,
    _finish,
    _generator,
    _inner,
    _norms,
    _order,
    _orthonormalize,
)


def lobpcg(
    op: LinearOperator,
    X0: Tensor,
    which: str = "LA",
    tol: float = DEFAULT_TOL,
    max_iter: int = 100,
    scale: float | None = None,
    n_wanted: int | None = None,
) -> EigResult:
    """Block LOBPCG (no preconditioner) started from ``X0`` (``(dim, k)``), soft locking.

    Each iteration does Rayleigh–Ritz on ``S = [X, P, R_a]`` (orthonormal), where
    ``R = H X − X Θ`` and only the *active* (unconverged) residual columns ``R_a``
    cost new products; ``P`` is the part of the new ``X`` outside the old ``X``
    (Hetmaniuk & Lehoucq's basis choice, kept orthonormal in coefficient space so
    no product is recomputed). Stops when ``‖r_i‖ ≤ tol · scale`` for all ``i``
    (``scale``: given, or the largest |Ritz value| seen).
    Costs ``k`` products for ``H X0`` plus ``|active|`` per iteration.
    ``n_wanted``: only the first ``n_wanted`` pairs (in the order of ``which``)
    must converge (the others are guard vectors); default all ``k``.
    """
    op = _check_op(op)
    if which not in _WHICH:
        raise ValueError(f"unknown which={which!r}; expected one of {_WHICH}")
    if not (tol >= 0):
        raise ValueError(f"tol must be non-negative, got {tol}")
    if X0.dim() != 2 or X0.shape[0] != op.dim:
        raise ValueError(f"X0 must have shape ({op.dim}, k), got {tuple(X0.shape)}")
    k = X0.shape[1]
    _check_common(op, k, which, tol, strict=False)
    if 3 * k > op.dim:
        raise ValueError(f"lobpcg needs 3k ≤ dim (k={k}, dim={op.dim}); use lanczos")
    nw = k if n_wanted is None else n_wanted
    if not 1 <= nw <= k:
        raise ValueError(f"n_wanted must be in [1, {k}], got {n_wanted}")
    gen = _generator(0)
    with torch.no_grad():
        X = _orthonormalize(X0.to(dtype=op.dtype, device=op.device), None, gen)
        AX = op.matmat(X)
        n_mv = X.shape[1]
        G = _inner(X, AX)
        th, Y = torch.linalg.eigh(0.5 * (G + G.T))
        o = _order(th, which)[:k]
        X, AX, th = X @ Y[:, o], AX @ Y[:, o], th[o]
        sc = max(scale or 0.0, float(th.abs().max()))
        P = AP = None
        it = 0
        while True:
            R = AX - X * th
            rn = _norms(R)
            sc = max(sc, float(th.abs().max()))
            active = rn > tol * sc
            if not bool(active[:nw].any()) or it >= max_iter:
                break
            it += 1
            base = X if P is None else torch.cat([X, P], dim=1)
            Ra = _orthonormalize(R[:, active], base, gen)
            if Ra.shape[1] == 0:
                break
            ARa = op.matmat(Ra)
            n_mv += Ra.shape[1]
            S = torch.cat([base, Ra], dim=1)
            AS = torch.cat([AX if P is None else torch.cat([AX, AP], dim=1), ARa], dim=1)
            G = _inner(S, AS)
            G = 0.5 * (G + G.T)
            th_all, C = torch.linalg.eigh(G)
            o = _order(th_all, which)[:k]
            Cx = C[:, o]
            Xn, AXn, thn = S @ Cx, AS @ Cx, th_all[o]
            # P: components of the new X outside the old X, orthonormal in coefficient space
            Z = Cx[:, active].clone()
            Z[:k] = 0
            Z = Z - Cx @ (Cx.T @ Z)
            Z = Z - Cx @ (Cx.T @ Z)
            norms = Z.norm(dim=0)
            Z = Z[:, norms > 1e-12]
            if Z.shape[1] > 0:
                Qz, Rz = torch.linalg.qr(Z)
                good = Rz.diagonal().abs() > 1e-12 * max(float(Rz.diagonal().abs().max()), 1e-300)
                Qz = Qz[:, good]
                P, AP = S @ Qz, AS @ Qz
            else:
                P = AP = None
            X, AX, th = Xn, AXn, thn
        R = AX - X * th
        rn = _norms(R)
        conv = bool((rn[:nw] <= tol * sc).all())
    return _finish(X, th, rn, which, n_mv, conv, it, tol, sc)


def power_iteration(
    op: LinearOperator, tol: float = DEFAULT_TOL, max_iter: int = 1000, seed: int = 0, v0: Tensor | None = None
) -> EigResult:
    """The dominant (largest-|λ|) eigenpair by power iteration ``v ← Hv/‖Hv‖``.

    Stops when ``‖H v − θ v‖₂ ≤ tol · |θ|`` with ``θ = vᵀHv`` (a residual, not the
    change of ``θ`` that PyHessian uses). Converges at rate ``|λ₂/λ₁|`` per product.
    Returns a :class:`EigResult` with ``k = 1`` and ``which = "LM"``.
    """
    op = _check_common(op, 1, "LM", tol, strict=False)
    if max_iter < 1:
        raise ValueError(f"max_iter must be positive, got {max_iter}")
    gen = _generator(seed)
    with torch.no_grad():
        v = (v0.to(dtype=op.dtype, device=op.device) if v0 is not None
             else torch.randn(op.dim, generator=gen, dtype=op.dtype).to(op.device))
        v = v / _norms(v)
        Hv = op.matvec(v)
        n = 1
        it = 0
        while True:
            theta = float(_inner(v, Hv))
            r = float(_norms(Hv - theta * v))
            if r <= tol * abs(theta) or n >= max_iter:
                break
            nrm = _norms(Hv)
            if nrm == 0:
                break
            v = Hv / nrm
            Hv = op.matvec(v)
            n += 1
            it += 1
    conv = r <= tol * abs(theta)
    return _finish(v[:, None], torch.tensor([theta], dtype=op.dtype), torch.tensor([r], dtype=op.dtype),
                   "LM", n, conv, it, tol, abs(theta))
