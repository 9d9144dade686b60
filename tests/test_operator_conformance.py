"""One conformance suite for every operator and every solver (scikit-learn's idea: one suite,
all implementations).

* :func:`check_operator` is the one helper every :class:`~instab_lib.curvature.LinearOperator`
  passes: ``matvec``/``matmat``/``@`` against ``to_dense()`` and against an independent dense
  ground truth (the matrix itself, :func:`~instab_lib.curvature.dense_hessian`, or
  ``torch.autograd.functional.hessian``) to ~1e-12 in float64, symmetry, shape errors, the
  ``k = 0`` block, the ``n_matvec`` count and ``to_scipy()``.
* :func:`conformance.check_eigenpairs` (``tests/conformance.py``) is the one helper every
  eigen-solver passes on every operator of :data:`SOLVER_OPERATORS`, and the
  :class:`~instab_lib.Monitor` on models nobody here wrote (``tests/test_monitor.py``):
  eigenvalues against ``torch.linalg.eigvalsh`` of the dense matrix, orthonormal vectors,
  reported residuals that are the true ones and ``≤ tol · scale``.
  Stochastic estimators are held to their own standard errors (4 σ).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from instab_lib.curvature import (
    DiagonalOperator,
    EigTracker,
    HessianOperator,
    LinearOperator,
    MatrixOperator,
    ProductOperator,
    ScaledOperator,
    SumOperator,
    as_operator,
    dense_hessian,
    extreme_eigenpairs,
    hutchinson_trace,
    lanczos,
    lobpcg,
    power_iteration,
    slq_density,
)
from conformance import check_eigenpairs
from instab_lib.experiments import landscape
from instab_lib.preconditioned import PreconditionedOperator

pytestmark = pytest.mark.usefixtures("one_thread")
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
DT = torch.float64
CE = nn.CrossEntropyLoss()


# --------------------------------------------------------------------------- #
# the operators (each: the operator, its dense ground truth, products per column)
# --------------------------------------------------------------------------- #
def _symmetric(n: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=DT)
    return 0.5 * (A + A.T)


def _planted(n: int = 60, seed: int = 3) -> tuple[Tensor, Tensor]:
    """A symmetric matrix with a known, gapped spectrum at both ends."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=DT))
    lam = torch.cat([torch.tensor([10.0, 8.0, 6.5, 5.0], dtype=DT), torch.linspace(-1.0, 1.0, n - 6, dtype=DT),
                     torch.tensor([-4.0, -6.0], dtype=DT)])
    A = (Q * lam) @ Q.T
    return 0.5 * (A + A.T), lam


def _mlp() -> tuple[nn.Module, list[tuple[Tensor, Tensor]]]:
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).to(DT)
    X = torch.randn(25, 5, generator=g, dtype=DT)
    y = torch.randint(0, 3, (25,), generator=g)
    return model, [(X[:15], y[:15]), (X[15:], y[15:])]  # unequal chunks


_HESSIAN = {  # every method HessianOperator offers
    "double_backward": dict(method="double_backward"),
    "double_backward_rebuild": dict(method="double_backward", graph_budget_bytes=0),
    "double_backward_batched": dict(method="double_backward", batched=True),
    "forward_over_reverse": dict(method="forward_over_reverse"),
    "forward_over_reverse_batched": dict(method="forward_over_reverse", batched=True),
    "mlp": dict(method="mlp"),
}


def _hessian(method: str = "double_backward") -> tuple[HessianOperator, Tensor]:
    model, data = _mlp()
    return HessianOperator(model, CE, data, **_HESSIAN[method]), dense_hessian(model, CE, data)


def _point() -> tuple[LinearOperator, Tensor]:
    A = _symmetric(9, 7)

    def f(t: Tensor) -> Tensor:
        return 0.5 * t @ A @ t + torch.sin(t).pow(2).sum() * t[0] + 0.25 * (t @ t) ** 2

    theta = torch.linspace(-1.0, 1.0, 9, dtype=DT)
    return landscape.PointHessian(f, theta), torch.autograd.functional.hessian(f, theta)


def _diag(n: int) -> Tensor:
    return torch.linspace(0.3, 2.0, n, dtype=DT)


def _cases() -> dict[str, Callable[[], tuple[LinearOperator, Tensor, int]]]:
    def matrix() -> tuple[LinearOperator, Tensor, int]:
        A = _symmetric(30, 1)
        return MatrixOperator(A), A, 1

    def hessian(method: str) -> Callable[[], tuple[LinearOperator, Tensor, int]]:
        return lambda: (*_hessian(method), 1)

    def point() -> tuple[LinearOperator, Tensor, int]:
        return (*_point(), 1)

    def preconditioned() -> tuple[LinearOperator, Tensor, int]:
        op, H = _hessian()
        s = _diag(op.dim).rsqrt()
        return PreconditionedOperator(op, _diag(op.dim)), s[:, None] * H * s[None, :], 1

    def preconditioned_matrix() -> tuple[LinearOperator, Tensor, int]:
        A = _symmetric(30, 2)
        s = _diag(30).rsqrt()
        return PreconditionedOperator(MatrixOperator(A), _diag(30)), s[:, None] * A * s[None, :], 1

    def sum_() -> tuple[LinearOperator, Tensor, int]:
        op, H = _hessian()
        B = _symmetric(op.dim, 4)
        return op + MatrixOperator(B), H + B, 2

    def difference() -> tuple[LinearOperator, Tensor, int]:
        A, B = _symmetric(30, 5), _symmetric(30, 6)
        return MatrixOperator(A) - MatrixOperator(B), A - B, 2

    def scaled() -> tuple[LinearOperator, Tensor, int]:
        op, H = _hessian()
        return -2.5 * op, -2.5 * H, 1

    def product() -> tuple[LinearOperator, Tensor, int]:
        A = _symmetric(30, 8)
        D = DiagonalOperator(_diag(30))
        return D @ MatrixOperator(A) @ D, _diag(30)[:, None] * A * _diag(30)[None, :], 1

    def product_of_hessians() -> tuple[LinearOperator, Tensor, int]:
        op, H = _hessian("mlp")
        return op @ op, H @ H, 2

    cases = {"matrix": matrix, "point_hessian": point, "preconditioned": preconditioned,
             "preconditioned_matrix": preconditioned_matrix, "sum": sum_, "difference": difference,
             "scaled": scaled, "product": product, "product_of_hessians": product_of_hessians}
    cases.update({f"hessian_{m}": hessian(m) for m in _HESSIAN})
    return cases


CASES = _cases()


# --------------------------------------------------------------------------- #
# the one operator helper
# --------------------------------------------------------------------------- #
def check_operator(op: LinearOperator, truth: Tensor, per_column: int) -> None:
    """Everything an operator promises, checked against its dense ground truth ``truth``.

    ``per_column``: products the operator's parts spend per column (its ``n_matvec`` step).
    """
    n = op.dim
    assert isinstance(op, LinearOperator)
    assert truth.shape == (n, n) and op.dtype == truth.dtype and op.device == truth.device
    scale = max(float(truth.abs().max()), 1.0)
    close = dict(rtol=1e-10, atol=1e-12 * scale)
    g = torch.Generator().manual_seed(11)
    V = torch.randn(n, 4, generator=g, dtype=DT)
    v = V[:, 0].clone()

    start = op.n_matvec
    dense = op.to_dense()
    assert op.n_matvec == start + n * per_column
    torch.testing.assert_close(dense, truth, **close)
    assert op.symmetric and op.T is op and op.adjoint() is op
    torch.testing.assert_close(dense, dense.T, rtol=0, atol=1e-12 * scale)

    start = op.n_matvec
    Hv, HV = op.matvec(v), op.matmat(V)
    assert Hv.shape == (n,) and HV.shape == (n, 4) and Hv.dtype == HV.dtype == DT
    assert op.n_matvec == start + 5 * per_column
    for got, want in ((Hv, truth @ v), (HV, truth @ V), (Hv, dense @ v), (HV, dense @ V)):
        torch.testing.assert_close(got, want, **close)
    torch.testing.assert_close(op @ v, Hv, rtol=0, atol=1e-14 * scale)
    torch.testing.assert_close(op @ V, HV, rtol=0, atol=1e-14 * scale)
    torch.testing.assert_close(op.matvec(v.float()), truth @ v.float().double(), **close)  # cast

    start = op.n_matvec
    empty = op.matmat(V[:, :0])
    assert empty.shape == (n, 0) and op.n_matvec == start
    for bad_v in (torch.zeros(n + 1, dtype=DT), torch.zeros(n, 1, dtype=DT)):
        with pytest.raises(ValueError, match="shape"):
            op.matvec(bad_v)
    for bad_V in (torch.zeros(n + 1, 2, dtype=DT), torch.zeros(n, dtype=DT), torch.zeros(n, 2, 1, dtype=DT)):
        with pytest.raises(ValueError, match="shape"):
            op.matmat(bad_V)
    assert op.n_matvec == start  # nothing was computed by the failing calls

    sp = op.to_scipy()
    assert sp.shape == (n, n) and sp.dtype == np.float64
    x = np.linspace(-1.0, 1.0, n)
    np.testing.assert_allclose(sp.matvec(x), (truth @ torch.from_numpy(x)).numpy(), rtol=1e-10, atol=1e-12 * scale)
    np.testing.assert_allclose(sp @ V.numpy(), (truth @ V).numpy(), rtol=1e-10, atol=1e-12 * scale)
    np.testing.assert_allclose(sp.rmatvec(x), sp.matvec(x), rtol=0, atol=1e-14 * scale)


@pytest.mark.parametrize("case", sorted(CASES))
def test_operator_conformance(case: str) -> None:
    op, truth, per_column = CASES[case]()
    check_operator(op, truth, per_column)


def test_compositions_of_compositions_and_their_counts() -> None:
    A, B = _symmetric(20, 1), _symmetric(20, 2)
    a, b = MatrixOperator(A), MatrixOperator(B)
    op = 0.5 * (a + b) - a * 3 + (-b)
    check_operator(op, 0.5 * (A + B) - 3 * A - B, 4)
    assert a.n_matvec == b.n_matvec == op.n_matvec // 2
    assert isinstance(op, SumOperator) and isinstance(0.5 * a, ScaledOperator) and isinstance(a @ b, ProductOperator)


def test_products_that_are_not_symmetric_have_an_adjoint() -> None:
    A, B = _symmetric(12, 1), _symmetric(12, 2)
    ab = MatrixOperator(A) @ MatrixOperator(B)
    assert not ab.symmetric
    torch.testing.assert_close(ab.to_dense(), A @ B, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ab.T.to_dense(), B @ A, rtol=1e-12, atol=1e-12)
    x = np.linspace(0.0, 1.0, 12)
    np.testing.assert_allclose(ab.to_scipy().rmatvec(x), (B @ A @ torch.from_numpy(x)).numpy(), rtol=1e-12)
    C = torch.randn(12, 12, dtype=DT, generator=torch.Generator().manual_seed(3))
    c = MatrixOperator(C, check_symmetric=False)
    assert not c.symmetric and torch.equal(c.T.to_dense(), C.T @ torch.eye(12, dtype=DT))


def test_mismatched_operators_raise_a_one_line_error() -> None:
    a = MatrixOperator(_symmetric(5, 1))
    with pytest.raises(ValueError, match="dim 5 vs 6") as e:
        a + MatrixOperator(_symmetric(6, 1))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="dtype"):
        a @ MatrixOperator(_symmetric(5, 1).float())
    with pytest.raises(ValueError, match="LinearOperator"):
        SumOperator()
    with pytest.raises(TypeError):
        a * torch.ones(5)  # a tensor is not a scalar
    with pytest.raises(ValueError, match="shape"):
        PreconditionedOperator(a, torch.ones(4, dtype=DT))


def test_subclass_needs_only_matmat_and_duck_types_are_wrapped() -> None:
    A = _symmetric(8, 9)

    class Twice(LinearOperator):
        def __init__(self) -> None:
            super().__init__(8, DT, "cpu")

        def _matmat(self, V: Tensor) -> Tensor:
            return 2 * (A @ V)

    check_operator(Twice(), 2 * A, 1)

    class Duck:
        dim, dtype, device, n_matvec = 8, DT, torch.device("cpu"), 0

        def matvec(self, v: Tensor) -> Tensor:
            self.n_matvec += 1
            return A @ v

    duck = Duck()
    w = as_operator(duck)
    assert as_operator(w) is w and as_operator(Twice()).dim == 8
    check_operator(w, A, 1)
    assert w.n_matvec == duck.n_matvec > 0
    with pytest.raises(ValueError, match="lacks .matvec"):
        as_operator(object())


# --------------------------------------------------------------------------- #
# the solvers
# --------------------------------------------------------------------------- #
def _planted_operator() -> tuple[LinearOperator, Tensor]:
    A, _ = _planted()
    return MatrixOperator(A), A


def _preconditioned_hessian() -> tuple[LinearOperator, Tensor]:
    op, H = _hessian("mlp")
    s = _diag(op.dim).rsqrt()
    return PreconditionedOperator(op, _diag(op.dim)), s[:, None] * H * s[None, :]


SOLVER_OPERATORS: dict[str, Callable[[], tuple[LinearOperator, Tensor]]] = {
    "planted_matrix": _planted_operator,
    "hessian": lambda: _hessian("double_backward"),
    "hessian_mlp": lambda: _hessian("mlp"),
    "preconditioned_hessian": _preconditioned_hessian,
}


def _run_lanczos(op: LinearOperator, which: str, k: int, tol: float) -> Any:
    return lanczos(op, k, which=which, tol=tol, seed=1)


def _run_block_lanczos(op: LinearOperator, which: str, k: int, tol: float) -> Any:
    return lanczos(op, k, which=which, tol=tol, seed=2, block_size=2)


def _run_extreme(op: LinearOperator, which: str, k: int, tol: float) -> Any:
    top, bot = extreme_eigenpairs(op, k, k, tol=tol, seed=3)
    return top if which == "LA" else bot


def _run_lobpcg(op: LinearOperator, which: str, k: int, tol: float) -> Any:
    X0 = torch.randn(op.dim, k + 2, generator=torch.Generator().manual_seed(4), dtype=op.dtype)
    r = lobpcg(op, X0, which=which, tol=tol, max_iter=500, n_wanted=k)
    return type(r)(r.eigenvalues[:k], r.eigenvectors[:, :k], r.residuals[:k], r.n_matvec, r.converged, r.which,
                   r.iterations, r.tol, r.scale)


def _run_tracker(warm: str) -> Callable[[LinearOperator, str, int, float], Any]:
    def run(op: LinearOperator, which: str, k: int, tol: float) -> Any:
        tracker = EigTracker(k, which=which, tol=tol, warm=warm, guard=1, max_warm_iter=200)
        tracker.update(op)
        res = tracker.update(op)  # warm from the first
        assert tracker.history[1]["warm"] and tracker.history[1]["lag"] == 1
        return res

    return run


SOLVERS: dict[str, tuple[Callable[[LinearOperator, str, int, float], Any], tuple[str, ...]]] = {
    "lanczos": (_run_lanczos, ("LA", "SA", "LM")),
    "block_lanczos": (_run_block_lanczos, ("LA", "SA")),
    "extreme_eigenpairs": (_run_extreme, ("LA", "SA")),
    "lobpcg": (_run_lobpcg, ("LA", "SA")),
    "tracker_krylov": (_run_tracker("krylov"), ("LA", "SA")),
    "tracker_residual": (_run_tracker("residual"), ("LA",)),
    "tracker_lobpcg": (_run_tracker("lobpcg"), ("LA",)),
}


@pytest.mark.parametrize("operator", sorted(SOLVER_OPERATORS))
@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_solver_conformance(solver: str, operator: str) -> None:
    op, truth = SOLVER_OPERATORS[operator]()
    run, whiches = SOLVERS[solver]
    tol = 1e-10
    for which in whiches:
        before = op.n_matvec
        res = run(op, which, 2, tol)
        check_eigenpairs(res, truth, which, 2, tol)
        if not solver.startswith("tracker"):
            assert res.n_matvec == op.n_matvec - before  # the solver reports what it spent


@pytest.mark.parametrize("operator", sorted(SOLVER_OPERATORS))
def test_power_iteration_conformance(operator: str) -> None:
    op, truth = SOLVER_OPERATORS[operator]()
    lam = torch.linalg.eigvalsh(truth)
    top = lam[torch.argsort(lam.abs(), descending=True)]
    tol = 1e-7
    res = power_iteration(op, tol=tol, max_iter=20000, seed=5)
    assert res.converged and res.which == "LM" and res.n_matvec == op.n_matvec
    r = float((truth @ res.eigenvectors[:, 0] - res.eigenvalues[0] * res.eigenvectors[:, 0]).norm())
    assert r == pytest.approx(float(res.residuals[0]), rel=1e-3, abs=1e-12) and r <= tol * abs(float(top[0]))
    # Bauer–Fike / the gap: |θ − λ| ≤ r²/gap for the Rayleigh quotient of a vector with residual r
    gap = float(top[0].abs() - top[1].abs())
    assert abs(float(res.eigenvalues[0]) - float(top[0])) <= r**2 / gap + 1e-12 * float(top[0].abs())


@pytest.mark.parametrize("operator", sorted(SOLVER_OPERATORS))
@pytest.mark.parametrize("power", [1, 2])
def test_hutchinson_conformance(operator: str, power: int) -> None:
    op, truth = SOLVER_OPERATORS[operator]()
    exact = float(torch.trace(torch.linalg.matrix_power(truth, power)))
    mean, se = hutchinson_trace(op, 200, seed=6, power=power, batch=50)
    assert se > 0 and abs(mean - exact) <= 4 * se  # 4 standard errors
    assert op.n_matvec == 200 * ((power + 1) // 2)


@pytest.mark.parametrize("operator", sorted(SOLVER_OPERATORS))
def test_slq_conformance(operator: str) -> None:
    """Gauss quadrature of order m is exact for moments of degree ≤ 2m − 1, so each probe's
    ``Σ_j w_j θ_j^p`` is ``zᵀH^p z/‖z‖²``: the probe mean estimates ``tr(H^p)/dim`` within its
    standard error."""
    op, truth = SOLVER_OPERATORS[operator]()
    n_probes, order = 60, 8
    nodes, weights = slq_density(op, n_probes, order, seed=7)
    lam = torch.linalg.eigvalsh(truth)
    assert nodes.shape == weights.shape == (n_probes, order) and op.n_matvec <= n_probes * order
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(n_probes, dtype=DT), rtol=0, atol=1e-12)
    spread = float(lam[-1] - lam[0])
    assert float(nodes.min()) >= float(lam[0]) - 1e-9 * spread and float(nodes.max()) <= float(lam[-1]) + 1e-9 * spread
    for p in (1, 2, 3):
        per_probe = (weights * nodes**p).sum(dim=1)
        exact = float(torch.trace(torch.linalg.matrix_power(truth, p))) / truth.shape[0]
        se = float(per_probe.std()) / math.sqrt(n_probes)
        assert abs(float(per_probe.mean()) - exact) <= 4 * se + 1e-12 * abs(exact)
