"""Thick-restart (block) Lanczos: :func:`lanczos` and :func:`extreme_eigenpairs`."""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
from torch import Tensor

from .operators import LinearOperator
from .results import (
    EigResult,
    UnattainableToleranceWarning,
    _check_common,
    _check_op,
    _finish,
    _generator,
    _inner,
    _norms,
    _order,
    _orthonormalize,
)


#: A cold Krylov solve never declares convergence before its basis holds k + this many vectors.
MIN_EXTRA_BASIS = 10

#: Default relative residual tolerance of every solver (``lanczos``, ``extreme_eigenpairs``,
#: ``lobpcg``, ``power_iteration``, ``EigTracker``): ``‖Hx − θx‖ ≤ 1e-3 · max|θ|``, which a
#: float32 network Hessian reaches (its products carry errors of ~1e-6 · ‖H‖, so tolerances
#: near 1e-6 stagnate). Pass a smaller ``tol`` in float64 for tighter pairs (was 1e-6 before).
DEFAULT_TOL = 1e-3

#: Honest stop: a solve whose attained residual (largest ``‖Hx − θx‖ / max|θ|`` of the wanted
#: pairs) lies in the rounding regime (``≤ √eps`` of the dtype: 3.5e-4 in float32, 1.5e-8 in
#: float64), or whose Lanczos estimates have reached ``tol`` while its true residuals have not,
#: and has not halved over this many products (or ``2k``, if more) stops early.
STAGNATION_WINDOW = 30


class _Run(NamedTuple):
    """What the engine returns: per group ``(θ, X, ‖R‖)`` and the bookkeeping."""

    best: list[tuple[Tensor, Tensor, Tensor]]
    n_matvec: int
    converged: bool
    iterations: int
    scale: float
    attained: float  #: largest ‖r‖ / scale over the returned wanted pairs
    stagnated: bool  #: stopped early: true residuals stagnating (see STAGNATION_WINDOW)
    window: int  #: products without a halving that count as stagnation


class _Basis:
    """The Krylov basis ``V`` (``(dim, m)``, orthonormal), ``W = H V`` and ``T = Vᵀ H V``.

    ``V`` and ``W`` are views of preallocated buffers (appending a block copies only the block).
    """

    def __init__(self, op: LinearOperator, start: Tensor, ncv: int, bs: int, gen: torch.Generator) -> None:
        self.op, self.dim = op, op.dim
        dtype, device = op.dtype, op.device
        V0 = _orthonormalize(start.to(dtype=dtype, device=device), None, gen)
        W0 = op.matmat(V0)
        self.n_mv = self.m = V0.shape[1]
        self.Vb = torch.empty(self.dim, max(ncv, self.m) + bs, dtype=dtype, device=device)
        self.Wb = torch.empty_like(self.Vb)
        self.Vb[:, :self.m], self.Wb[:, :self.m] = V0, W0
        self.V, self.W = self.Vb[:, :self.m], self.Wb[:, :self.m]
        T = _inner(self.V, self.W)
        self.T = 0.5 * (T + T.T)

    def restart(self, Y: Tensor, keep_t: Tensor, theta: Tensor) -> None:
        """Thick restart on the Ritz vectors ``V Y[:, keep]``: ``V ← V Y_p``, ``W ← W Y_p``, ``T ← diag θ_p``."""
        Yp = Y[:, keep_t]
        Vn, Wn = self.V @ Yp, self.W @ Yp
        self.m = m = Yp.shape[1]
        self.Vb[:, :m], self.Wb[:, :m] = Vn, Wn
        self.V, self.W = self.Vb[:, :m], self.Wb[:, :m]
        self.T = torch.diag(theta[keep_t])

    def extend(self, F: Tensor, gen: torch.Generator) -> bool:
        """Append ``Q = orth(F)`` (against ``V``) and ``H Q``; ``False`` if nothing is left to append."""
        V, T = self.V, self.T
        Q = _orthonormalize(F, V, gen)[:, : self.dim - V.shape[1]]
        if Q.shape[1] == 0:
            return False
        WQ = self.op.matmat(Q)
        self.n_mv += Q.shape[1]
        C = _inner(V, WQ)
        D = _inner(Q, WQ)
        m0, q = V.shape[1], Q.shape[1]
        Tn = torch.empty(m0 + q, m0 + q, dtype=T.dtype, device=T.device)
        Tn[:m0, :m0] = T
        Tn[:m0, m0:] = C
        Tn[m0:, :m0] = C.T
        Tn[m0:, m0:] = 0.5 * (D + D.T)
        self.T = Tn
        m = self.m
        if m + q > self.Vb.shape[1]:  # (not reached: restarts keep m + bs ≤ ncv)
            self.Vb = torch.cat([self.Vb, torch.empty_like(self.Vb)], dim=1)
            self.Wb = torch.cat([self.Wb, torch.empty_like(self.Wb)], dim=1)
        self.Vb[:, m:m + q], self.Wb[:, m:m + q] = Q, WQ
        self.m = m = m + q
        self.V, self.W = self.Vb[:, :m], self.Wb[:, :m]
        return True


def _estimates_ok(
    B: _Basis, Y: Tensor, groups: list[tuple[str, int]], orders: list[Tensor], bs: int, near: float,
    min_basis: int,
) -> tuple[Tensor, bool]:
    """The residual block ``F`` of ``H V = V T + F E_lastᵀ`` and whether its Ritz estimates reach ``near``.

    A tiny Krylov space can hold an accurate Ritz pair that is not the wanted one (a start vector
    almost orthogonal to a small top eigenspace): never below ``min_basis`` vectors.
    """
    V, W = B.V, B.W
    F = W[:, -bs:] - V @ _inner(V, W[:, -bs:])
    Ylast = Y[-bs:, :]
    ok = V.shape[1] >= min_basis and all(
        order[:k].numel() == k and bool((_norms(F @ Ylast[:, order[:k]]) <= near).all())
        for (w, k), order in zip(groups, orders)
    )
    return F, ok


def _exact_residuals(
    B: _Basis, Y: Tensor, theta: Tensor, groups: list[tuple[str, int]], orders: list[Tensor], thresh: float,
) -> tuple[list[tuple[Tensor, Tensor, Tensor]], bool]:
    """Per group the wanted Ritz pairs ``(θ, X = V y, ‖W y − θ X‖)`` from the stored products, and
    whether all residuals are ``≤ thresh``."""
    best = []
    ok = True
    for (w, k), order in zip(groups, orders):
        idx = order[:k]
        Yg = Y[:, idx]
        X = B.V @ Yg
        rn = _norms(B.W @ Yg - X * theta[idx])
        best.append((theta[idx], X, rn))
        if idx.numel() < k or bool((rn > thresh).any()):
            ok = False
    return best, ok


def _worst_residual(B: _Basis, Y: Tensor, best: list[tuple[Tensor, Tensor, Tensor]], orders: list[Tensor]) -> Tensor:
    """``expand="residual"``: the residual ``W y − θ V y`` (``(dim, 1)``) of the worst wanted Ritz pair."""
    worst_g, worst_i, worst_r = 0, 0, -1.0
    for gi, b in enumerate(best):
        j = int(b[2].argmax())
        if float(b[2][j]) > worst_r:
            worst_g, worst_i, worst_r = gi, j, float(b[2][j])
    th_w, X_w, _ = best[worst_g]
    idx_w = orders[worst_g][worst_i]
    return (B.W @ Y[:, idx_w] - X_w[:, worst_i] * th_w[worst_i])[:, None]


def _kept(groups: list[tuple[str, int]], orders: list[Tensor], ncv: int, bs: int, k_all: int,
          device: torch.device) -> Tensor:
    """The Ritz indices a restart keeps: the ``k`` wanted of each group plus half the free room."""
    extra = max((ncv - bs - k_all) // (2 * len(groups)), 1)
    keep: list[int] = []
    for (w, k), order in zip(groups, orders):
        for i in order[: k + extra].tolist():
            if i not in keep:
                keep.append(i)
    return torch.tensor(keep, dtype=torch.long, device=device)


def _thick_restart_lanczos(
    op: LinearOperator,
    groups: list[tuple[str, int]],
    tol: float,
    max_matvec: int,
    ncv: int,
    start: Tensor,
    gen: torch.Generator,
    expand: str = "krylov",
    scale0: float = 0.0,
    min_extra: int | None = None,
) -> _Run:
    """Thick-restart block Lanczos with full re-orthogonalisation (the engine).

    Keeps ``V`` (``(dim, m)``, orthonormal, ``m ≤ ncv``) and ``W = H V`` and the
    projected matrix ``T = Vᵀ H V`` (``(m, m)``) in a :class:`_Basis`. Each step appends the block
    ``Q = orth(F)``, ``F`` = newest products minus their projection on ``V``
    (classical Gram–Schmidt twice), and costs ``Q.shape[1]`` products. Ritz pairs
    ``(θ_i, x_i = V y_i)`` of ``T`` have exact residuals ``‖W y_i − θ_i V y_i‖``.
    When ``V`` is full, it is restarted on the most wanted Ritz vectors
    (``V ← V Y_p``, ``W ← W Y_p``, ``T ← diag θ_p``), which keeps the Krylov
    relation ``H V = V T + F Eᵀ`` (Wu & Simon's thick restart; Stewart's
    Krylov–Schur in the symmetric case).

    ``groups``: ``[(which, k), ...]``; the first ``k`` Ritz pairs of each group in
    the order of ``which`` must reach ``‖r‖ ≤ tol · scale`` (scale = largest
    ``|θ|`` seen, at least ``scale0``), and a Krylov basis must hold at least
    ``min(k + min_extra, ncv − bs + 1)`` vectors first (default ``MIN_EXTRA_BASIS``: a small residual in a
    tiny subspace can belong to an unwanted pair; a basis restarts with ≥ ncv − bs + 1 vectors).

    Honest stop: ``tol`` can lie below what the operator's rounding allows (float32
    products carry errors of ~1e-6 · ‖H‖, so residuals stagnate there). Once the
    residual estimates fall to ``max(tol, √eps)`` the exact residuals are checked every
    step; if the attained residual is ``≤ √eps``, or the Lanczos estimates have reached the
    tolerance while the true residuals have not, and the attained residual has not halved over
    the last ``max(STAGNATION_WINDOW, 2 k)`` products, the solve stops (``stagnated``) instead
    of spending the rest of the budget. Inner products and norms over the ``dim`` rows are
    accumulated in float64 (:func:`~instab_lib.curvature.results._inner`): float32 BLAS sums
    over 10⁷ rows lose the basis' orthogonality at ~1e-3.

    ``expand="residual"`` (for warm starts from a non-Krylov block, e.g. previous
    eigenvectors): each step appends one vector, the residual ``W y − θ V y`` of the
    unconverged wanted Ritz pair with the largest residual (Davidson's expansion
    with an identity preconditioner; for a Krylov basis every Ritz residual is
    parallel to the Lanczos vector, so this generalises Lanczos).
    """
    dim = op.dim
    bs = start.shape[1]
    k_all = sum(k for _, k in groups)
    B = _Basis(op, start, ncv, bs, gen)
    it = 0
    scale = scale0
    best: list[tuple[Tensor, Tensor, Tensor]] = []
    converged = False
    eps = torch.finfo(op.dtype).eps
    orders: list[Tensor] = []
    residual_mode = expand == "residual"
    min_basis = min(dim, ncv - bs + 1, k_all + (MIN_EXTRA_BASIS if min_extra is None else min_extra))
    closed = False
    ceiling = math.sqrt(eps)  # the rounding regime, relative to scale
    window = max(STAGNATION_WINDOW, 2 * k_all)
    best_att, best_at, attained, stagnated = math.inf, B.n_mv, math.inf, False
    while True:
        it += 1
        theta, Y = torch.linalg.eigh(B.T)
        scale = max(scale, float(theta.abs().max()))
        thresh = tol * scale
        orders = [_order(theta, w) for w, _ in groups]
        if residual_mode:
            est_ok = True
        else:  # checked exactly once the estimates reach tol, or the rounding regime if tol is below it
            F, est_ok = _estimates_ok(B, Y, groups, orders, bs, max(thresh, ceiling * scale), min_basis)
        exhausted = B.V.shape[1] >= dim or closed
        if est_ok or exhausted or B.n_mv >= max_matvec:
            best, ok = _exact_residuals(B, Y, theta, groups, orders, thresh)
            attained = max(float(b[2].max()) for b in best) / scale if scale > 0 else math.inf
            if ok:
                converged = True
                break
            if exhausted:  # whole space spanned: Ritz pairs exact up to rounding
                floor = 1e3 * eps * scale * math.sqrt(dim)
                converged = all(bool((b[2] <= max(thresh, floor)).all()) for b in best)
                break
            if B.n_mv >= max_matvec:
                break
            # rounding regime, or estimates at tol the true residuals do not follow: stop when they stop improving
            if attained <= ceiling or (est_ok and not residual_mode):
                if attained <= 0.5 * best_att:
                    best_att, best_at = attained, B.n_mv
                elif B.n_mv - best_at >= window:
                    stagnated = True
                    break
            if residual_mode:
                F = _worst_residual(B, Y, best, orders)
                bs = 1
        if B.V.shape[1] + bs > ncv:
            B.restart(Y, _kept(groups, orders, ncv, bs, k_all, theta.device), theta)
        if not B.extend(F, gen):
            closed = True
    return _Run(best, B.n_mv, converged, it, scale, attained, stagnated, window)


def _warn_if_stagnated(who: str, run: _Run, tol: float, dtype: torch.dtype, budget: int) -> None:
    """The honest stop's warning: tolerance below the attainable accuracy, and what was attained."""
    if not run.stagnated:
        return
    eps = torch.finfo(dtype).eps
    warnings.warn(
        f"{who}: tol={tol:g} is below the accuracy this operator attains in {dtype}: the largest "
        f"relative residual ‖Hx − θx‖/max|θ| of the wanted pairs stagnated at {run.attained:.2e} "
        f"(no halving over the last {run.window} products, "
        + (f"in the rounding regime ≤ √eps = {math.sqrt(eps):.1e}" if run.attained <= math.sqrt(eps)
           else "while the Lanczos estimates had reached tol: the products are inexact or not "
              "symmetric at that level")
        + f"); stopped after {run.n_matvec} of {budget} products. "
        f"The pairs are returned with converged=False and extra['attained']; ask for "
        f"tol ≥ {2 * run.attained:.0e} or use float64.",
        UnattainableToleranceWarning,
        stacklevel=3,
    )


def _start_block(
    op: LinearOperator, b: int, seed: int, v0: Tensor | None, V0: Tensor | None
) -> tuple[Tensor, torch.Generator]:
    gen = _generator(seed)
    if v0 is not None and V0 is not None:
        raise ValueError("give v0 or V0, not both")
    if V0 is not None:
        if V0.dim() != 2 or V0.shape[0] != op.dim or V0.shape[1] < 1:
            raise ValueError(f"V0 must have shape ({op.dim}, b) with b ≥ 1, got {tuple(V0.shape)}")
        S = V0.to(dtype=op.dtype, device=op.device)
        if b > S.shape[1]:  # pad with random columns
            extra = torch.randn(op.dim, b - S.shape[1], generator=gen, dtype=op.dtype).to(op.device)
            S = torch.cat([S, extra], dim=1)
        return S, gen
    if v0 is not None:
        if v0.dim() != 1 or v0.shape[0] != op.dim:
            raise ValueError(f"v0 must have shape ({op.dim},), got {tuple(v0.shape)}")
        S = v0.to(dtype=op.dtype, device=op.device)[:, None]
        if b > 1:
            extra = torch.randn(op.dim, b - 1, generator=gen, dtype=op.dtype).to(op.device)
            S = torch.cat([S, extra], dim=1)
        return S, gen
    return torch.randn(op.dim, b, generator=gen, dtype=op.dtype).to(op.device), gen


def _default_ncv(k_all: int, dim: int, bs: int) -> int:
    return min(dim, max(2 * k_all + 10, 20 + bs, 3 * bs))


def lanczos(
    op: LinearOperator,
    k: int,
    which: str = "LA",
    tol: float = DEFAULT_TOL,
    max_iter: int | None = None,
    seed: int = 0,
    v0: Tensor | None = None,
    V0: Tensor | None = None,
    ncv: int | None = None,
    block_size: int | None = None,
    expand: str = "krylov",
) -> EigResult:
    """``k`` eigenpairs of a symmetric operator by thick-restart Lanczos.

    Full re-orthogonalisation, restarts on the most wanted Ritz vectors, and a
    stop on the exact residual ``‖H x_i − θ_i x_i‖₂ ≤ tol · max|θ|`` for all ``k``
    pairs (``max|θ|``: largest |Ritz value| seen, an estimate of ``‖H‖₂``).

    Args:
        op: a symmetric :class:`~instab_lib.curvature.LinearOperator` (or any object with
            ``.matvec`` (``(dim,) -> (dim,)``), ``.dim``, ``.dtype``, ``.device``; its
            ``.matmat`` is used for blocks when present).
        k: number of eigenpairs, ``1 ≤ k < dim``.
        which: ``"LA"`` largest algebraic, ``"SA"`` smallest algebraic, ``"LM"``
            largest magnitude (the author's selection, both ends by ``|λ|``).
        tol: relative residual tolerance (≥ 0; 0 runs to ``max_iter``; default
            :data:`DEFAULT_TOL` = 1e-3, which float32 reaches).
        max_iter: budget of Hessian-vector products (default ``max(50 k, 300)``).
        seed: seeds the random start (deterministic results for a given seed).
        v0: start vector ``(dim,)``; V0: start block ``(dim, b)`` (e.g. previous
            eigenvectors: block Lanczos with block size ``b``).
        ncv: largest basis size before a restart (default ``max(2k+10, 20)``).
        block_size: block size (default 1, or ``V0.shape[1]``). Exactly repeated
            eigenvalues of multiplicity ``m`` are only found reliably with
            ``block_size ≥ m`` (a single Krylov vector sees one direction per
            eigenspace, up to rounding).
        expand: ``"krylov"`` (Lanczos) or ``"residual"``: after the start block,
            append one vector per step, the residual of the worst unconverged
            wanted Ritz pair (best for a start block of previous eigenvectors,
            which is not a Krylov basis).

    Returns:
        :class:`EigResult` with eigenvalues ordered by ``which``; ``extra["attained"]``:
        the largest ``‖r‖ / max|θ|`` of the returned pairs. If ``tol`` lies below what the
        operator's rounding allows (residuals stagnating at ``≤ √eps`` of the dtype, e.g.
        ~2e-6 for a float32 network Hessian), the solve stops early with an
        :class:`UnattainableToleranceWarning`, ``converged=False`` and
        ``extra["stagnated"] = True`` instead of spending the whole budget.
    """
    op = _check_common(op, k, which, tol, strict=True)
    if expand not in ("krylov", "residual"):
        raise ValueError(f"unknown expand={expand!r}; expected 'krylov' or 'residual'")
    if ncv is not None and ncv <= k:
        raise ValueError(f"ncv={ncv} must exceed k={k}")
    bs = block_size if block_size is not None else (V0.shape[1] if V0 is not None else 1)
    if bs < 1:
        raise ValueError(f"block_size must be ≥ 1, got {bs}")
    bs = min(bs, op.dim)
    max_mv = max_iter if max_iter is not None else max(50 * k, 300)
    if max_mv < 1:
        raise ValueError(f"max_iter must be positive, got {max_mv}")
    ncv_ = min(op.dim, ncv if ncv is not None else _default_ncv(k, op.dim, bs))
    ncv_ = max(ncv_, min(op.dim, k + 2 * bs))
    start, gen = _start_block(op, bs, seed, v0, V0)
    with torch.no_grad():
        run = _thick_restart_lanczos(op, [(which, k)], tol, max_mv, ncv_, start, gen, expand=expand)
    _warn_if_stagnated("lanczos", run, tol, op.dtype, max_mv)
    theta, X, rn = run.best[0]
    return _finish(X, theta, rn, which, run.n_matvec, run.converged, run.iterations, tol, run.scale,
                   attained=run.attained, stagnated=run.stagnated)


def extreme_eigenpairs(
    op: LinearOperator,
    k_top: int,
    k_bottom: int,
    tol: float = DEFAULT_TOL,
    max_iter: int | None = None,
    seed: int = 0,
    v0: Tensor | None = None,
    ncv: int | None = None,
) -> tuple[EigResult, EigResult]:
    """The ``k_top`` largest and ``k_bottom`` smallest (algebraic) eigenpairs together.

    One thick-restart Lanczos run whose restarts keep Ritz vectors from both
    ends, so both converge from one Krylov space (cheaper than two runs; the
    papers keep ``λ_min``). Both results report the *shared* matvec count.
    Requires ``k_top + k_bottom < dim``.
    """
    op = _check_op(op)
    for name, kk in (("k_top", k_top), ("k_bottom", k_bottom)):
        if not isinstance(kk, int) or kk < 1:
            raise ValueError(f"{name} must be a positive integer, got {kk!r}")
    _check_common(op, k_top + k_bottom, "LA", tol, strict=True)
    max_mv = max_iter if max_iter is not None else max(50 * (k_top + k_bottom), 400)
    ncv_ = min(op.dim, ncv if ncv is not None else _default_ncv(k_top + k_bottom, op.dim, 1))
    start, gen = _start_block(op, 1, seed, v0, None)
    with torch.no_grad():
        run = _thick_restart_lanczos(op, [("LA", k_top), ("SA", k_bottom)], tol, max_mv, ncv_, start, gen)
    _warn_if_stagnated("extreme_eigenpairs", run, tol, op.dtype, max_mv)
    info = dict(attained=run.attained, stagnated=run.stagnated)
    (th_t, X_t, r_t), (th_b, X_b, r_b) = run.best
    top = _finish(X_t, th_t, r_t, "LA", run.n_matvec, run.converged, run.iterations, tol, run.scale, **info)
    bot = _finish(X_b, th_b, r_b, "SA", run.n_matvec, run.converged, run.iterations, tol, run.scale, **info)
    return top, bot
