"""What every eigen-solver returns (:class:`EigResult`) and the helpers they share:
argument checks, orderings, accurate long inner products, Gram–Schmidt, seeded generators."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .operators import LinearOperator, as_operator

_WHICH = ("LA", "SA", "LM")


class UnattainableToleranceWarning(RuntimeWarning):
    """A solver stopped early: the requested tolerance lies below the attainable accuracy."""


@dataclass(frozen=True)
class EigResult:
    """Eigenpairs of a symmetric operator.

    Attributes:
        eigenvalues: ``(k,)``, ordered as requested: ``"LA"`` descending, ``"SA"``
            ascending, ``"LM"`` by ``|λ|`` descending.
        eigenvectors: ``(dim, k)``, orthonormal columns; sign fixed so that the
            largest-magnitude entry of each column is positive (ties: earliest index).
        residuals: ``(k,)``, ``‖H v − λ v‖₂`` (exact, from stored products).
        n_matvec: Hessian-vector products spent (including a warm start's first block).
        converged: all residuals ≤ ``tol · scale`` (``scale`` = largest |Ritz value| seen).
        which: ``"LA"``, ``"SA"`` or ``"LM"``.
        iterations: outer iterations (Lanczos: Krylov steps; LOBPCG: block iterations).
        tol: the relative tolerance requested; scale: the ``max|λ|`` estimate used.
        extra: solver details; Lanczos-based solvers report ``extra["attained"]``
            (``max ‖r‖ / scale`` of the returned pairs) and ``extra["stagnated"]``
            (stopped early because the residuals stagnated at the rounding level, see
            :class:`UnattainableToleranceWarning`).
    """

    eigenvalues: Tensor
    eigenvectors: Tensor
    residuals: Tensor
    n_matvec: int
    converged: bool
    which: str
    iterations: int
    tol: float = float("nan")
    scale: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def relative_residual(r: EigResult) -> float:
    """The largest relative residual of ``r``'s pairs: ``max_i ‖H x_i − θ_i x_i‖₂ / scale``, with
    ``scale = r.scale`` (the largest ``|θ|`` the solver saw), or 1 where that is not positive
    and finite. ``≤ r.tol`` for a converged result; what every measurement records as its
    ``residual``."""
    scale = r.scale if math.isfinite(r.scale) and r.scale > 0 else 1.0
    return float(r.residuals.max()) / scale


def fix_signs(V: Tensor) -> Tensor:
    """Sign convention for ``(dim, k)`` eigenvectors: largest-|entry| of each column positive.

    ``torch.argmax`` returns the first maximal index, so ties go to the earliest index.
    """
    if V.numel() == 0:
        return V
    idx = V.abs().argmax(dim=0)
    s = torch.sign(V[idx, torch.arange(V.shape[1], device=V.device)])
    s[s == 0] = 1
    return V * s


def _check_op(op: Any) -> LinearOperator:
    """``op`` as a :class:`LinearOperator` (itself, or a wrapper of a duck-typed operator)."""
    return as_operator(op)


def _check_common(op: Any, k: int, which: str, tol: float, strict: bool) -> LinearOperator:
    op = _check_op(op)
    if which not in _WHICH:
        raise ValueError(f"unknown which={which!r}; expected one of {_WHICH}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if strict and k >= op.dim:
        raise ValueError(
            f"k={k} must be smaller than the number of parameters ({op.dim}); "
            "for tiny problems use torch.linalg.eigh(dense_hessian(...))"
        )
    if k > op.dim:
        raise ValueError(f"k={k} is larger than the number of parameters ({op.dim})")
    if not (tol >= 0) or math.isnan(tol):
        raise ValueError(f"tol must be non-negative, got {tol}")
    return op


def _order(theta: Tensor, which: str) -> Tensor:
    """Indices of ``theta`` sorted by preference for ``which``."""
    if which == "LA":
        return torch.argsort(theta, descending=True)
    if which == "SA":
        return torch.argsort(theta)
    return torch.argsort(theta.abs(), descending=True)


#: Rows per block of :func:`_inner`: partial sums over at most this many rows in the operand's
#: dtype, the partial sums added in float64.
INNER_BLOCK_ROWS = 4096


def _inner(A: Tensor, B: Tensor) -> Tensor:
    """``Aᵀ B`` (``(m, b)`` for ``A`` ``(dim, m)`` and ``B`` ``(dim, b)``; 1-D operands count as one
    column) in ``A``'s dtype, accurate for long ``dim``.

    A float32 BLAS product sums ``dim`` terms in float32: on this CPU, with ``dim`` = 11.2 M (a
    ResNet-18), ``Vᵀ q`` as a matrix-vector product is off by ~3e-3 of ``‖V‖‖q‖`` and ``q.norm()``
    by 4e-4, enough to lose a Krylov basis' orthogonality (``|VᵀV − I|`` ~ 7e-4) and to stall a
    solve's true residuals at ~2e-3 while its Lanczos estimates reach 1e-6. Here the rows are cut
    into blocks of :data:`INNER_BLOCK_ROWS`, each block's product is taken in the operand's dtype
    (one batched product) and the blocks' partial sums are added in float64: error ~1e-7
    relative in float32 at any ``dim``. float64 operands use the plain product.
    """
    a = A[:, None] if A.dim() == 1 else A
    b = B[:, None] if B.dim() == 1 else B
    dim = a.shape[0]
    if a.dtype == torch.float64 or dim <= INNER_BLOCK_ROWS:
        return a.T @ b
    nb = dim // INNER_BLOCK_ROWS
    cut = nb * INNER_BLOCK_ROWS
    a3 = a[:cut].unflatten(0, (nb, INNER_BLOCK_ROWS))
    b3 = b[:cut].unflatten(0, (nb, INNER_BLOCK_ROWS))
    out = torch.bmm(a3.transpose(1, 2), b3).sum(0, dtype=torch.float64)
    if cut < dim:
        out += (a[cut:].T @ b[cut:]).double()
    return out.to(a.dtype)


def _norms(A: Tensor) -> Tensor:
    """Euclidean norms of the columns of ``A`` (``(dim, m)`` → ``(m,)``; 1-D → a 0-d tensor),
    accurate for long ``dim`` (float64 accumulation, see :func:`_inner`)."""
    if A.dim() == 1:
        return torch.linalg.vector_norm(A, dtype=torch.float64).to(A.dtype)
    if A.dtype == torch.float64:
        return torch.linalg.vector_norm(A, dim=0)
    return _inner(A, A).diagonal().clamp(min=0).sqrt()


def _orthonormalize(Q: Tensor, V: Tensor | None, gen: torch.Generator) -> Tensor:
    """Orthonormalise the columns of ``Q`` (``(dim, b)``) against ``V`` and each other.

    Classical Gram–Schmidt applied twice ("twice is enough"); a column that
    collapses (norm below ``1e-10`` of its original) is replaced by a random one.
    """
    dim = Q.shape[0]
    out = []
    basis = V
    for j in range(Q.shape[1]):
        q = Q[:, j].clone()
        for attempt in range(4):
            n0 = _norms(q)
            for _ in range(2):
                if basis is not None and basis.shape[1] > 0:
                    q = q - basis @ _inner(basis, q)[:, 0]
            n1 = _norms(q)
            if n1 > 1e-10 * n0 and n1 > 0:
                break
            q = torch.randn(dim, generator=gen, dtype=Q.dtype, device="cpu").to(Q.device)
        else:
            break  # the space is exhausted
        q = q / _norms(q)
        out.append(q)
        if j + 1 < Q.shape[1]:  # (the last column needs no copy of the basis)
            basis = q[:, None] if basis is None else torch.cat([basis, q[:, None]], dim=1)
    if not out:
        return Q[:, :0]
    return torch.stack(out, dim=1)


def _generator(seed: int) -> torch.Generator:
    """A CPU generator for the solvers' random starts and probes, seeded with ``seed`` as given
    (no environment variable shifts it: a caller that wants shifted seeds passes them)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


def _finish(
    X: Tensor, theta: Tensor, res: Tensor, which: str, n_matvec: int, converged: bool,
    iterations: int, tol: float, scale: float, **extra: Any,
) -> EigResult:
    order = _order(theta, which)
    return EigResult(
        eigenvalues=theta[order].clone(),
        eigenvectors=fix_signs(X[:, order]).contiguous(),
        residuals=res[order].clone(),
        n_matvec=n_matvec,
        converged=converged,
        which=which,
        iterations=iterations,
        tol=tol,
        scale=scale,
        extra=dict(extra),
    )
