"""Exact Hessian-vector products of MLPs, ``k`` columns in one pass (Pearlmutter's R-operator).

For ``model = nn.Sequential([Flatten,] Linear, σ, Linear, σ, …, Linear)`` (exactly that class)
with elementwise activations ``σ`` and the cross-entropy loss (mean or sum), ``H V`` is written out layer by layer,
with the ``k`` tangent columns folded into the matrix products: every product with the
inputs ``X`` (``(n, d₀)``, the expensive ones: ``d₀ = 784`` against widths of 32) is one
matrix product for all ``k`` columns, where a column loop (or ``torch.func.vmap``, which
turns ``X Ẇᵀ`` into a batched product over a copy-expanded ``X``) pays ``k``. The
floating-point work is that of ``k`` single products; what is saved is everything
around it (graph traversal, small kernels, memory traffic).

Chunk ``c`` (weight ``w`` on its *mean* loss: ``n_c/N`` for a mean-reduced loss, ``n_c`` for a
sum; ``n = n_c`` samples, logits ``z_L``, ``p = softmax(z_L)``,
one-hot labels ``Y``), layers ``z_l = a_{l−1} W_lᵀ + b_l``, ``a_l = σ(z_l)``, ``a_0 = X``::

    gradient:  δ_L = w (p − Y)/n,  δa_{l−1} = δ_l W_l,  δ_{l−1} = δa_{l−1} ⊙ σ'(z_{l−1})
    tangent:   ȧ_0 = 0,  ż_l = ȧ_{l−1} W_lᵀ + a_{l−1} Ẇ_lᵀ + ḃ_l,  ȧ_l = σ'(z_l) ⊙ ż_l
    adjoint:   δ̇_L = w (p ⊙ ż_L − p (pᵀ ż_L))/n          (row-wise softmax Hessian)
               (HV)_{W_l} = δ̇_lᵀ a_{l−1} + δ_lᵀ ȧ_{l−1},   (HV)_{b_l} = Σ_rows δ̇_l
               δ̇_{l−1} = (δ̇_l W_l + δ_l Ẇ_l) ⊙ σ'(z_{l−1}) + δa_{l−1} ⊙ σ''(z_{l−1}) ⊙ ż_{l−1}

Tangents are kept sample-major, ``(n, k, width)``, so each product above is a single
``mm`` without copies. ``σ'`` and ``σ''`` come from autograd on ``σ`` itself (so they are
the derivatives double-backward uses, e.g. ``σ'' = 0`` for ReLU).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Elementwise activations the closed form handles.
ACTIVATIONS = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.LeakyReLU, nn.SiLU, nn.Softplus, nn.Identity)
#: Largest tangent tensor ``n · k · width`` (elements) of one pass; wider blocks are split.
MAX_TANGENT_ELEMENTS = 2**24


def _has_hooks(model: nn.Module) -> bool:
    """Any forward/backward hook, parametrisation or ``forward`` set on an instance (global or on a
    submodule): the closed form would miss it."""
    from torch.nn.modules import module as M
    from torch.nn.utils import parametrize

    glob = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks", "_global_backward_pre_hooks")
    if any(getattr(M, g, None) for g in glob):
        return True
    own = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return any(any(getattr(m, h, None) for h in own) or parametrize.is_parametrized(m) or "forward" in vars(m)
               for m in model.modules())


def mlp_layers(model: Any, params: Sequence[Tensor],
               loss_fn: Callable[..., Any]) -> list[tuple[nn.Linear, nn.Module | None]] | None:
    """``[(Linear, activation or None), …]`` if the closed form provably applies, else ``None``.

    Applies to an ``nn.Sequential`` — exactly that class, not a subclass, which may have its own
    ``forward`` — of an optional leading ``nn.Flatten()`` and alternating ``nn.Linear`` /
    :data:`ACTIVATIONS` modules (exact classes, not in place) ending in a ``Linear``, with no
    hook or parametrisation anywhere, whose parameters are exactly ``params`` (in order), with
    ``loss_fn`` the cross-entropy (``F.cross_entropy``, or an ``nn.CrossEntropyLoss`` without
    class weights or label smoothing, reducing by ``"mean"`` or ``"sum"``: the operator passes
    each chunk's weight on its *mean* loss). Each batch must also pass :func:`mlp_batch_ok`.
    """
    if type(model) is not nn.Sequential or _has_hooks(model):
        return None
    ce = loss_fn is F.cross_entropy or (
        type(loss_fn) is nn.CrossEntropyLoss and loss_fn.weight is None and loss_fn.ignore_index < 0
        and loss_fn.reduction in ("mean", "sum") and loss_fn.label_smoothing == 0.0
    )
    if not ce:
        return None
    mods = list(model)
    if mods and type(mods[0]) is nn.Flatten and (mods[0].start_dim, mods[0].end_dim) == (1, -1):
        mods = mods[1:]
    if len(mods) % 2 == 0:  # Linear (σ Linear)*
        return None
    layers: list[tuple[nn.Linear, nn.Module | None]] = []
    for i in range(0, len(mods), 2):
        lin, act = mods[i], (mods[i + 1] if i + 1 < len(mods) else None)
        if type(lin) is not nn.Linear or (act is not None and (type(act) not in ACTIVATIONS
                                                               or getattr(act, "inplace", False))):
            return None
        layers.append((lin, act))
    own = [p for lin, _ in layers for p in ((lin.weight,) if lin.bias is None else (lin.weight, lin.bias))]
    if len(own) != len(params) or any(a is not b for a, b in zip(own, params)):
        return None
    return layers


def mlp_batch_ok(model: nn.Sequential, batch: tuple[Any, Any, int]) -> bool:
    """Whether a batch ``(X, y, n)`` suits the closed form: ``X`` a floating-point tensor of ``n`` rows
    (2-d, or any ``≥ 2``-d behind the leading ``nn.Flatten``), ``y`` ``n`` integer labels ``≥ 0``
    (cross-entropy's ``ignore_index = -100`` would drop a sample)."""
    X, y, n = batch
    if not (isinstance(X, Tensor) and isinstance(y, Tensor)) or not X.is_floating_point():
        return False
    flat = len(model) > 0 and type(model[0]) is nn.Flatten
    if (X.dim() < 2 if flat else X.dim() != 2) or X.shape[0] != n:
        return False
    if y.dim() != 1 or y.shape[0] != n or y.dtype.is_floating_point or y.dtype == torch.bool:
        return False
    return not (y.numel() and int(y.min()) < 0)


def _derivatives(act: nn.Module, z: Tensor) -> tuple[Tensor, Tensor]:
    """``σ'(z)`` and ``σ''(z)`` elementwise, by autograd on ``σ`` (``(n, width)`` each)."""
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        (d1,) = torch.autograd.grad(act(zz).sum(), zz, create_graph=True)
        if d1.requires_grad:
            (d2,) = torch.autograd.grad(d1.sum(), zz, allow_unused=True)
        else:
            d2 = None
    return d1.detach(), (torch.zeros_like(z) if d2 is None else d2.detach())


class MLPProducts:
    """The primal quantities of one chunk, computed once per parameter state, and ``H V``.

    State per layer ``l``: input ``a_{l−1}`` ``(n, d)``, ``σ'(z_l)``, the gradient term ``δ_l``
    and the curvature term ``δa_l ⊙ σ''(z_l)`` (``None`` where ``σ'' = 0``, e.g. ReLU);
    softmax ``p`` ``(n, C)``.
    """

    def __init__(self, layers: list[tuple[nn.Linear, nn.Module | None]], X: Tensor, y: Tensor,
                 weight: float) -> None:
        self.layers = layers
        with torch.no_grad():
            a = X.reshape(X.shape[0], -1)
            self.n = a.shape[0]
            self.inputs: list[Tensor] = []
            self.d1: list[Tensor] = []
            d2: list[Tensor] = []
            for lin, act in layers:
                self.inputs.append(a)
                z = F.linear(a, lin.weight, lin.bias)
                if act is not None:
                    s1, s2 = _derivatives(act, z)
                    self.d1.append(s1)
                    d2.append(s2)
                    a = act(z)
            self.p = torch.softmax(z, dim=1)
            self.scale = weight / self.n
            delta = self.scale * (self.p - F.one_hot(y, z.shape[1]).to(z.dtype))
            self.delta: list[Tensor] = [delta]  # δ_L, …, δ_1 (reversed below)
            delta_a: list[Tensor] = []  # gradients w.r.t. the inputs of layers L, …, 2
            for l in range(len(layers) - 1, 0, -1):
                da = delta @ layers[l][0].weight
                delta = da * self.d1[l - 1]
                delta_a.append(da)
                self.delta.append(delta)
            self.delta.reverse()
            delta_a.reverse()  # delta_a[l] = δa_l, the gradient w.r.t. the output of layer l (0-based)
            # δa ⊙ σ'' (the activation's curvature term); None where σ'' = 0 (ReLU, Identity)
            self.curv: list[Tensor | None] = [None if not bool(s2.any()) else da * s2 for da, s2 in zip(delta_a, d2)]

    def nbytes(self) -> int:
        """Bytes held by the state (the data's own view ``a_0`` not counted)."""
        ts = [*self.inputs[1:], *self.d1, *self.delta, self.p, *(c for c in self.curv if c is not None)]
        return sum(t.numel() * t.element_size() for t in ts)

    def hvp_into(self, tangents: list[tuple[Tensor, Tensor | None]], out: list[tuple[Tensor, Tensor | None]]) -> None:
        """Add ``H V`` for per-layer tangents ``(Ẇ_l (k, h, d), ḃ_l (k, h) or None)`` into ``out``
        (per layer ``(k, h, d)`` and ``(k, h)`` views of the output block)."""
        n, L = self.n, len(self.layers)
        k = tangents[0][0].shape[0]
        adot: list[Tensor | None] = [None]  # ȧ_{l−1} per layer, (n, k, d)
        zdot: list[Tensor] = []
        for l, ((lin, act), (Wd, bd)) in enumerate(zip(self.layers, tangents)):
            h, d = lin.weight.shape
            Wt = Wd.reshape(k * h, d).T
            zd = (self.inputs[l] @ Wt if bd is None else torch.addmm(bd.reshape(1, k * h), self.inputs[l], Wt))
            if adot[l] is not None:
                zd.view(n * k, h).addmm_(adot[l].reshape(n * k, d), lin.weight.T)
            zd = zd.view(n, k, h)
            zdot.append(zd)
            if act is not None:
                adot.append(self.d1[l][:, None, :] * zd)
        p = self.p[:, None, :]
        pz = p * zd
        dd = torch.addcmul(pz, p, pz.sum(dim=2, keepdim=True), value=-1.0).mul_(self.scale)  # δ̇_L
        for l in range(L - 1, -1, -1):
            lin, _ = self.layers[l]
            Wd, _ = tangents[l]
            h, d = lin.weight.shape
            gW, gb = out[l]
            gW.add_((dd.reshape(n, k * h).T @ self.inputs[l]).view(k, h, d))
            if adot[l] is not None:
                gW.transpose(0, 1).add_((self.delta[l].T @ adot[l].reshape(n, k * d)).view(h, k, d))
            if gb is not None:
                gb.add_(dd.sum(dim=0))
            if l > 0:
                da = (dd.reshape(n * k, h) @ lin.weight).view(n, k, d)
                da.view(n, k * d).addmm_(self.delta[l], Wd.transpose(0, 1).reshape(h, k * d))
                dd = da.mul_(self.d1[l - 1][:, None, :])
                if self.curv[l - 1] is not None:
                    dd.addcmul_(self.curv[l - 1][:, None, :], zdot[l - 1])


def mlp_matmat(states: Sequence[MLPProducts], params: Sequence[Tensor], V: Tensor) -> Tensor:
    """``H V`` (``(dim, k)``) summed over the chunks' :class:`MLPProducts`; ``V`` is ``(dim, k)``.

    Column blocks are split so that a tangent tensor stays below ``MAX_TANGENT_ELEMENTS``.
    """
    layers = states[0].layers
    width = max(max(lin.weight.shape) for lin, _ in layers[1:]) if len(layers) > 1 else 1
    width = max(width, layers[-1][0].weight.shape[0])
    step = max(1, MAX_TANGENT_ELEMENTS // (max(s.n for s in states) * width))
    sizes = [p.numel() for p in params]
    out = torch.empty_like(V)
    for j0 in range(0, V.shape[1], step):
        Vb = V[:, j0:j0 + step]
        k = Vb.shape[1]
        rows = torch.split(Vb, sizes)
        acc = torch.zeros(k, V.shape[0], dtype=V.dtype, device=V.device)
        cols = torch.split(acc, sizes, dim=1)
        tangents, views, i = [], [], 0
        for lin, _ in layers:
            shape = lin.weight.shape
            has_b = lin.bias is not None
            tangents.append((rows[i].T.reshape(k, *shape), rows[i + 1].T if has_b else None))
            views.append((cols[i].view(k, *shape), cols[i + 1] if has_b else None))
            i += 2 if has_b else 1
        for s in states:
            s.hvp_into(tangents, views)
        out[:, j0:j0 + k] = acc.T
    return out
