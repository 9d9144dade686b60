"""Flat parameter vectors and the operator interface: :class:`MatrixOperator`, :func:`dense_hessian`.

Flat vectors have shape ``(dim,)`` with ``dim`` the number of trainable scalars, blocks of
vectors ``(dim, k)``; the helpers here normalise data chunks and parameter lists for
:class:`~instab_lib.curvature.hessian.HessianOperator`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn


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
# operators
# --------------------------------------------------------------------------- #
class LinearOperatorLike(Protocol):
    """What the solvers need: a symmetric ``(dim, dim)`` operator."""

    dim: int
    dtype: torch.dtype
    device: torch.device

    def matvec(self, v: Tensor) -> Tensor: ...


class MatrixOperator:
    """A dense symmetric matrix ``A`` (``(dim, dim)``) behind the operator interface.

    ``matvec(v) = A v``, ``matmat(V) = A V``; ``n_matvec`` counts columns multiplied.
    Used for quadratics ``L(θ) = ½ θᵀAθ`` (whose Hessian is ``A``) and in tests.
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
        self.A = A
        self.dim: int = A.shape[0]
        self.dtype: torch.dtype = A.dtype
        self.device: torch.device = A.device
        self.n_matvec: int = 0

    def matvec(self, v: Tensor) -> Tensor:
        """``A v`` for ``v`` of shape ``(dim,)``."""
        self.n_matvec += 1
        return self.A @ v

    def matmat(self, V: Tensor) -> Tensor:
        """``A V`` for ``V`` of shape ``(dim, k)``."""
        self.n_matvec += V.shape[1]
        return self.A @ V


def _matmat(op: Any, V: Tensor) -> Tensor:
    """``op @ V`` for ``V`` of shape ``(dim, k)``, using ``op.matmat`` if it exists."""
    if V.shape[1] == 0:
        return V.clone()
    if hasattr(op, "matmat"):
        return op.matmat(V)
    return torch.stack([op.matvec(V[:, j]) for j in range(V.shape[1])], dim=1)


def _as_chunks(data: Any) -> list[tuple[Any, Any]]:
    """Normalise ``data`` to a list of ``(X, y)`` chunks."""
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], tuple):
        chunks = [data]
    elif isinstance(data, (list, tuple)) or hasattr(data, "__iter__"):
        chunks = [tuple(c) for c in data]
    else:
        raise ValueError("data must be a tuple (X, y) or a sequence of (X, y) chunks")
    if not chunks:
        raise ValueError("data: no chunks")
    for c in chunks:
        if len(c) != 2:
            raise ValueError("data: every chunk must be a pair (X, y)")
    return chunks


def _n_samples(X: Any) -> int:
    if isinstance(X, Tensor):
        return int(X.shape[0])
    return len(X)


def _split(X: Any, y: Any, size: int) -> list[tuple[Any, Any]]:
    n = _n_samples(X)
    return [(X[i : i + size], y[i : i + size]) for i in range(0, n, size)]


class _EvalMode:
    """Context manager: model in eval mode (BatchNorm running statistics), restored after."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modes: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> None:
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        for m, mode in self.modes:
            m.training = mode


def _trainable(model: nn.Module, params: Sequence[Tensor] | None) -> list[Tensor]:
    if params is None:
        ps = [p for p in model.parameters() if p.requires_grad]
    else:
        ps = list(params)
        for p in ps:
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise ValueError("params: every entry must be a tensor with requires_grad=True")
    if not ps:
        raise ValueError("the model has no trainable parameters (none with requires_grad=True)")
    if len({p.dtype for p in ps}) != 1 or len({p.device for p in ps}) != 1:
        raise ValueError("params: all parameters must share one dtype and one device")
    return ps


def dense_hessian(
    model: nn.Module,
    loss_fn: Callable[[Any, Any], Tensor],
    data: Any,
    params: Sequence[Tensor] | None = None,
) -> Tensor:
    """The full Hessian ``∇²_θ L`` as a ``(dim, dim)`` matrix, via ``torch.func.hessian``.

    Independent of :class:`HessianOperator` (functional call on a flat parameter
    vector, reverse-over-reverse by ``torch.func``), so it serves as ground truth for
    small models. Chunks are weighted by ``n_c/N`` as in :class:`HessianOperator`;
    the model is in eval mode during the computation.
    """
    from torch.func import functional_call, hessian

    ps = _trainable(model, params)
    chunks = _as_chunks(data)
    ids = {id(p): n for n, p in model.named_parameters()}
    if any(id(p) not in ids for p in ps):
        raise ValueError("dense_hessian: params must belong to the model")
    names = [ids[id(p)] for p in ps]
    theta = flatten([p.detach() for p in ps])
    N = sum(_n_samples(X) for X, _ in chunks)
    H = torch.zeros(theta.numel(), theta.numel(), dtype=theta.dtype, device=theta.device)
    with _EvalMode(model):
        for X, y in chunks:
            w = _n_samples(X) / N

            def loss(t: Tensor, X: Any = X, y: Any = y, w: float = w) -> Tensor:
                return w * loss_fn(functional_call(model, dict(zip(names, unflatten_like(t, ps))), (X,)), y)

            H += hessian(loss)(theta)
    return 0.5 * (H + H.T)
