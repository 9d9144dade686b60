"""Eigenvector and eigenspace similarity across training steps (degenerate-safe).

Eigenvectors are defined up to sign, and inside a (near-)degenerate eigenvalue
cluster only the cluster's *subspace* is defined. So:

* :func:`abs_cosine` — ``|a·b| / (‖a‖‖b‖)`` (sign-invariant; the author's ``cos_sim``).
* :func:`principal_angles` — angles ``0 ≤ θ_1 ≤ … ≤ θ_k ≤ π/2`` between column spaces.
* :func:`subspace_similarity` — the author's ``dk_cos`` (REFERENCE §2.4):
  ``d = √(Σ θ_j²) / √(k (π/2)²) ∈ [0, 1]``, similarity ``cos(d π/2)``;
  ``kind="linear"``: ``d = Σ θ_j² / (k (π/2)²)`` (``dk_cos_lin``), same ``cos(d π/2)``.
* :func:`eigenvector_similarity` — per-vector abs cosines between two
  :class:`~instab_lib.curvature.EigResult` s, with near-degenerate clusters
  compared as subspaces, plus the subspace similarity and the spectral gaps.
* :func:`rotation_update` — the rotation of a *sequence* of measurements (typed state
  :class:`RotationState`, optax-style: ``reading, state = rotation_update(state, step, result)``):
  each new measurement against the previous one and against the latest earlier one of the
  **same parity** (an even number of steps back). At the edge of stability the iterate
  flips between the two sides of a valley every step, so consecutive measurements compare
  two sides; the same-parity comparison does not count that flip.
"""

from __future__ import annotations

import math
import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from .curvature import EigResult

__all__ = [
    "abs_cosine",
    "principal_angles",
    "subspace_similarity",
    "eigenvector_similarity",
    "SimilarityReport",
    "RotationState",
    "RotationReading",
    "rotation_update",
]


def abs_cosine(a: Tensor, b: Tensor) -> float:
    """``|a·b| / (‖a‖₂ ‖b‖₂)`` for two vectors of equal shape (flattened); in ``[0, 1]``.

    Raises ``ValueError`` on mismatched sizes or a zero vector.
    """
    a = a.reshape(-1)
    b = b.reshape(-1)
    if a.numel() != b.numel():
        raise ValueError(f"abs_cosine: sizes differ ({a.numel()} vs {b.numel()})")
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        raise ValueError("abs_cosine: zero vector has no direction")
    a64, b64 = a.double(), b.double()
    return float(min(1.0, float((a64 @ b64).abs() / (a64.norm() * b64.norm()))))


def _orth(A: Tensor) -> Tensor:
    Q, R = torch.linalg.qr(A.double())
    d = R.diagonal().abs()
    if d.numel() and float(d.min()) <= 1e-12 * float(d.max()):
        raise ValueError("principal_angles: columns are linearly dependent")
    return Q


def principal_angles(A: Tensor, B: Tensor) -> Tensor:
    """Principal angles between the column spaces of ``A`` ``(n, k_A)`` and ``B`` ``(n, k_B)``.

    Returns ``min(k_A, k_B)`` angles in radians, ascending, in float64. Columns
    need not be orthonormal (they are orthonormalised by QR). Cosines are the
    singular values of ``Q_Aᵀ Q_B``; small angles (cos² ≥ ½) are taken from the
    sines, the singular values of ``Q_B − Q_A Q_Aᵀ Q_B`` (Björck & Golub), so
    angles near 0 are accurate to ~1e-16 rather than ~1e-8.
    """
    if A.dim() == 1:
        A = A[:, None]
    if B.dim() == 1:
        B = B[:, None]
    if A.dim() != 2 or B.dim() != 2 or A.shape[0] != B.shape[0]:
        raise ValueError(f"principal_angles: need (n, k) matrices with equal n, got {tuple(A.shape)}, {tuple(B.shape)}")
    if A.shape[1] == 0 or B.shape[1] == 0:
        raise ValueError("principal_angles: empty subspace")
    Qa, Qb = _orth(A), _orth(B)
    if Qa.shape[1] < Qb.shape[1]:
        Qa, Qb = Qb, Qa  # Qb is the smaller space: its dimension is the number of angles
    M = Qa.T @ Qb
    cos = torch.linalg.svdvals(M).clamp(0.0, 1.0)  # descending
    sin = torch.linalg.svdvals(Qb - Qa @ M).clamp(0.0, 1.0).flip(0)  # ascending
    small = cos**2 >= 0.5
    ang = torch.where(small, torch.arcsin(sin), torch.arccos(cos))
    return torch.sort(ang).values


def subspace_similarity(A: Tensor, B: Tensor, kind: str = "grassmann") -> float:
    """The author's ``dk_cos`` between column spaces (``(n, k)`` each), in ``[0, 1]``.

    ``θ`` = :func:`principal_angles`, ``k = len(θ)``;
    ``kind="grassmann"``: ``d = √(Σθ²) / √(k(π/2)²)``;
    ``kind="linear"``: ``d = Σθ² / (k(π/2)²)``; similarity ``= cos(d·π/2)``
    (1 for equal spaces, 0 for orthogonal ones).
    """
    if kind not in ("grassmann", "linear"):
        raise ValueError(f"unknown kind={kind!r}; expected 'grassmann' or 'linear'")
    th = principal_angles(A, B)
    k = th.numel()
    s2 = float((th**2).sum())
    d = math.sqrt(s2) / math.sqrt(k * (math.pi / 2) ** 2) if kind == "grassmann" else s2 / (k * (math.pi / 2) ** 2)
    return float(math.cos(min(d, 1.0) * math.pi / 2))


@dataclass(frozen=True)
class SimilarityReport:
    """Result of :func:`eigenvector_similarity` (``k`` = number of compared pairs).

    Attributes:
        cosines: ``(k,)`` — ``|cos|`` between ``prev`` vector ``i`` and ``cur`` vector
            ``i`` when ``i`` is isolated; for ``i`` in a near-degenerate cluster,
            the cluster's :func:`subspace_similarity` (same value for its members).
        raw_cosines: ``(k,)`` — the index-matched ``|cos|`` without cluster handling.
        in_cluster: ``(k,)`` bool — whether ``i`` belongs to a cluster.
        clusters: index ranges ``(start, stop)`` of the clusters (stop exclusive).
        subspace: :func:`subspace_similarity` of all ``k`` vectors.
        gaps_prev, gaps_cur: ``(k−1,)`` relative gaps ``|λ_i − λ_{i+1}| / max|λ|``.
        matched_cosines: ``(k,)`` — ``|cos|`` after the best one-to-one matching of
            ``cur`` to ``prev`` vectors (maximising the summed ``|cos|``; catches
            eigenvalues that swapped order), ``matching[i]`` = cur index for prev ``i``.
    """

    cosines: Tensor
    raw_cosines: Tensor
    in_cluster: Tensor
    clusters: list[tuple[int, int]]
    subspace: float
    gaps_prev: Tensor
    gaps_cur: Tensor
    matched_cosines: Tensor
    matching: Tensor


def _rel_gaps(lam: Tensor) -> Tensor:
    scale = float(lam.abs().max()) if lam.numel() else 1.0
    scale = scale if scale > 0 else 1.0
    return (lam[:-1] - lam[1:]).abs().double() / scale


def eigenvector_similarity(prev: EigResult, cur: EigResult, gap_tol: float = 1e-2) -> SimilarityReport:
    """Compare eigenpairs of two steps, sign- and degeneracy-safe.

    Pairs are compared index by index (``i``-th of ``prev`` with ``i``-th of
    ``cur``; both must have the same ``which`` and ``k``). Neighbours ``i, i+1``
    whose relative gap ``|λ_i − λ_{i+1}| / max|λ|`` is ≤ ``gap_tol`` at either step
    are joined into a cluster; a cluster is compared as a subspace
    (:func:`subspace_similarity`), since its individual vectors are not defined.
    """
    if gap_tol < 0:
        raise ValueError(f"gap_tol must be non-negative, got {gap_tol}")
    if prev.which != cur.which:
        raise ValueError(f"cannot compare which={prev.which!r} with which={cur.which!r}")
    Vp, Vc = prev.eigenvectors, cur.eigenvectors
    if Vp.shape != Vc.shape:
        raise ValueError(f"eigenvector blocks differ in shape: {tuple(Vp.shape)} vs {tuple(Vc.shape)}")
    k = Vp.shape[1]
    Vp64 = Vp.double() / Vp.double().norm(dim=0)
    Vc64 = Vc.double() / Vc.double().norm(dim=0)
    C = (Vp64.T @ Vc64).abs().clamp(max=1.0)  # (k, k) |cos| between all pairs
    raw = C.diagonal().clone()
    gp, gc = _rel_gaps(prev.eigenvalues), _rel_gaps(cur.eigenvalues)
    linked = (gp <= gap_tol) | (gc <= gap_tol)
    clusters: list[tuple[int, int]] = []
    start = 0
    for i in range(k):
        if i == k - 1 or not bool(linked[i]):
            if i > start:
                clusters.append((start, i + 1))
            start = i + 1
    cos = raw.clone()
    in_cluster = torch.zeros(k, dtype=torch.bool)
    for a, b in clusters:
        cos[a:b] = subspace_similarity(Vp64[:, a:b], Vc64[:, a:b])
        in_cluster[a:b] = True
    try:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(-C.cpu().numpy())
        matching = torch.as_tensor(cols, dtype=torch.long)[torch.as_tensor(rows).argsort()]
    except ImportError:  # pragma: no cover - scipy is a dependency
        matching = C.argmax(dim=1)
    matched = C[torch.arange(k), matching]
    return SimilarityReport(
        cosines=cos,
        raw_cosines=raw,
        in_cluster=in_cluster,
        clusters=clusters,
        subspace=subspace_similarity(Vp64, Vc64),
        gaps_prev=gp,
        gaps_cur=gc,
        matched_cosines=matched,
        matching=matching,
    )


class RotationState(NamedTuple):
    """The state of :func:`rotation_update`: the last two measurements ``((step, result), …)``,
    oldest first (each result without its solver details ``extra``)."""

    history: tuple[tuple[int, EigResult], ...] = ()


class RotationReading(NamedTuple):
    """What :func:`rotation_update` finds for a new measurement at step ``t``.

    Attributes:
        previous: :func:`eigenvector_similarity` against the last measurement (``None`` for the first).
        same_parity: the same against the latest earlier measurement ``t'`` with ``t − t'``
            even, among the last two (``None`` if there is none).
        lag: ``t − t'`` of that one (``None`` with it).
    """

    previous: SimilarityReport | None
    same_parity: SimilarityReport | None
    lag: int | None


def rotation_update(state: RotationState, step: int, result: EigResult) -> tuple[RotationReading, RotationState]:
    """Compare the eigenpairs ``result`` measured at ``step`` with the earlier measurements of ``state``.

    Pure: returns the :class:`RotationReading` and the new state (``result`` appended, the last
    two kept). With measurements every ``e`` steps the same-parity partner is ``e`` steps back
    for even ``e`` and ``2e`` for odd ``e`` (hence two kept). Degenerate-safe as
    :func:`eigenvector_similarity`; its ``subspace`` is the similarity of the whole top-``k``
    eigenspace (1: unchanged, 0: orthogonal).
    """
    hist = state.history
    previous = eigenvector_similarity(hist[-1][1], result) if hist else None
    same = [(e, r) for e, r in hist if (step - e) % 2 == 0]
    parity, lag = None, None
    if same:
        e_par, r_par = same[-1]
        parity, lag = eigenvector_similarity(r_par, result), step - e_par
    light = dataclasses.replace(result, extra={})
    return RotationReading(previous, parity, lag), RotationState((*hist, (step, light))[-2:])
