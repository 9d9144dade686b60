"""Tests of instab_lib.rotation: signs, principal angles, dk_cos, degenerate clusters."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from instab_lib.curvature import EigResult, MatrixOperator, lanczos
from instab_lib.rotation import abs_cosine, eigenvector_similarity, principal_angles, subspace_similarity

DT = torch.float64


def _rot(n: int, i: int, j: int, angle: float) -> Tensor:
    R = torch.eye(n, dtype=DT)
    c, s = math.cos(angle), math.sin(angle)
    R[i, i], R[j, j], R[i, j], R[j, i] = c, c, -s, s
    return R


def test_abs_cosine_sign_invariant() -> None:
    a = torch.tensor([1.0, 2.0, -3.0], dtype=DT)
    b = torch.tensor([2.0, -1.0, 0.5], dtype=DT)
    exact = abs(float(a @ b)) / float(a.norm() * b.norm())
    assert abs(abs_cosine(a, b) - exact) < 1e-15
    assert abs_cosine(a, -a) == pytest.approx(1.0, abs=1e-15)
    assert abs_cosine(a, -3 * a) == pytest.approx(1.0, abs=1e-15)
    assert abs_cosine(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])) == 0.0
    with pytest.raises(ValueError, match="zero vector"):
        abs_cosine(a, torch.zeros(3, dtype=DT))
    with pytest.raises(ValueError, match="sizes differ"):
        abs_cosine(a, torch.ones(2, dtype=DT))


def test_principal_angles_known_and_small() -> None:
    n = 6
    E = torch.eye(n, dtype=DT)
    for angle in (0.3, 1e-9, math.pi / 2):
        B = _rot(n, 1, 4, angle) @ E[:, :2]  # rotate e2 towards e5
        th = principal_angles(E[:, :2], B)
        torch.testing.assert_close(th, torch.tensor(sorted([0.0, angle]), dtype=DT), atol=1e-14, rtol=1e-7)
    # column scaling, sign and ordering do not matter
    A = torch.randn(n, 3, dtype=DT)
    B = A[:, [2, 0, 1]] * torch.tensor([-2.0, 0.5, 3.0], dtype=DT)
    assert float(principal_angles(A, B).max()) < 1e-7
    # different dimensions: number of angles = smaller dimension
    assert principal_angles(E[:, :3], E[:, 2:3]).shape == (1,)
    with pytest.raises(ValueError):
        principal_angles(E[:, :2], torch.ones(5, 2, dtype=DT))
    with pytest.raises(ValueError, match="dependent"):
        principal_angles(E[:, :2], torch.ones(6, 2, dtype=DT))


def test_subspace_similarity_matches_author_formula() -> None:
    n, k = 8, 3
    E = torch.eye(n, dtype=DT)
    R = _rot(n, 0, 5, 0.4) @ _rot(n, 1, 6, 0.7)
    A, B = E[:, :k], R @ E[:, :k]
    th = torch.tensor([0.0, 0.4, 0.7], dtype=DT)
    d = math.sqrt(float((th**2).sum())) / math.sqrt(k * (math.pi / 2) ** 2)
    assert subspace_similarity(A, B) == pytest.approx(math.cos(d * math.pi / 2), abs=1e-12)
    d_lin = float((th**2).sum()) / (k * (math.pi / 2) ** 2)
    assert subspace_similarity(A, B, kind="linear") == pytest.approx(math.cos(d_lin * math.pi / 2), abs=1e-12)
    assert subspace_similarity(A, A) == pytest.approx(1.0, abs=1e-15)
    assert subspace_similarity(E[:, :2], E[:, 2:4]) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="unknown kind"):
        subspace_similarity(A, B, kind="cosine")


def _result(lam: list[float], V: Tensor) -> EigResult:
    k = len(lam)
    return EigResult(torch.tensor(lam, dtype=DT), V, torch.zeros(k, dtype=DT), 0, True, "LA", 0)


def test_sign_flips_do_not_change_similarity() -> None:
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(20, 4, generator=g, dtype=DT))
    prev = _result([5.0, 3.0, 2.0, 1.0], Q)
    cur = _result([5.0, 3.0, 2.0, 1.0], Q * torch.tensor([-1.0, 1.0, -1.0, -1.0], dtype=DT))
    rep = eigenvector_similarity(prev, cur)
    torch.testing.assert_close(rep.cosines, torch.ones(4, dtype=DT))
    assert rep.subspace == pytest.approx(1.0, abs=1e-12)
    assert rep.clusters == []


def test_near_degenerate_pair_compared_as_subspace() -> None:
    n = 10
    E = torch.eye(n, dtype=DT)
    prev = _result([5.0, 3.0, 2.9999, 1.0], E[:, :4])
    # inside the near-degenerate pair (3, 2.9999) the vectors rotate by 60°: arbitrary basis
    R = _rot(n, 1, 2, math.pi / 3)
    cur = _result([5.0, 3.0, 2.9999, 1.0], R @ E[:, :4])
    rep = eigenvector_similarity(prev, cur, gap_tol=1e-3)
    assert rep.clusters == [(1, 3)]
    assert rep.in_cluster.tolist() == [False, True, True, False]
    assert float(rep.raw_cosines[1]) == pytest.approx(0.5, abs=1e-12)  # naive index match fails
    torch.testing.assert_close(rep.cosines, torch.ones(4, dtype=DT))  # the cluster's subspace is unchanged
    assert rep.gaps_cur[1] == pytest.approx(1e-4 / 5.0, rel=1e-6)
    # a real rotation out of the cluster is still seen
    R2 = _rot(n, 2, 7, 0.5)
    rep2 = eigenvector_similarity(prev, _result([5.0, 3.0, 2.9999, 1.0], R2 @ E[:, :4]), gap_tol=1e-3)
    assert float(rep2.cosines[1]) < 0.99
    # with a tiny gap_tol the pair is treated as two vectors
    rep3 = eigenvector_similarity(prev, cur, gap_tol=1e-8)
    assert rep3.clusters == [] and float(rep3.cosines[1]) == pytest.approx(0.5, abs=1e-12)


def test_swapped_order_found_by_matching() -> None:
    E = torch.eye(6, dtype=DT)
    prev = _result([4.0, 2.0, 1.0], E[:, :3])
    cur = _result([4.0, 2.0, 1.0], E[:, [0, 2, 1]])  # eigenvalues crossed
    rep = eigenvector_similarity(prev, cur, gap_tol=1e-6)
    assert float(rep.raw_cosines[1]) == 0.0
    assert rep.matching.tolist() == [0, 2, 1]
    torch.testing.assert_close(rep.matched_cosines, torch.ones(3, dtype=DT))


def test_similarity_of_solver_output_sign_and_degeneracy() -> None:
    # two Lanczos runs with different seeds on a matrix with a repeated eigenvalue:
    # vectors in the repeated pair differ, the subspace does not
    g = torch.Generator().manual_seed(3)
    Q, _ = torch.linalg.qr(torch.randn(50, 50, generator=g, dtype=DT))
    lam = torch.cat([torch.tensor([6.0, 4.0, 4.0], dtype=DT), torch.linspace(-1, 1, 47, dtype=DT)])
    A = Q @ torch.diag(lam) @ Q.T
    A = 0.5 * (A + A.T)
    a = lanczos(MatrixOperator(A), 3, tol=1e-12, seed=0, block_size=2)
    b = lanczos(MatrixOperator(A), 3, tol=1e-12, seed=5, block_size=2)
    rep = eigenvector_similarity(a, b)
    assert rep.clusters == [(1, 3)]
    assert float(rep.cosines.min()) > 1 - 1e-10
    assert rep.subspace > 1 - 1e-10


def test_bad_inputs() -> None:
    E = torch.eye(5, dtype=DT)
    a = _result([2.0, 1.0], E[:, :2])
    b = _result([2.0, 1.0, 0.5], E[:, :3])
    with pytest.raises(ValueError, match="shape"):
        eigenvector_similarity(a, b)
    with pytest.raises(ValueError, match="gap_tol"):
        eigenvector_similarity(a, a, gap_tol=-1.0)
    c = EigResult(a.eigenvalues, a.eigenvectors, a.residuals, 0, True, "SA", 0)
    with pytest.raises(ValueError, match="which"):
        eigenvector_similarity(a, c)
