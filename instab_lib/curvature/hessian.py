"""The Hessian of an empirical risk as a matrix-free operator (:class:`HessianOperator`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .mlp import MLPProducts, mlp_layers, mlp_matmat
from .operators import LinearOperator, _as_chunks, _EvalMode, _n_samples, _split, _trainable, flatten, unflatten_like

_METHODS = ("double_backward", "forward_over_reverse", "mlp", "auto")


class HessianOperator(LinearOperator):
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
            ``"forward_over_reverse"`` (``torch.func.jvp(torch.func.grad(L), θ, v)``),
            ``"mlp"`` (the closed-form R-operator of :mod:`~instab_lib.curvature.mlp`:
            ``nn.Sequential`` MLPs with mean cross-entropy, all ``k`` columns of a ``matmat``
            in one pass) or ``"auto"``: ``"mlp"`` where it applies, else double-backward on
            a CPU; elsewhere both generic methods are timed on the first product and the
            faster is kept (``method_used`` says which).
        graph_budget_bytes: double-backward keeps the gradient graphs of all chunks
            alive between products when their saved tensors (measured on the first
            chunk, times the number of chunks) fit in this budget; otherwise each
            product rebuilds one chunk's graph at a time (memory of one chunk, about
            1.5–2× slower per product; a ``matmat`` then amortises each rebuild over
            all its columns).
        batched: generic methods only (``"mlp"`` always works on the whole block):
            ``True`` computes a ``matmat`` in one pass — one double backward with a batched
            tangent (``torch.autograd.grad(..., is_grads_batched=True)``) or
            ``torch.func.vmap`` over the forward-over-reverse product — instead of a loop
            over the columns. Off by default: on the CPU it was not reliably faster than the
            loop for the fMNIST MLP and 2.4× / 3.3× slower for a small CNN (vmap's batching
            rules expand the inputs and fall back to slow paths for convolutions and pooling;
            ``benchmarks/RESULTS.md``).

    The model is put in eval mode (BatchNorm uses running statistics, Dropout is off)
    while graphs are built and products run, and its modes are restored afterwards.
    If the parameters are changed in place (an optimiser step), the cached graphs
    are detected as stale (through the tensors' version counters) and rebuilt.

    A :class:`~instab_lib.curvature.operators.LinearOperator`: it implements ``_matmat``;
    ``matmat``, ``matvec``, ``@``, sums, scalings, products, ``to_dense`` and ``to_scipy``
    come from the base.

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
        batched: bool = False,
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
        super().__init__(sum(p.numel() for p in self.params), self.params[0].dtype, self.params[0].device)
        self.method = method
        self.graph_budget_bytes = graph_budget_bytes
        self.batched = batched
        self._check_scalar_loss()
        self._mlp_layers = mlp_layers(model, self.params, loss_fn, chunks) if method in ("mlp", "auto") else None
        if method == "mlp" and self._mlp_layers is None:
            raise ValueError(
                "method='mlp' needs an nn.Sequential of [Flatten,] Linear, activation, …, Linear whose "
                "parameters are all trainable, and mean cross-entropy on integer labels ≥ 0"
            )
        if method == "auto":
            self.method_used: str = (
                "mlp" if self._mlp_layers is not None else "double_backward" if self.device.type == "cpu" else ""
            )
        else:
            self.method_used = method
        self._mlp_states: list[MLPProducts] | None = None
        self._mlp_versions: tuple[int, ...] = ()
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
            if self.batched and k > 1:  # one backward pass, the k tangents batched (vmap inside autograd)
                hv = torch.autograd.grad(grads, self.params, grad_outputs=self._batched_tangents(V),
                                         retain_graph=keep, is_grads_batched=True)
                out += self._unbatch(hv, k)
                continue
            for j in range(k):
                last = (not keep) and j == k - 1
                hv = torch.autograd.grad(
                    grads, self.params, grad_outputs=unflatten_like(V[:, j], self.params),
                    retain_graph=not last,
                )
                out[:, j] += flatten(hv).detach()
        return out

    def _batched_tangents(self, V: Tensor) -> list[Tensor]:
        """``V`` (``(dim, k)``) as per-parameter tangents with a leading batch dimension ``k``."""
        sizes = [p.numel() for p in self.params]
        return [rows.T.reshape(V.shape[1], *p.shape) for rows, p in zip(torch.split(V, sizes), self.params)]

    @staticmethod
    def _unbatch(hv: Sequence[Tensor], k: int) -> Tensor:
        """Per-parameter ``(k, *shape)`` results back to a ``(dim, k)`` block."""
        return torch.cat([h.detach().reshape(k, -1) for h in hv], dim=1).T

    # ---- closed-form MLP products ------------------------------------------ #
    def _hvp_mlp(self, V: Tensor) -> Tensor:
        """:func:`~instab_lib.curvature.mlp.mlp_matmat`: all ``k`` columns in one pass."""
        versions = self._current_versions()
        if self._mlp_states is None or self._mlp_versions != versions:
            assert self._mlp_layers is not None
            self._mlp_states = [MLPProducts(self._mlp_layers, X, y, w) for (X, y), w in zip(self.chunks, self.weights)]
            self._mlp_versions = versions
        return mlp_matmat(self._mlp_states, self.params, V)

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
                if self.batched and V.shape[1] > 1:  # torch.func.vmap over the k tangents
                    from torch.func import vmap

                    def hvp(*t: Tensor, g: Any = g) -> tuple[Tensor, ...]:
                        return jvp(g, primals, t)[1]

                    out += self._unbatch(vmap(hvp)(*self._batched_tangents(V)), V.shape[1])
                    continue
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

    # ---- the product ------------------------------------------------------ #
    def _matmat(self, V: Tensor) -> Tensor:
        """``H V`` for ``V`` of shape ``(dim, k)`` by the method in use; ``(dim, k)``, detached.

        (Shape checks, casting, ``k = 0`` and ``n_matvec`` are :meth:`LinearOperator.matmat`'s.)
        """
        with torch.enable_grad():
            if not self.method_used:
                return self._select_method(V)
            if self.method_used == "mlp":
                with torch.no_grad():
                    return self._hvp_mlp(V)
            if self.method_used == "double_backward":
                return self._hvp_db(V)
            return self._hvp_fr(V)

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
        """Drop the cached gradient graphs and MLP states (rebuilt on the next product)."""
        self._graphs = None
        self._mlp_states = None
