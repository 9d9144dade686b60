"""The operator base :class:`LinearOperator`, its compositions, flat parameter vectors, :func:`dense_hessian`.

Every operator of the library — :class:`MatrixOperator` (a dense matrix),
:class:`~instab_lib.curvature.hessian.HessianOperator`, :class:`~instab_lib.landscape.PointHessian`,
:class:`~instab_lib.adaptive.PreconditionedOperator` — is a :class:`LinearOperator` that
overrides one method, ``_matmat(V) -> A V``; ``matvec``, ``@``, sums, scalings, products,
``to_dense`` and ``to_scipy`` come from the base. :class:`SumOperator`, :class:`ScaledOperator`,
:class:`ProductOperator` and :class:`DiagonalOperator` compose them; :func:`as_operator` wraps
any object with ``dim``, ``dtype``, ``device`` and ``matvec`` (the solvers accept those too).

Flat vectors have shape ``(dim,)`` with ``dim`` the number of trainable scalars, blocks of
vectors ``(dim, k)``; :func:`dense_hessian` (the ground truth of small models) ends the module.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase

from .data import BatchSource
from .loss import REDUCTIONS, ModelMode, resolve_params, weighted_loss


# --------------------------------------------------------------------------- #
# flat vectors
# --------------------------------------------------------------------------- #
def flatten(tensors: Iterable[Tensor]) -> Tensor:
    """Concatenate tensors into one flat vector of shape ``(Σ numel,)``."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("flatten: got no tensors")
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten_like(vec: Tensor, params: Sequence[Tensor]) -> list[Tensor]:
    """Split a flat vector ``(dim,)`` into views shaped like ``params``.

    Raises ``ValueError`` when ``vec.numel() != Σ p.numel()``.
    """
    sizes = [p.numel() for p in params]
    if vec.dim() != 1 or vec.numel() != sum(sizes):
        raise ValueError(
            f"unflatten_like: vector of shape {tuple(vec.shape)} does not match "
            f"{len(sizes)} parameters with {sum(sizes)} entries in all"
        )
    return [c.view_as(p) for c, p in zip(torch.split(vec, sizes), params)]


# --------------------------------------------------------------------------- #
# the operator base
# --------------------------------------------------------------------------- #
def _check_compatible(who: str, a: "LinearOperator", b: "LinearOperator") -> None:
    """One-line ``ValueError`` unless ``a`` and ``b`` share ``dim``, ``dtype`` and ``device``."""
    if (a.dim, a.dtype, a.device) != (b.dim, b.dtype, b.device):
        raise ValueError(
            f"{who}: operators differ: dim {a.dim} vs {b.dim}, dtype {a.dtype} vs {b.dtype}, "
            f"device {a.device} vs {b.device}"
        )


class LinearOperator:
    """A linear operator ``A`` on flat vectors of shape ``(dim,)``: the interface of every solver.

    A subclass calls ``super().__init__(dim, dtype, device)`` and overrides one method,
    ``_matmat(V) -> A V`` for a block ``V`` of shape ``(dim, k)``, ``k ≥ 1``, already of the
    operator's dtype and device. Everything else is derived:

    * :meth:`matmat` — ``A V`` for ``(dim, k)`` (shape checked, ``k = 0`` answered without a
      product, ``V`` cast to ``dtype``/``device``); :meth:`matvec` — ``A v`` for ``(dim,)``;
      ``A @ v``, ``A @ V``, and ``A @ B`` for another operator (a :class:`ProductOperator`).
    * ``A + B``, ``A - B`` (:class:`SumOperator`), ``c * A``, ``A * c``, ``-A``
      (:class:`ScaledOperator`); mismatched ``dim``/``dtype``/``device`` raise ``ValueError``.
    * :attr:`T` / :meth:`adjoint` — ``Aᵀ`` (the operator itself where ``symmetric``).
    * :meth:`to_dense` — the ``(dim, dim)`` matrix ``A I`` (tests, small problems);
      :meth:`to_scipy` — a float64 ``scipy.sparse.linalg.LinearOperator`` for peers such as
      ``eigsh``.

    ``n_matvec`` counts the columns multiplied by the operator (a ``matmat`` with ``k`` columns
    counts ``k``); a composition reports the sum of the counts of the distinct operators it is
    built from (``H @ H`` spends two products of ``H`` per column, and reports ``H``'s count),
    and a diagonal scaling counts nothing (the counts measure products with the Hessian or
    matrix behind an operator).
    """

    #: ``A = Aᵀ`` (all the curvature operators; a product of operators in general is not).
    symmetric: bool = True
    #: whether :meth:`matmat` adds its columns to ``n_matvec`` (compositions sum their parts')
    _counted: bool = True
    n_matvec: int = 0

    def __init__(self, dim: int, dtype: torch.dtype, device: torch.device | str) -> None:
        self.dim: int = int(dim)
        self.dtype: torch.dtype = dtype
        self.device: torch.device = torch.device(device)
        if self._counted:
            self.n_matvec = 0

    def _matmat(self, V: Tensor) -> Tensor:
        """``A V`` for ``V`` of shape ``(dim, k)``, ``k ≥ 1``: the one method a subclass overrides."""
        raise NotImplementedError(f"{type(self).__name__} must implement _matmat")

    def _adjoint(self) -> "LinearOperator":
        raise NotImplementedError(f"{type(self).__name__} is not symmetric and has no adjoint")

    # ---- derived ------------------------------------------------------------ #
    def matmat(self, V: Tensor) -> Tensor:
        """``A V`` for ``V`` of shape ``(dim, k)``; returns ``(dim, k)`` (``k = 0``: no product)."""
        if not isinstance(V, Tensor) or V.dim() != 2 or V.shape[0] != self.dim:
            shape = tuple(V.shape) if isinstance(V, Tensor) else type(V).__name__
            raise ValueError(f"{type(self).__name__}: expected a block of shape ({self.dim}, k), got {shape}")
        V = V.to(dtype=self.dtype, device=self.device)
        if V.shape[1] == 0:
            return V.clone()
        if self._counted:
            self.n_matvec += V.shape[1]
        return self._matmat(V)

    def matvec(self, v: Tensor) -> Tensor:
        """``A v`` for ``v`` of shape ``(dim,)``; returns ``(dim,)`` (one column of :meth:`matmat`)."""
        if not isinstance(v, Tensor) or v.dim() != 1 or v.shape[0] != self.dim:
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(f"{type(self).__name__}: expected a vector of shape ({self.dim},), got {shape}")
        return self.matmat(v[:, None])[:, 0]

    def __matmul__(self, other: Any) -> Any:
        if isinstance(other, LinearOperator):
            return ProductOperator(self, other)
        if isinstance(other, Tensor):
            return self.matvec(other) if other.dim() == 1 else self.matmat(other)
        return NotImplemented

    def __add__(self, other: Any) -> "LinearOperator":
        return SumOperator(self, other) if isinstance(other, LinearOperator) else NotImplemented

    def __sub__(self, other: Any) -> "LinearOperator":
        return SumOperator(self, -other) if isinstance(other, LinearOperator) else NotImplemented

    def __mul__(self, c: Any) -> "LinearOperator":
        return ScaledOperator(c, self) if isinstance(c, numbers.Real) else NotImplemented

    __rmul__ = __mul__

    def __neg__(self) -> "LinearOperator":
        return ScaledOperator(-1.0, self)

    def adjoint(self) -> "LinearOperator":
        """``Aᵀ``: the operator itself where :attr:`symmetric`."""
        return self if self.symmetric else self._adjoint()

    @property
    def T(self) -> "LinearOperator":
        return self.adjoint()

    def to_dense(self) -> Tensor:
        """The ``(dim, dim)`` matrix ``A I`` (``dim`` products: for tests and small problems)."""
        return self.matmat(torch.eye(self.dim, dtype=self.dtype, device=self.device))

    def to_scipy(self) -> Any:
        """A ``scipy.sparse.linalg.LinearOperator`` (float64 numpy in and out) with ``A``'s products."""
        import numpy as np
        from scipy.sparse.linalg import LinearOperator as ScipyLinearOperator

        def product(op: LinearOperator) -> Callable[[Any], Any]:
            def apply(X: Any) -> Any:
                X = np.asarray(X, dtype=np.float64)
                block = torch.from_numpy(np.ascontiguousarray(X.reshape(self.dim, -1)))
                with torch.no_grad():
                    Y = op.matmat(block).detach().to(device="cpu", dtype=torch.float64).numpy()
                return Y.reshape(X.shape)

            return apply

        fwd, adj = product(self), product(self.adjoint())
        return ScipyLinearOperator((self.dim, self.dim), matvec=fwd, matmat=fwd, rmatvec=adj, rmatmat=adj,
                                   dtype=np.float64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, dtype={self.dtype}, device={self.device})"


class _Composite(LinearOperator):
    """An operator built from ``parts`` (same ``dim``, ``dtype``, ``device``); counts are theirs."""

    _counted = False

    def __init__(self, *parts: LinearOperator) -> None:
        if not parts or not all(isinstance(p, LinearOperator) for p in parts):
            raise ValueError(f"{type(self).__name__}: needs one or more LinearOperator parts")
        for p in parts[1:]:
            _check_compatible(type(self).__name__, parts[0], p)
        self.parts: tuple[LinearOperator, ...] = parts
        super().__init__(parts[0].dim, parts[0].dtype, parts[0].device)

    def _leaves(self) -> dict[int, LinearOperator]:
        """The distinct operators at the bottom of the composition (each counted once)."""
        out: dict[int, LinearOperator] = {}
        for p in self.parts:
            out.update(p._leaves() if isinstance(p, _Composite) else {id(p): p})
        return out

    @property
    def n_matvec(self) -> int:  # type: ignore[override]
        """The products spent by the distinct operators underneath (``A @ A`` counts ``A``'s once)."""
        return sum(int(getattr(p, "n_matvec", 0)) for p in self._leaves().values())


class SumOperator(_Composite):
    """``(A₁ + … + A_n) V = A₁V + … + A_nV`` (added left to right)."""

    def __init__(self, *parts: LinearOperator) -> None:
        super().__init__(*parts)
        self.symmetric = all(p.symmetric for p in parts)

    def _matmat(self, V: Tensor) -> Tensor:
        out = self.parts[0].matmat(V)
        for p in self.parts[1:]:
            out = out + p.matmat(V)
        return out

    def _adjoint(self) -> LinearOperator:
        return SumOperator(*(p.adjoint() for p in self.parts))


class ScaledOperator(_Composite):
    """``(c A) V = c · (A V)`` for a real scalar ``c``."""

    def __init__(self, c: float, op: LinearOperator) -> None:
        if not isinstance(c, numbers.Real):
            raise ValueError(f"ScaledOperator: the scale must be a real number, got {type(c).__name__}")
        super().__init__(op)
        self.c = c
        self.symmetric = op.symmetric

    def _matmat(self, V: Tensor) -> Tensor:
        return self.c * self.parts[0].matmat(V)

    def _adjoint(self) -> LinearOperator:
        return ScaledOperator(self.c, self.parts[0].adjoint())


class ProductOperator(_Composite):
    """``(A₁ A₂ … A_n) V = A₁(A₂(… (A_n V)))`` (applied right to left; nested products flattened).

    Symmetric where the parts are and read the same backwards (``D H D``), else ``ᵀ`` reverses them.
    """

    def __init__(self, *parts: LinearOperator) -> None:
        flat = [q for p in parts for q in (p.parts if type(p) is ProductOperator else (p,))]
        super().__init__(*flat)
        self.symmetric = all(p.symmetric for p in flat) and all(a is b for a, b in zip(flat, reversed(flat)))

    def _matmat(self, V: Tensor) -> Tensor:
        for p in reversed(self.parts):
            V = p.matmat(V)
        return V

    def _adjoint(self) -> LinearOperator:
        return ProductOperator(*(p.adjoint() for p in reversed(self.parts)))


class DiagonalOperator(LinearOperator):
    """``diag(d) V = d[:, None] · V`` for a vector ``d`` of shape ``(dim,)`` (not counted in ``n_matvec``)."""

    _counted = False

    def __init__(self, d: Tensor) -> None:
        d = torch.as_tensor(d)
        if d.dim() != 1 or d.shape[0] == 0:
            raise ValueError(f"DiagonalOperator: need a non-empty vector, got shape {tuple(d.shape)}")
        super().__init__(d.shape[0], d.dtype, d.device)
        self.d = d

    def _matmat(self, V: Tensor) -> Tensor:
        return self.d[:, None] * V


class MatrixOperator(LinearOperator):
    """A dense matrix ``A`` (``(dim, dim)``, symmetric unless ``check_symmetric=False``) as an operator.

    ``matmat(V) = A V``; ``n_matvec`` counts columns multiplied. Used for quadratics
    ``L(θ) = ½ θᵀAθ`` (whose Hessian is ``A``) and in tests.
    """

    def __init__(self, A: Tensor, check_symmetric: bool = True) -> None:
        if A.dim() != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"MatrixOperator: need a square matrix, got shape {tuple(A.shape)}")
        if A.shape[0] == 0:
            raise ValueError("MatrixOperator: empty matrix")
        if check_symmetric:
            scale = A.abs().max().clamp_min(torch.finfo(A.dtype).tiny)
            if (A - A.T).abs().max() > 100 * torch.finfo(A.dtype).eps * scale:
                raise ValueError("MatrixOperator: matrix is not symmetric")
        super().__init__(A.shape[0], A.dtype, A.device)
        self.A = A
        self.symmetric = check_symmetric or bool(torch.equal(A, A.T))

    def _matmat(self, V: Tensor) -> Tensor:
        return self.A @ V

    def _adjoint(self) -> LinearOperator:
        return MatrixOperator(self.A.T, check_symmetric=False)


class _Wrapped(LinearOperator):
    """Any object with ``dim``, ``dtype``, ``device`` and ``matvec`` (``matmat`` if it has one) as a
    :class:`LinearOperator`; vectors go to its own ``matvec``, its ``n_matvec`` is reported if it keeps one."""

    _counted = False

    def __init__(self, op: Any) -> None:
        super().__init__(op.dim, op.dtype, op.device)
        self.op = op
        self._own = 0

    @property
    def n_matvec(self) -> int:  # type: ignore[override]
        return int(getattr(self.op, "n_matvec", self._own))

    def _matmat(self, V: Tensor) -> Tensor:
        self._own += V.shape[1]
        if hasattr(self.op, "matmat"):
            return self.op.matmat(V)
        return torch.stack([self.op.matvec(V[:, j]) for j in range(V.shape[1])], dim=1)

    def matvec(self, v: Tensor) -> Tensor:
        if not isinstance(v, Tensor) or v.dim() != 1 or v.shape[0] != self.dim:
            return super().matvec(v)  # raises the base's ValueError
        self._own += 1
        return self.op.matvec(v.to(dtype=self.dtype, device=self.device))


def as_operator(op: Any) -> LinearOperator:
    """``op`` itself if it is a :class:`LinearOperator`, else a wrapper around its ``matvec``/``matmat``.

    Raises ``ValueError`` if ``op`` lacks ``matvec``, ``dim``, ``dtype`` or ``device``.
    """
    if isinstance(op, LinearOperator):
        return op
    for attr in ("matvec", "dim", "dtype", "device"):
        if not hasattr(op, attr):
            raise ValueError(f"operator lacks .{attr}; wrap a matrix in MatrixOperator(A)")
    return _Wrapped(op)


def dense_hessian(
    model: nn.Module | Callable[[Any, Any], Any],
    loss_fn: Callable[[Any, Any], Tensor],
    data: Any,
    params: Sequence[Tensor] | dict[str, Tensor] | None = None,
    *,
    batch_fn: Callable[[Any], tuple[Any, Any, int]] | None = None,
    loss_reduction: str = "mean",
    bn_mode: str = "eval",
) -> Tensor:
    """The full Hessian ``∇²_θ L`` as a ``(dim, dim)`` matrix, via ``torch.func.hessian``.

    Independent of :class:`~instab_lib.curvature.HessianOperator`'s products (reverse-over-reverse
    by ``torch.func`` on a flat parameter vector), so it serves as ground truth for small models.
    Data, parameters and modes as in :class:`~instab_lib.curvature.HessianOperator` (data
    materialised; ``loss_reduction`` is taken as given, not measured): chunks weighted by
    ``n_c/N`` for ``"mean"``, by 1 for ``"sum"``, each term :func:`~.loss.weighted_loss`.

    With ``bn_mode="train"`` and a normalisation layer in the model the Hessian is built row by row with plain
    autograd (``torch.autograd.functional.hessian``): ``torch.func``'s transforms differentiate BatchNorm's
    batch statistics wrongly at second order (torch 2.14: the result is not even symmetric, off by 6 % of its
    largest entry on a small CNN; ``tests/test_hessian_contract.py``).
    """
    from torch.func import hessian

    if loss_reduction not in REDUCTIONS:
        raise ValueError(f"unknown loss_reduction {loss_reduction!r}; expected one of {REDUCTIONS}")
    names, ps = resolve_params(model, params)
    source = BatchSource(data, ps[0].device, ps[0].dtype, batch_fn, materialize=True)
    theta = flatten([p.detach() for p in ps])
    H = torch.zeros(theta.numel(), theta.numel(), dtype=theta.dtype, device=theta.device)
    batch_stats = (bn_mode == "train" and isinstance(model, nn.Module)
                   and any(isinstance(m, _NormBase) for m in model.modules()))
    with ModelMode(model, bn_mode) as mode:
        for X, y, n in source:
            w = n / source.n_samples if loss_reduction == "mean" else 1.0

            def loss(t: Tensor, X: Any = X, y: Any = y, w: float = w) -> Tensor:
                return weighted_loss(model, loss_fn, dict(zip(names, unflatten_like(t, ps))), X, y, w, mode.buffers)

            H += torch.autograd.functional.hessian(loss, theta) if batch_stats else hessian(loss)(theta)
    return 0.5 * (H + H.T)
