"""The Hessian of an empirical risk as a matrix-free operator (:class:`HessianOperator`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .data import Batch, BatchFn, BatchSource, head, tree_map
from .loss import BN_MODES, ModelMode, float_leaves, resolve_params, resolve_reduction, weighted_loss
from .mlp import MLPProducts, mlp_batch_ok, mlp_layers, mlp_matmat
from .operators import LinearOperator, flatten, unflatten_like

_METHODS = ("double_backward", "forward_over_reverse", "mlp", "auto")
#: samples of the first batch on which the loss's reduction is measured (repeated twice)
_PROBE_SAMPLES = 8
_Graph = tuple[Tensor, tuple[Tensor, ...], list[Tensor]]  # (weighted loss, its gradient, the leaves θ)
_NO_MLP = ("method='mlp' needs exactly an nn.Sequential (not a subclass) of [Flatten,] Linear, activation, …, "
           "Linear without hooks, all of whose parameters are trainable, cross-entropy and integer labels ≥ 0")


class HessianOperator(LinearOperator):
    """Symmetric linear operator ``v ↦ H v`` with ``H = ∇²_θ L(θ)`` of the loss on all the data.

    ``L(θ) = Σ_c w_c · loss_fn(f(θ; inputs_c), targets_c)`` over the chunks ``c`` of the data:
    ``w_c = n_c/N`` for a mean-reduced ``loss_fn`` (``N = Σ n_c``), ``w_c = 1`` for a sum, so that
    ``L`` is ``loss_fn`` on all ``N`` samples at once however they are batched (equal or unequal
    batches, ``chunk_size``). Flat vectors have shape ``(dim,)``, blocks ``(dim, k)``.

    Args:
        model: an ``nn.Module`` (called as ``model(inputs)`` through ``torch.func.functional_call``)
            or a *functional model*: a callable ``model(params, inputs)`` taking the dict
            ``params`` (then required).
        loss_fn: ``(outputs, targets) -> scalar``, a mean or a sum over the batch's samples.
        data: a pair ``(X, y)``, a list or tuple of batches, or any re-iterable of batches (a
            ``DataLoader``). Lists, tuples and the pair are *materialised*: read once, moved to
            the parameters' device (floating-point tensors also to their dtype) and kept. Any
            other iterable is *streamed*: read once at construction (to count ``N`` and checksum
            every batch) and once per product, one batch on the device at a time; a pass whose
            batches differ from the first (``shuffle=True``, random augmentation, ``drop_last``
            with shuffling) raises a one-line ``ValueError``. ``materialize=True`` reads any
            iterable once and keeps it (also a one-shot iterator, which is refused otherwise).
        params: ``None`` (the model's parameters with ``requires_grad``; tied ones once), a
            sequence of the model's parameters (any order, frozen ones allowed), or a dict
            ``{name: tensor}`` (for an ``nn.Module``: replaces those named parameters; for a
            functional model: the dict it is called with).
        chunk_size: split every batch into pieces of at most this many samples (convolutions on
            a CPU are faster on pieces of a few hundred images).
        method: ``"double_backward"`` (``H v = ∂/∂θ (g·v)``, ``g = ∇L`` built with
            ``create_graph=True``), ``"forward_over_reverse"`` (``torch.func.jvp`` of
            ``torch.func.grad``; floating-point targets enter as primals with zero tangents, which
            avoids PyTorch's pytorch#123996 crash of ``mse_loss`` under forward-mode AD),
            ``"mlp"`` (the closed form of :mod:`~instab_lib.curvature.mlp`, only for exactly an
            ``nn.Sequential`` of ``Linear`` and known activations with cross-entropy, all ``k``
            columns of a ``matmat`` in one pass; refused with a one-line ``ValueError``
            elsewhere) or ``"auto"``: ``"mlp"`` where it provably applies, else double-backward
            on a CPU; elsewhere both generic methods are timed on the first product and the
            faster is kept (``method_used`` says which).
        graph_budget_bytes: materialised data only. Double-backward keeps the gradient graphs of
            all chunks between products when their saved tensors (measured on the first chunk,
            times the number of chunks) fit in this budget, else rebuilds one chunk's graph at a
            time per product (about 1.5–2× slower; a ``matmat`` amortises each rebuild over its
            columns). The closed-form MLP states are kept under the same budget.
        batched: generic methods only: ``True`` computes a ``matmat`` in one pass (a batched
            double backward, ``is_grads_batched=True``, or ``torch.func.vmap`` over
            forward-over-reverse) instead of a loop over the columns. Off by default: on the
            CPU it was not reliably faster for the fMNIST MLP and 2.4×/3.3× slower for a small
            CNN (``benchmarks/RESULTS.md``).
        batch_fn: ``batch -> (inputs, targets, n)`` for batches that are not pairs (dicts, nested
            tuples): ``inputs`` go to the model as one argument, ``n`` is the number of samples
            the loss averages over (the batch's weight is ``n/N``). Default: a pair
            ``(inputs, targets)``, ``n`` the first dimension of the inputs (or of the targets
            when the inputs are not a tensor, e.g. a dict).
        loss_reduction: ``"mean"``, ``"sum"`` or ``None`` (found: ``loss_fn.reduction`` where the
            loss has one, ``"mean"`` for PyTorch's functional losses such as ``F.cross_entropy``,
            else measured on the first samples of the first batch: a mean keeps its value on
            them repeated twice, a sum doubles). A declaration that contradicts what is found
            raises a one-line ``ValueError``; where nothing can be measured (a zero loss, inputs
            whose dim 0 is not the samples) the declaration is needed and decides. ``loss_fn``
            must be a mean or a sum of per-sample terms (a mean over tokens counts too, with
            ``n`` counting them or equal lengths): a loss that is not, such as a squared mean,
            is not detected.
        bn_mode: ``"eval"`` (``model.eval()``: BatchNorm with its running statistics) or
            ``"train"`` (BatchNorm, and InstanceNorm with running statistics, normalise each
            chunk with its own batch statistics: the function a (mini)batch gradient step sees,
            with ``chunk_size`` or the batches as the minibatches). In ``"train"`` the running
            statistics are passed as ``None`` to the forward passes, so the model's buffers,
            modes and everything else are unchanged afterwards. **Dropout is off in both modes**
            (the Hessian of the deterministic network); every module's mode is restored after
            each product. A model that overrides ``train()`` (``adaptive.TrainModeView``) keeps
            its behaviour.
        materialize: see ``data`` (default: ``True`` for lists, tuples and a pair, else ``False``).

    What stays alive between products: the operator's references to the model, the loss, the
    parameters and (materialised) the data; the gradient graphs or MLP states of all chunks
    when they fit in ``graph_budget_bytes`` (never for streamed data). They are dropped by
    :meth:`release`, at the end of a ``with HessianOperator(...) as H:`` block, and before they
    are rebuilt when a product finds the parameters changed in place (an optimiser step: the
    tensors' version counters).

    A :class:`~instab_lib.curvature.operators.LinearOperator`: it implements ``_matmat``;
    ``matmat``, ``matvec``, ``@``, sums, scalings, products, ``to_dense`` and ``to_scipy``
    come from the base.

    Attributes:
        dim, dtype, device: of the parameters; n_matvec: Hessian-vector products so far (a
        ``matmat`` of ``k`` columns counts ``k``); method_used; loss_reduction (the resolved
        one); n_samples (``N``); weights (``w_c`` per chunk); source (the
        :class:`~instab_lib.curvature.data.BatchSource`; ``n_passes`` counts streamed passes).
    """

    def __init__(
        self,
        model: nn.Module | Callable[[Any, Any], Any],
        loss_fn: Callable[[Any, Any], Tensor],
        data: Any,
        params: Sequence[Tensor] | dict[str, Tensor] | None = None,
        chunk_size: int | None = None,
        method: str = "auto",
        graph_budget_bytes: int = 2 * 1024**3,
        batched: bool = False,
        *,
        batch_fn: BatchFn | None = None,
        loss_reduction: str | None = None,
        bn_mode: str = "eval",
        materialize: bool | None = None,
    ) -> None:
        if method not in _METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {_METHODS}")
        if bn_mode not in BN_MODES:
            raise ValueError(f"unknown bn_mode {bn_mode!r}; expected one of {BN_MODES}")
        if not (isinstance(model, nn.Module) or callable(model)):
            raise ValueError(f"model must be an nn.Module or a callable (params, inputs), got {type(model).__name__}")
        self.model, self.loss_fn = model, loss_fn
        self.names, self.params = resolve_params(model, params)
        super().__init__(sum(p.numel() for p in self.params), self.params[0].dtype, self.params[0].device)
        self.mode = ModelMode(model, bn_mode)
        self.bn_mode = bn_mode
        layers = mlp_layers(model, self.params, loss_fn) if method in ("mlp", "auto") else None
        if method == "mlp" and layers is None:
            raise ValueError(_NO_MLP)
        inspect = (lambda b: mlp_batch_ok(model, b)) if layers is not None else None
        self.source = BatchSource(data, self.device, self.dtype, batch_fn, chunk_size, materialize, inspect)
        if method == "mlp" and not self.source.inspected:
            raise ValueError(_NO_MLP)
        self.chunks = self.source.chunks
        self.n_samples: int = self.source.n_samples
        self.loss_reduction = self._resolve_reduction(loss_reduction)
        self.weights: list[float] = [self._weight(n) for n in self.source.sizes]
        self._mlp_layers = layers if layers is not None and self.source.inspected else None
        self.method = method
        self.graph_budget_bytes = graph_budget_bytes
        self.batched = batched
        if method == "auto":
            self.method_used: str = (
                "mlp" if self._mlp_layers is not None else "double_backward" if self.device.type == "cpu" else ""
            )
        else:
            self.method_used = method
        self._mlp_states: list[MLPProducts] | None = None
        self._mlp_versions: tuple[int, ...] = ()
        self._graphs: list[_Graph] | None = None
        self._keep_graphs: bool | None = False if self.source.streamed else None
        self._versions: tuple[int, ...] = ()

    # ---- set-up ----------------------------------------------------------- #
    def _resolve_reduction(self, declared: str | None) -> str:
        """The loss's reduction over a batch (:func:`~instab_lib.curvature.loss.resolve_reduction`),
        measured on the first samples of the first chunk in the operator's mode."""
        inputs, targets, n = self.source.first()
        inputs, targets = head(inputs, targets, n, _PROBE_SAMPLES)

        def evaluate(x: Any, y: Any) -> Tensor:
            with torch.no_grad(), self.mode:
                return self._loss(x, y, 1.0, self.params)

        try:
            return resolve_reduction(self.loss_fn, declared, evaluate, inputs, targets, self.dtype)
        finally:
            self.source.forget_first()

    def _weight(self, n: int) -> float:
        return n / self.n_samples if self.loss_reduction == "mean" else 1.0

    def _loss(self, inputs: Any, targets: Any, w: float, tensors: Sequence[Tensor]) -> Tensor:
        """:func:`~instab_lib.curvature.loss.weighted_loss` at ``θ = tensors``, in the operator's mode."""
        return weighted_loss(self.model, self.loss_fn, dict(zip(self.names, tensors)), inputs, targets, w,
                             self.mode.buffers)

    def _chunks(self) -> Iterator[tuple[Any, Any, int, float]]:
        """``(inputs, targets, n, w_c)`` per chunk (one pass over streamed data)."""
        for inputs, targets, n in self.source:
            yield inputs, targets, n, self._weight(n)

    def _current_versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.params)

    def __enter__(self) -> "HessianOperator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ---- double backward -------------------------------------------------- #
    def _chunk_graph(self, inputs: Any, targets: Any, w: float) -> _Graph:
        """The weighted loss of one chunk and its gradient (``create_graph=True``) at fresh leaves ``θ``."""
        leaves = [p.detach().requires_grad_(True) for p in self.params]
        with torch.enable_grad(), self.mode:
            loss = self._loss(inputs, targets, w, leaves)
            grads = torch.autograd.grad(loss, leaves, create_graph=True)
        return loss, grads, leaves

    def _ensure_graphs(self) -> None:
        """Cache every chunk's graph where they fit in the budget (materialised data only)."""
        if self._graphs is not None and self._versions == self._current_versions():
            return
        self._graphs = None  # stale graphs are dropped before new ones are built
        self._versions = self._current_versions()
        if self._keep_graphs is False:
            return
        chunks = list(self._chunks())
        if self._keep_graphs is None:
            if len(chunks) == 1:
                self._keep_graphs = True
            else:
                nbytes = [0]

                def pack(t: Tensor) -> Tensor:
                    nbytes[0] += t.numel() * t.element_size()
                    return t

                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    first = self._chunk_graph(*chunks[0][:2], chunks[0][3])
                self._keep_graphs = nbytes[0] * len(chunks) <= self.graph_budget_bytes
                if self._keep_graphs:
                    self._graphs = [first] + [self._chunk_graph(X, y, w) for X, y, _, w in chunks[1:]]
                return
        if self._keep_graphs:
            self._graphs = [self._chunk_graph(X, y, w) for X, y, _, w in chunks]

    def _graph_stream(self) -> tuple[Iterable[_Graph], bool]:
        """The chunks' graphs (cached, or rebuilt one at a time) and whether they are cached."""
        self._ensure_graphs()
        if self._graphs is not None:
            return self._graphs, True
        return (self._chunk_graph(X, y, w) for X, y, _, w in self._chunks()), False

    def _hvp_db(self, V: Tensor) -> Tensor:
        """Double-backward product for a block ``V`` of shape ``(dim, k)``."""
        k = V.shape[1]
        out = torch.zeros_like(V)
        graphs, keep = self._graph_stream()
        for _, grads, leaves in graphs:
            if self.batched and k > 1:  # one backward pass, the k tangents batched (vmap inside autograd)
                hv = torch.autograd.grad(grads, leaves, grad_outputs=self._batched_tangents(V),
                                         retain_graph=keep, is_grads_batched=True)
                out += self._unbatch(hv, k)
                continue
            for j in range(k):
                last = (not keep) and j == k - 1
                hv = torch.autograd.grad(
                    grads, leaves, grad_outputs=unflatten_like(V[:, j], self.params), retain_graph=not last,
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
    def _mlp_state(self, X: Tensor, y: Tensor, n: int, w: float) -> MLPProducts:
        assert self._mlp_layers is not None
        return MLPProducts(self._mlp_layers, X, y, w if self.loss_reduction == "mean" else w * n)

    def _hvp_mlp(self, V: Tensor) -> Tensor:
        """:func:`~instab_lib.curvature.mlp.mlp_matmat`: all ``k`` columns in one pass per chunk."""
        versions = self._current_versions()
        if self._mlp_states is not None and self._mlp_versions == versions:
            return mlp_matmat(self._mlp_states, self.params, V)
        self._mlp_states = None
        if not self.source.streamed:
            states = [self._mlp_state(*c) for c in self._chunks()]
            if sum(s.nbytes() for s in states) <= self.graph_budget_bytes:
                self._mlp_states, self._mlp_versions = states, versions
            return mlp_matmat(states, self.params, V)
        out = torch.zeros_like(V)
        for c in self._chunks():
            out += mlp_matmat([self._mlp_state(*c)], self.params, V)
        return out

    # ---- forward over reverse -------------------------------------------- #
    def _hvp_fr(self, V: Tensor) -> Tensor:
        """Forward-over-reverse product ``jvp(grad(L))`` for a block ``(dim, k)``.

        Floating-point targets are primals of the ``jvp`` with zero tangents: without a tangent,
        ``mse_loss``'s backward fails under forward-mode AD ("ZeroTensors are immutable",
        pytorch#123996); with one the product is the same.
        """
        from torch.func import grad, jvp, vmap

        primals = tuple(p.detach() for p in self.params)
        P = len(primals)
        out = torch.zeros_like(V)
        for X, y, _, w in self._chunks():
            consts = tuple(float_leaves(y))
            zeros = tuple(torch.zeros_like(t) for t in consts)

            def loss(*args: Tensor, X: Any = X, y: Any = y, w: float = w) -> Tensor:
                if len(args) > P:
                    it = iter(args[P:])
                    y = tree_map(lambda t: next(it) if t.is_floating_point() else t, y)
                return self._loss(X, y, w, args[:P])

            g = grad(loss, argnums=tuple(range(P)))
            with self.mode, _explained_fr_errors():
                if self.batched and V.shape[1] > 1:  # torch.func.vmap over the k tangents

                    def hvp(*t: Tensor, g: Any = g, consts: Any = consts, zeros: Any = zeros) -> tuple[Tensor, ...]:
                        return jvp(g, (*primals, *consts), (*t, *zeros))[1]

                    out += self._unbatch(vmap(hvp)(*self._batched_tangents(V)), V.shape[1])
                    continue
                for j in range(V.shape[1]):
                    tangents = tuple(unflatten_like(V[:, j], self.params))
                    _, hv = jvp(g, (*primals, *consts), (*tangents, *zeros))
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
        """Full-data loss ``L(θ)`` and gradient ``∇L(θ)`` (shape ``(dim,)``), in the operator's mode."""
        loss_total = 0.0
        g = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        if self.method_used == "double_backward" or not self.method_used:
            self._ensure_graphs()
        if self._graphs is not None:
            for loss, grads, _ in self._graphs:
                loss_total += float(loss.detach())
                g += flatten(grads).detach()
            return loss_total, g
        with torch.enable_grad(), self.mode:
            for X, y, _, w in self._chunks():
                leaves = [p.detach().requires_grad_(True) for p in self.params]
                loss = self._loss(X, y, w, leaves)
                grads = torch.autograd.grad(loss, leaves)
                loss_total += float(loss.detach())
                g += flatten(grads)
        return loss_total, g

    def release(self) -> None:
        """Drop the cached gradient graphs and MLP states (rebuilt on the next product)."""
        self._graphs = None
        self._mlp_states = None


@contextlib.contextmanager
def _explained_fr_errors() -> Iterator[None]:
    """Re-raise PyTorch's pytorch#123996 crash of forward-over-reverse as a one-line error saying what to do."""
    try:
        yield
    except RuntimeError as err:
        if "ZeroTensors are immutable" not in str(err):
            raise
        raise RuntimeError(
            "forward_over_reverse hit PyTorch's pytorch#123996 (a loss such as mse_loss against a tensor the "
            "operator does not see as a target); use method='double_backward'"
        ) from err
