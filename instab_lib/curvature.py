"""Curvature of an empirical risk: Hessian-vector products and eigen-solvers.

Everything here is matrix-free: the Hessian

.. math::  H = \\nabla^2_\\theta L(\\theta),\\qquad
           L(\\theta) = \\sum_c \\frac{n_c}{N}\\,\\ell\\big(f_\\theta(X_c), y_c\\big)

(``ℓ`` = ``loss_fn``, a mean over the ``n_c`` samples of chunk ``c``; ``N = Σ n_c``)
is only touched through products ``v ↦ H v``. Flat vectors have shape ``(dim,)``
with ``dim`` the number of trainable scalars, blocks of vectors ``(dim, k)``.

Contents
--------
* :func:`flatten`, :func:`unflatten_like` — parameter lists ↔ flat vectors.
* :class:`HessianOperator` — ``H v`` by double-backward (graph built once and
  reused) or forward-over-reverse (``torch.func``); :class:`MatrixOperator` wraps
  a dense symmetric matrix with the same interface.
* :func:`dense_hessian` — ground truth for small models (``torch.func.hessian``).
* :func:`lanczos` — thick-restart (block) Lanczos with full re-orthogonalisation,
  stopping on the *explicit* residual ``‖H x − θ x‖₂ ≤ tol · max|θ|``.
* :func:`extreme_eigenpairs` — both ends of the spectrum from one Krylov space.
* :func:`lobpcg` and :class:`EigTracker` — warm-started tracking across steps.
* :func:`power_iteration` — the classical sharpness estimate (residual stop).
* :func:`hutchinson_trace`, :func:`slq_density`, :func:`density_on_grid` —
  stochastic trace and spectral-density estimates.

Residuals are exact, not estimated: the solvers keep ``W = H V`` next to the
basis ``V``, so for a Ritz vector ``x = V y`` the product ``H x = W y`` is known
without another Hessian-vector product.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

__all__ = [
    "flatten",
    "unflatten_like",
    "LinearOperatorLike",
    "HessianOperator",
    "MatrixOperator",
    "dense_hessian",
    "EigResult",
    "lanczos",
    "lobpcg",
    "extreme_eigenpairs",
    "EigTracker",
    "power_iteration",
    "hutchinson_trace",
    "slq_density",
    "density_on_grid",
    "fix_signs",
]

_WHICH = ("LA", "SA", "LM")
_METHODS = ("double_backward", "forward_over_reverse", "auto")


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


class HessianOperator:
    """Symmetric linear operator ``v ↦ H v`` with ``H = ∇²_θ L(θ)`` of the full-batch loss.

    ``L(θ) = Σ_c (n_c/N) loss_fn(model(X_c), y_c)``: ``loss_fn`` must return the
    *mean* over the chunk (PyTorch's default ``reduction="mean"``), so the weights
    ``n_c/N`` make the chunked loss equal to the loss on all ``N`` samples, also for
    unequal chunk sizes.

    Args:
        model: the network; its trainable parameters ``θ`` (``dim`` scalars).
        loss_fn: ``(prediction, y) -> scalar`` (mean over the chunk).
        data: a tuple ``(X, y)`` or a sequence of ``(X, y)`` chunks.
        params: explicit parameter list (default: parameters with ``requires_grad``).
        chunk_size: split every chunk further into pieces of at most this many samples
            (convolutions on a CPU are faster on pieces of a few hundred images).
        method: ``"double_backward"`` (``H v = ∂/∂θ (g·v)`` with ``g = ∇L`` built once
            with ``create_graph=True`` and reused with ``retain_graph=True``),
            ``"forward_over_reverse"`` (``torch.func.jvp(torch.func.grad(L), θ, v)``) or
            ``"auto"``: double-backward on a CPU; elsewhere both are timed on the first
            product and the faster is kept (``method_used`` says which).
        graph_budget_bytes: double-backward keeps the gradient graphs of all chunks
            alive between products when their saved tensors (measured on the first
            chunk, times the number of chunks) fit in this budget; otherwise each
            product rebuilds one chunk's graph at a time (memory of one chunk, about
            1.5–2× slower per product; a ``matmat`` then amortises each rebuild over
            all its columns).

    The model is put in eval mode (BatchNorm uses running statistics, Dropout is off)
    while graphs are built and products run, and its modes are restored afterwards.
    If the parameters are changed in place (an optimiser step), the cached graphs
    are detected as stale (through the tensors' version counters) and rebuilt.

    Attributes:
        dim: number of parameters; dtype, device: those of the parameters;
        n_matvec: number of Hessian-vector products so far (a ``matmat`` with ``k``
        columns counts ``k``); method_used: the backend in use.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Any, Any], Tensor],
        data: Any,
        params: Sequence[Tensor] | None = None,
        chunk_size: int | None = None,
        method: str = "auto",
        graph_budget_bytes: int = 2 * 1024**3,
    ) -> None:
        if method not in _METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {_METHODS}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
        self.model = model
        self.loss_fn = loss_fn
        self.params: list[Tensor] = _trainable(model, params)
        chunks = _as_chunks(data)
        if chunk_size is not None:
            chunks = [piece for X, y in chunks for piece in _split(X, y, chunk_size)]
        self.chunks = chunks
        sizes = [_n_samples(X) for X, _ in chunks]
        if min(sizes) < 1:
            raise ValueError("data: empty chunk")
        self.n_samples: int = sum(sizes)
        self.weights: list[float] = [s / self.n_samples for s in sizes]
        self.dim: int = sum(p.numel() for p in self.params)
        self.dtype: torch.dtype = self.params[0].dtype
        self.device: torch.device = self.params[0].device
        self.n_matvec: int = 0
        self.method = method
        self.graph_budget_bytes = graph_budget_bytes
        self._check_scalar_loss()
        if method == "auto":
            self.method_used: str = "double_backward" if self.device.type == "cpu" else ""
        else:
            self.method_used = method
        self._graphs: list[tuple[Tensor, tuple[Tensor, ...]]] | None = None
        self._keep_graphs: bool | None = None
        self._versions: tuple[int, ...] = ()
        self._names: list[str] | None = None

    # ---- checks ---------------------------------------------------------- #
    def _check_scalar_loss(self) -> None:
        """Evaluate the loss on two samples (cheap) and insist on a scalar."""
        X, y = self.chunks[0]
        with torch.no_grad(), _EvalMode(self.model):
            out = self.loss_fn(self.model(X[:2]), y[:2])
        if not isinstance(out, Tensor) or out.numel() != 1 or out.dim() > 1:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"loss_fn must return a scalar (mean over the chunk), got {shape}; "
                "use reduction='mean'"
            )

    def _current_versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.params)

    # ---- double backward -------------------------------------------------- #
    def _chunk_graph(self, c: int) -> tuple[Tensor, tuple[Tensor, ...]]:
        X, y = self.chunks[c]
        with torch.enable_grad():
            loss = self.weights[c] * self.loss_fn(self.model(X), y)
            grads = torch.autograd.grad(loss, self.params, create_graph=True)
        return loss, grads

    def _ensure_graphs(self) -> None:
        if self._graphs is not None and self._versions == self._current_versions():
            return
        self._graphs = None
        self._versions = self._current_versions()
        if self._keep_graphs is None:
            if len(self.chunks) == 1:
                self._keep_graphs = True
            else:
                nbytes = [0]

                def pack(t: Tensor) -> Tensor:
                    nbytes[0] += t.numel() * t.element_size()
                    return t

                with _EvalMode(self.model), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    first = self._chunk_graph(0)
                self._keep_graphs = nbytes[0] * len(self.chunks) <= self.graph_budget_bytes
                if self._keep_graphs:
                    with _EvalMode(self.model):
                        self._graphs = [first] + [self._chunk_graph(c) for c in range(1, len(self.chunks))]
                return
        if self._keep_graphs:
            with _EvalMode(self.model):
                self._graphs = [self._chunk_graph(c) for c in range(len(self.chunks))]

    def _hvp_db(self, V: Tensor) -> Tensor:
        """Double-backward product for a block ``V`` of shape ``(dim, k)``."""
        k = V.shape[1]
        out = torch.zeros_like(V)
        self._ensure_graphs()
        graphs: Iterable[tuple[Tensor, tuple[Tensor, ...]]]
        if self._graphs is not None:
            graphs = self._graphs
        else:
            def rebuild() -> Iterable[tuple[Tensor, tuple[Tensor, ...]]]:
                for c in range(len(self.chunks)):
                    with _EvalMode(self.model):
                        yield self._chunk_graph(c)
            graphs = rebuild()
        keep = self._graphs is not None
        for _, grads in graphs:
            for j in range(k):
                last = (not keep) and j == k - 1
                hv = torch.autograd.grad(
                    grads, self.params, grad_outputs=unflatten_like(V[:, j], self.params),
                    retain_graph=not last,
                )
                out[:, j] += flatten(hv).detach()
        return out

    # ---- forward over reverse -------------------------------------------- #
    def _hvp_fr(self, V: Tensor) -> Tensor:
        """Forward-over-reverse product ``jvp(grad(L))`` for a block ``(dim, k)``."""
        from torch.func import functional_call, grad, jvp

        if self._names is None:
            ids = {id(p): n for n, p in self.model.named_parameters()}
            if any(id(p) not in ids for p in self.params):
                raise ValueError("forward_over_reverse needs params that belong to the model")
            self._names = [ids[id(p)] for p in self.params]
        names = self._names
        primals = tuple(p.detach() for p in self.params)
        out = torch.zeros_like(V)
        with _EvalMode(self.model):
            for c, (X, y) in enumerate(self.chunks):
                w = self.weights[c]

                def loss(*ps: Tensor, X: Any = X, y: Any = y, w: float = w) -> Tensor:
                    return w * self.loss_fn(functional_call(self.model, dict(zip(names, ps)), (X,)), y)

                g = grad(loss, argnums=tuple(range(len(primals))))
                for j in range(V.shape[1]):
                    tangents = tuple(unflatten_like(V[:, j], self.params))
                    _, hv = jvp(g, primals, tangents)
                    out[:, j] += flatten(hv).detach()
        return out

    def _select_method(self, V: Tensor) -> Tensor:
        """``auto`` off the CPU: time both backends on this first product, keep the faster."""
        timings = {}
        results = {}
        for name, fn in (("double_backward", self._hvp_db), ("forward_over_reverse", self._hvp_fr)):
            try:
                fn(V)  # warm-up (builds graphs, compiles kernels)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                t0 = time.perf_counter()
                results[name] = fn(V)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                timings[name] = time.perf_counter() - t0
            except RuntimeError:  # e.g. forward-mode AD not implemented for an operator
                continue
        if not timings:
            raise RuntimeError("no Hessian-vector product backend works for this model")
        self.method_used = min(timings, key=timings.__getitem__)
        self.method_timings = timings
        if self.method_used != "double_backward":
            self._graphs = None
        return results[self.method_used]

    # ---- public ---------------------------------------------------------- #
    def _check_block(self, V: Tensor) -> None:
        if V.dim() != 2 or V.shape[0] != self.dim:
            raise ValueError(f"expected a block of shape ({self.dim}, k), got {tuple(V.shape)}")

    def matmat(self, V: Tensor) -> Tensor:
        """``H V`` for ``V`` of shape ``(dim, k)``; returns ``(dim, k)``, detached."""
        with torch.enable_grad():
            return self._matmat_impl(V)

    def _matmat_impl(self, V: Tensor) -> Tensor:
        self._check_block(V)
        V = V.to(dtype=self.dtype, device=self.device)
        if V.shape[1] == 0:
            return V.clone()
        self.n_matvec += V.shape[1]
        if not self.method_used:
            return self._select_method(V)
        if self.method_used == "double_backward":
            return self._hvp_db(V)
        return self._hvp_fr(V)

    def matvec(self, v: Tensor) -> Tensor:
        """``H v`` for ``v`` of shape ``(dim,)``; returns ``(dim,)``, detached."""
        if v.dim() != 1 or v.shape[0] != self.dim:
            raise ValueError(f"expected a vector of shape ({self.dim},), got {tuple(v.shape)}")
        return self.matmat(v[:, None])[:, 0]

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v) if v.dim() == 1 else self.matmat(v)

    def loss_and_gradient(self) -> tuple[float, Tensor]:
        """Full-batch loss ``L(θ)`` and gradient ``∇L(θ)`` (shape ``(dim,)``), in eval mode."""
        loss_total = 0.0
        g = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        if self.method_used == "double_backward" or not self.method_used:
            self._ensure_graphs()
        if self._graphs is not None:
            for loss, grads in self._graphs:
                loss_total += float(loss.detach())
                g += flatten(grads).detach()
            return loss_total, g
        with _EvalMode(self.model), torch.enable_grad():
            for c, (X, y) in enumerate(self.chunks):
                loss = self.weights[c] * self.loss_fn(self.model(X), y)
                grads = torch.autograd.grad(loss, self.params)
                loss_total += float(loss.detach())
                g += flatten(grads)
        return loss_total, g

    def release(self) -> None:
        """Drop the cached gradient graphs (they are rebuilt on the next product)."""
        self._graphs = None


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


# --------------------------------------------------------------------------- #
# eigen-solvers
# --------------------------------------------------------------------------- #
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


def _check_op(op: Any) -> None:
    for attr in ("matvec", "dim", "dtype", "device"):
        if not hasattr(op, attr):
            raise ValueError(f"operator lacks .{attr}; wrap a matrix in MatrixOperator(A)")


def _check_common(op: Any, k: int, which: str, tol: float, strict: bool) -> None:
    _check_op(op)
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


def _order(theta: Tensor, which: str) -> Tensor:
    """Indices of ``theta`` sorted by preference for ``which``."""
    if which == "LA":
        return torch.argsort(theta, descending=True)
    if which == "SA":
        return torch.argsort(theta)
    return torch.argsort(theta.abs(), descending=True)


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
            n0 = q.norm()
            for _ in range(2):
                if basis is not None and basis.shape[1] > 0:
                    q = q - basis @ (basis.T @ q)
            n1 = q.norm()
            if n1 > 1e-10 * n0 and n1 > 0:
                break
            q = torch.randn(dim, generator=gen, dtype=Q.dtype, device="cpu").to(Q.device)
        else:
            break  # the space is exhausted
        q = q / q.norm()
        out.append(q)
        basis = q[:, None] if basis is None else torch.cat([basis, q[:, None]], dim=1)
    if not out:
        return Q[:, :0]
    return torch.stack(out, dim=1)


def _generator(seed: int) -> torch.Generator:
    from .seeding import torch_generator

    return torch_generator(int(seed))


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


#: A cold Krylov solve never declares convergence before its basis holds k + this many vectors.
MIN_EXTRA_BASIS = 10


def _thick_restart_lanczos(
    op: Any,
    groups: list[tuple[str, int]],
    tol: float,
    max_matvec: int,
    ncv: int,
    start: Tensor,
    gen: torch.Generator,
    expand: str = "krylov",
    scale0: float = 0.0,
) -> tuple[list[tuple[Tensor, Tensor, Tensor]], int, bool, int, float]:
    """Thick-restart block Lanczos with full re-orthogonalisation (the engine).

    Keeps ``V`` (``(dim, m)``, orthonormal, ``m ≤ ncv``) and ``W = H V`` and the
    projected matrix ``T = Vᵀ H V`` (``(m, m)``). Each step appends the block
    ``Q = orth(F)``, ``F`` = newest products minus their projection on ``V``
    (classical Gram–Schmidt twice), and costs ``Q.shape[1]`` products. Ritz pairs
    ``(θ_i, x_i = V y_i)`` of ``T`` have exact residuals ``‖W y_i − θ_i V y_i‖``.
    When ``V`` is full, it is restarted on the most wanted Ritz vectors
    (``V ← V Y_p``, ``W ← W Y_p``, ``T ← diag θ_p``), which keeps the Krylov
    relation ``H V = V T + F Eᵀ`` (Wu & Simon's thick restart; Stewart's
    Krylov–Schur in the symmetric case).

    ``groups``: ``[(which, k), ...]``; the first ``k`` Ritz pairs of each group in
    the order of ``which`` must reach ``‖r‖ ≤ tol · scale`` (scale = largest
    ``|θ|`` seen), and a Krylov basis must hold at least ``k + MIN_EXTRA_BASIS``
    vectors first (a small residual in a tiny subspace can belong to an unwanted pair). Returns per group ``(θ, X, ‖R‖)``, matvecs, converged,
    iterations, scale.

    ``expand="residual"`` (for warm starts from a non-Krylov block, e.g. previous
    eigenvectors): each step appends one vector, the residual ``W y − θ V y`` of the
    unconverged wanted Ritz pair with the largest residual (Davidson's expansion
    with an identity preconditioner; for a Krylov basis every Ritz residual is
    parallel to the Lanczos vector, so this generalises Lanczos).
    """
    dim = op.dim
    dtype, device = op.dtype, op.device
    bs = start.shape[1]
    k_all = sum(k for _, k in groups)
    V = _orthonormalize(start.to(dtype=dtype, device=device), None, gen)
    W = _matmat(op, V)
    n_mv = V.shape[1]
    T = V.T @ W
    T = 0.5 * (T + T.T)
    it = 0
    scale = scale0
    best: list[tuple[Tensor, Tensor, Tensor]] = []
    converged = False
    eps = torch.finfo(dtype).eps
    orders: list[Tensor] = []
    residual_mode = expand == "residual"
    min_basis = min(dim, k_all + MIN_EXTRA_BASIS)
    closed = False
    while True:
        it += 1
        theta, Y = torch.linalg.eigh(T)
        scale = max(scale, float(theta.abs().max()))
        thresh = tol * scale
        orders = [_order(theta, w) for w, _ in groups]
        # residual block of the Krylov relation H V = V T + F E_lastᵀ
        if residual_mode:
            est_ok = True
        else:
            F = W[:, -bs:] - V @ (V.T @ W[:, -bs:])
            Ylast = Y[-bs:, :]
            # a tiny Krylov space can hold an accurate Ritz pair that is not the wanted one
            # (a start vector almost orthogonal to a small top eigenspace): never stop there
            est_ok = V.shape[1] >= min_basis and all(
                order[:k].numel() == k and bool(((F @ Ylast[:, order[:k]]).norm(dim=0) <= thresh).all())
                for (w, k), order in zip(groups, orders)
            )
        exhausted = V.shape[1] >= dim or closed
        if est_ok or exhausted or n_mv >= max_matvec:
            # exact residuals from the stored products
            best = []
            ok = True
            for (w, k), order in zip(groups, orders):
                idx = order[:k]
                Yg = Y[:, idx]
                X = V @ Yg
                rn = (W @ Yg - X * theta[idx]).norm(dim=0)
                best.append((theta[idx], X, rn))
                if idx.numel() < k or bool((rn > thresh).any()):
                    ok = False
            if ok:
                converged = True
                break
            if exhausted:  # whole space spanned: Ritz pairs exact up to rounding
                floor = 1e3 * eps * scale * math.sqrt(dim)
                converged = all(bool((b[2] <= max(thresh, floor)).all()) for b in best)
                break
            if n_mv >= max_matvec:
                break
            if residual_mode:
                worst_g, worst_i, worst_r = 0, 0, -1.0
                for gi, b in enumerate(best):
                    j = int(b[2].argmax())
                    if float(b[2][j]) > worst_r:
                        worst_g, worst_i, worst_r = gi, j, float(b[2][j])
                th_w, X_w, _ = best[worst_g]
                idx_w = orders[worst_g][worst_i]
                F = (W @ Y[:, idx_w] - X_w[:, worst_i] * th_w[worst_i])[:, None]
                bs = 1
        if V.shape[1] + bs > ncv:
            # keep the k wanted of each group plus half the free room, split over groups
            extra = max((ncv - bs - k_all) // (2 * len(groups)), 1)
            keep: list[int] = []
            for (w, k), order in zip(groups, orders):
                for i in order[: k + extra].tolist():
                    if i not in keep:
                        keep.append(i)
            keep_t = torch.tensor(keep, dtype=torch.long, device=theta.device)
            Yp = Y[:, keep_t]
            V = V @ Yp
            W = W @ Yp
            T = torch.diag(theta[keep_t])
        Q = _orthonormalize(F, V, gen)[:, : dim - V.shape[1]]
        if Q.shape[1] == 0:
            closed = True
            continue
        WQ = _matmat(op, Q)
        n_mv += Q.shape[1]
        C = V.T @ WQ
        D = Q.T @ WQ
        m0, q = V.shape[1], Q.shape[1]
        Tn = torch.empty(m0 + q, m0 + q, dtype=dtype, device=device)
        Tn[:m0, :m0] = T
        Tn[:m0, m0:] = C
        Tn[m0:, :m0] = C.T
        Tn[m0:, m0:] = 0.5 * (D + D.T)
        T = Tn
        V = torch.cat([V, Q], dim=1)
        W = torch.cat([W, WQ], dim=1)
    return best, n_mv, converged, it, scale


def _start_block(op: Any, b: int, seed: int, v0: Tensor | None, V0: Tensor | None) -> tuple[Tensor, torch.Generator]:
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
    op: Any,
    k: int,
    which: str = "LA",
    tol: float = 1e-6,
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
        op: anything with ``.matvec`` (``(dim,) -> (dim,)``), ``.dim``, ``.dtype``,
            ``.device`` (``.matmat`` is used for blocks when present).
        k: number of eigenpairs, ``1 ≤ k < dim``.
        which: ``"LA"`` largest algebraic, ``"SA"`` smallest algebraic, ``"LM"``
            largest magnitude (the author's selection, both ends by ``|λ|``).
        tol: relative residual tolerance (≥ 0; 0 runs to ``max_iter``).
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
        :class:`EigResult` with eigenvalues ordered by ``which``.
    """
    _check_common(op, k, which, tol, strict=True)
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
        best, n_mv, conv, it, scale = _thick_restart_lanczos(
            op, [(which, k)], tol, max_mv, ncv_, start, gen, expand=expand
        )
    theta, X, rn = best[0]
    return _finish(X, theta, rn, which, n_mv, conv, it, tol, scale)


def extreme_eigenpairs(
    op: Any,
    k_top: int,
    k_bottom: int,
    tol: float = 1e-6,
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
    _check_op(op)
    for name, kk in (("k_top", k_top), ("k_bottom", k_bottom)):
        if not isinstance(kk, int) or kk < 1:
            raise ValueError(f"{name} must be a positive integer, got {kk!r}")
    _check_common(op, k_top + k_bottom, "LA", tol, strict=True)
    max_mv = max_iter if max_iter is not None else max(50 * (k_top + k_bottom), 400)
    ncv_ = min(op.dim, ncv if ncv is not None else _default_ncv(k_top + k_bottom, op.dim, 1))
    start, gen = _start_block(op, 1, seed, v0, None)
    with torch.no_grad():
        best, n_mv, conv, it, scale = _thick_restart_lanczos(
            op, [("LA", k_top), ("SA", k_bottom)], tol, max_mv, ncv_, start, gen
        )
    top = _finish(best[0][1], best[0][0], best[0][2], "LA", n_mv, conv, it, tol, scale)
    bot = _finish(best[1][1], best[1][0], best[1][2], "SA", n_mv, conv, it, tol, scale)
    return top, bot


def lobpcg(
    op: Any,
    X0: Tensor,
    which: str = "LA",
    tol: float = 1e-6,
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
    _check_op(op)
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
        AX = _matmat(op, X)
        n_mv = X.shape[1]
        G = X.T @ AX
        th, Y = torch.linalg.eigh(0.5 * (G + G.T))
        o = _order(th, which)[:k]
        X, AX, th = X @ Y[:, o], AX @ Y[:, o], th[o]
        sc = max(scale or 0.0, float(th.abs().max()))
        P = AP = None
        it = 0
        while True:
            R = AX - X * th
            rn = R.norm(dim=0)
            sc = max(sc, float(th.abs().max()))
            active = rn > tol * sc
            if not bool(active[:nw].any()) or it >= max_iter:
                break
            it += 1
            base = X if P is None else torch.cat([X, P], dim=1)
            Ra = _orthonormalize(R[:, active], base, gen)
            if Ra.shape[1] == 0:
                break
            ARa = _matmat(op, Ra)
            n_mv += Ra.shape[1]
            S = torch.cat([base, Ra], dim=1)
            AS = torch.cat([AX if P is None else torch.cat([AX, AP], dim=1), ARa], dim=1)
            G = S.T @ AS
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
        rn = R.norm(dim=0)
        conv = bool((rn[:nw] <= tol * sc).all())
    return _finish(X, th, rn, which, n_mv, conv, it, tol, sc)


class EigTracker:
    """Warm-started tracking of ``k`` eigenpairs across training steps.

    The first :meth:`update` is a cold :func:`lanczos`. Each later one starts from
    the previous eigenvectors ``X_prev`` (``(dim, k + guard)``), paying ``k + guard``
    products for ``H X_prev``, and then, with ``warm="residual"`` (default), runs
    Rayleigh–Ritz on the growing basis, appending one vector per product: the
    residual ``H x − θ x`` of the worst unconverged wanted Ritz pair
    (``lanczos(..., V0=X_prev, expand="residual")``); with ``warm="lobpcg"`` it runs
    :func:`lobpcg` (block, soft locking) instead. ``guard`` extra vectors absorb
    eigenvalues entering from the bulk. If the warm solve does not converge within
    its budget (``k + guard + 2·max_warm_iter`` products), or every
    ``refresh_every`` updates when set, a cold Lanczos solve is run (the failed warm
    products are added to ``n_matvec``). Only the ``k`` wanted pairs must converge.
    The saving over cold solves depends on how far ``H`` moves per step relative
    to ``tol``: the floor is ``k`` products per update.

    Attributes: ``history`` — one dict per update (``n_matvec``, ``warm``, ``converged``).
    """

    def __init__(
        self,
        k: int,
        which: str = "LA",
        tol: float = 1e-6,
        seed: int = 0,
        guard: int = 0,
        max_warm_iter: int = 30,
        warm: str = "residual",
        refresh_every: int | None = None,
        lanczos_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if which not in _WHICH:
            raise ValueError(f"unknown which={which!r}; expected one of {_WHICH}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if not (tol >= 0):
            raise ValueError(f"tol must be non-negative, got {tol}")
        if guard < 0:
            raise ValueError(f"guard must be ≥ 0, got {guard}")
        if warm not in ("residual", "lobpcg"):
            raise ValueError(f"unknown warm={warm!r}; expected 'residual' or 'lobpcg'")
        self.warm = warm
        self.k, self.which, self.tol, self.seed = k, which, tol, seed
        self.guard, self.max_warm_iter, self.refresh_every = guard, max_warm_iter, refresh_every
        self.lanczos_kwargs = dict(lanczos_kwargs or {})
        self.prev: EigResult | None = None
        self._X: Tensor | None = None
        self.history: list[dict[str, Any]] = []

    def reset(self) -> None:
        """Forget the previous eigenvectors (next update is cold)."""
        self.prev, self._X = None, None

    def update(self, op: Any) -> EigResult:
        """Eigenpairs of ``op`` (``which``, ``k``), warm-started from the last call."""
        _check_common(op, self.k, self.which, self.tol, strict=True)
        n = len(self.history)
        kk = min(self.k + self.guard, op.dim - 1)
        refresh = self.refresh_every is not None and n % self.refresh_every == 0
        spent = 0
        if self._X is not None and self._X.shape[0] == op.dim and not refresh and 3 * kk <= op.dim:
            sc = self.prev.scale if self.prev is not None else None
            if self.warm == "lobpcg":
                w = lobpcg(op, self._X, which=self.which, tol=self.tol, max_iter=self.max_warm_iter,
                           scale=sc, n_wanted=self.k)
            else:
                w = self._warm_residual(op, kk, sc)
            if w.converged:
                self._X = w.eigenvectors
                return self._record(w, warm=True)
            spent = w.n_matvec
        r = lanczos(op, kk, which=self.which, tol=self.tol, seed=self.seed + n, **self.lanczos_kwargs)
        self._X = r.eigenvectors
        return self._record(r, warm=False, spent=spent)

    def _warm_residual(self, op: Any, kk: int, scale: float | None) -> EigResult:
        """Rayleigh–Ritz on the previous vectors, expanded by worst Ritz residuals."""
        assert self._X is not None
        ncv = min(op.dim, _default_ncv(kk, op.dim, 1))
        budget = kk + self.max_warm_iter * 2
        with torch.no_grad():
            best, n_mv, conv, it, sc = _thick_restart_lanczos(
                op, [(self.which, self.k)], self.tol, budget, max(ncv, kk + 2), self._X,
                _generator(self.seed), expand="residual", scale0=scale or 0.0,
            )
        theta, X, rn = best[0]
        return _finish(X, theta, rn, self.which, n_mv, conv, it, self.tol, sc)

    def _record(self, r: EigResult, warm: bool, spent: int = 0) -> EigResult:
        k = self.k
        res = EigResult(
            eigenvalues=r.eigenvalues[:k], eigenvectors=r.eigenvectors[:, :k],
            residuals=r.residuals[:k], n_matvec=r.n_matvec + spent,
            converged=bool((r.residuals[:k] <= self.tol * r.scale).all()),
            which=self.which, iterations=r.iterations, tol=self.tol, scale=r.scale,
            extra={"warm": warm, "failed_warm_matvecs": spent},
        )
        self.prev = res
        self.history.append({"n_matvec": res.n_matvec, "warm": warm, "converged": res.converged})
        return res


def power_iteration(
    op: Any, tol: float = 1e-6, max_iter: int = 1000, seed: int = 0, v0: Tensor | None = None
) -> EigResult:
    """The dominant (largest-|λ|) eigenpair by power iteration ``v ← Hv/‖Hv‖``.

    Stops when ``‖H v − θ v‖₂ ≤ tol · |θ|`` with ``θ = vᵀHv`` (a residual, not the
    change of ``θ`` that PyHessian uses). Converges at rate ``|λ₂/λ₁|`` per product.
    Returns a :class:`EigResult` with ``k = 1`` and ``which = "LM"``.
    """
    _check_common(op, 1, "LM", tol, strict=False)
    if max_iter < 1:
        raise ValueError(f"max_iter must be positive, got {max_iter}")
    gen = _generator(seed)
    with torch.no_grad():
        v = (v0.to(dtype=op.dtype, device=op.device) if v0 is not None
             else torch.randn(op.dim, generator=gen, dtype=op.dtype).to(op.device))
        v = v / v.norm()
        Hv = op.matvec(v)
        n = 1
        it = 0
        while True:
            theta = float(v @ Hv)
            r = float((Hv - theta * v).norm())
            if r <= tol * abs(theta) or n >= max_iter:
                break
            nrm = Hv.norm()
            if nrm == 0:
                break
            v = Hv / nrm
            Hv = op.matvec(v)
            n += 1
            it += 1
    conv = r <= tol * abs(theta)
    return _finish(v[:, None], torch.tensor([theta], dtype=op.dtype), torch.tensor([r], dtype=op.dtype),
                   "LM", n, conv, it, tol, abs(theta))


def _rademacher(dim: int, n: int, gen: torch.Generator, dtype: torch.dtype, device: torch.device) -> Tensor:
    return (torch.randint(0, 2, (dim, n), generator=gen) * 2 - 1).to(dtype=dtype, device=device)


def hutchinson_trace(
    op: Any, n_samples: int, seed: int = 0, power: int = 1, batch: int = 8
) -> tuple[float, float]:
    """Hutchinson estimate of ``tr(H^power)`` and its standard error.

    With Rademacher probes ``z`` (``E[z zᵀ] = I``), ``zᵀ H^p z`` is unbiased for
    ``tr(H^p)``; it is computed as ``(H^a z)ᵀ (H^b z)`` with ``a = ⌈p/2⌉``,
    ``b = ⌊p/2⌋`` (``a`` products per probe). Returns ``(mean, std/√n)`` over the
    ``n_samples ≥ 2`` probes (sample standard deviation, ``ddof = 1``).
    """
    _check_op(op)
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
                cur = _matmat(op, cur)
                if i == b:
                    Zb = cur
            vals.append((cur * Zb).sum(dim=0))
            done += m
    x = torch.cat(vals).double()
    return float(x.mean()), float(x.std(unbiased=True) / math.sqrt(n_samples))


def slq_density(
    op: Any, n_probes: int, order: int, seed: int = 0
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
    _check_op(op)
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
            v = z / z.norm()
            m = order
            for j in range(order):
                V[:, j] = v
                w = op.matvec(v)
                alpha[j] = v @ w
                Vj = V[:, : j + 1]
                w = w - Vj @ (Vj.T @ w)
                w = w - Vj @ (Vj.T @ w)
                if j + 1 < order:
                    beta[j] = w.norm()
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
