"""The author's two CIFAR-5k networks, layer for layer as their Flax modules define them.

Source: ``lawrencewang94/jax_eigs`` at d96374f (the commit of ``train_scripts/
cifar5k_ub_family_train.py``), ``modules.py``: ``VGGNet(3, 3, 8, use_DO=False, use_BN=True)``
("VGG10_base8_BN") and ``ResNet(3, 3, 2, use_DO=False, use_BN=True, sc_conv="Identity")``
("ResNet20_base8_Identity_BN"), run in the author's environment (flax 0.10.2, jax 0.4.34).
Inputs are ``(N, C, H, W)`` float tensors (PyTorch's layout; the author's are NHWC), outputs
``(N, n_classes)`` logits.

**VGG10_base8_BN** (32,782 parameters for 3×32×32 inputs and 10 classes)::

    for block i = 0, 1, 2 (width w_i = 8·2^i = 8, 16, 32):
        3 × [conv3×3 (stride 1, 'SAME' = pad 1, with bias) → BN → ReLU]
        max-pool 2×2, stride 2 ('VALID')
    flatten (in Flax's NHWC order: h, w, c) → Dense(2^(n_blocks−1) = 4) → BN → ReLU → Dense(10)

The head's width is the loop variable ``width_factor`` of the last block (``nn.Dense(width_factor)``
after the loop), i.e. 4, not a multiple of the base width.

**ResNet20_base8_Identity_BN** (68,050 parameters)::

    conv3×3(8, no bias) → BN → ReLU
    for stage i = 0, 1, 2 (width 8·2^i), block j = 0, 1, 2 (stride 2 if i > 0 and j = 0, else 1):
        y = ReLU(BN(conv3×3(stride s, no bias)(x)));  y = ReLU(BN(conv3×3(no bias)(y)))
        shortcut = x, or for s = 2: x[:, :, ::2, ::2] zero-padded in channels, ⌊Δ/2⌋ zero
                   channels before and ⌈Δ/2⌉ after (Δ = new − old width)
        x = ReLU(y + shortcut)
    global average pool over (H, W) → Dense(10)

Note the block's *second* ReLU before the addition (the author's loop applies conv → BN → ReLU
to every layer of the block), unlike He et al.'s basic block. Flax's ``'SAME'`` padding of a
stride-2 3×3 convolution on an even side pads 0 rows/columns before and 1 after (TensorFlow's
rule), so output pixel i sees input rows 2i, 2i+1, 2i+2; PyTorch's ``padding=1`` would see
2i−1 … 2i+1. The strided convolutions here pad as Flax does.

**BatchNorm** as ``flax.linen.BatchNorm`` with its defaults: ``momentum=0.99`` (PyTorch's
``momentum=0.01``), ``epsilon=1e-5``, learnable scale and bias; normalisation by the batch
statistics in train mode and by the running averages in eval mode (the author evaluates
accuracies and the Hessian with ``train=False``). Flax's running variance averages the *biased*
batch variance; PyTorch's averages the unbiased one (factor n/(n−1), n = values per channel:
64 for the head's BN at batch size 64). :class:`FlaxBatchNorm2d` / :class:`FlaxBatchNorm1d`
correct PyTorch's update to Flax's exactly (running buffers only; outputs are unchanged).

**Initialisation** (``init=``, default ``"author"``): ``"author"`` (Flax's defaults: LeCun-normal
kernels, zero biases, BN scale 1 and bias 0) or ``"torch"`` (PyTorch's defaults), as defined in
:mod:`instab_lib.experiments.initialisation`, drawn from ``torch.manual_seed`` of the (offset-shifted)
``seed`` inside :func:`torch.random.fork_rng`: the global random state is left as it was. These
builders do not read ``INSTAB_INIT``.

``channels_last=True`` stores the conv weights in ``torch.channels_last`` and converts each input
to it (faster convolutions on a CPU: ``benchmarks/RESULTS.md``); the outputs equal the
contiguous model's to float32 rounding.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import seeding
from .initialisation import INITS, LECUN_TRUNC_CORRECTION, initialise_

__all__ = [
    "ARCHITECTURES",
    "INITS",
    "FlaxBatchNorm1d",
    "FlaxBatchNorm2d",
    "VGGNet",
    "ResNet",
    "vgg10_base8_bn",
    "resnet20_base8",
    "build_cnn",
    "initialise_",
    "count_parameters",
    "LECUN_TRUNC_CORRECTION",
]

#: Flax's ``BatchNorm`` defaults in PyTorch's convention.
FLAX_BN_MOMENTUM = 0.01  # Flax momentum 0.99: ra ← 0.99·ra + 0.01·batch
FLAX_BN_EPS = 1e-5


# ------------------------------------------------------------------------------------ BN
class _FlaxRunningVar:
    """Mixin: train-mode BatchNorm whose running variance averages the *biased* batch variance,
    ``rv ← (1−m)·rv + m·var`` (Flax), where PyTorch averages the unbiased one
    (``rv ← (1−m)·rv + m·var·n/(n−1)``, ``n`` = values per channel in the batch).

    PyTorch's kernel updates copies of the buffers (autograd keeps the tensors it was given, so the
    buffers themselves must not be changed in place after the call); the buffers then receive the
    copies, the variance corrected by ``−(rv_new − (1−m)·rv_old)/n``. Outputs and gradients are
    PyTorch's (normalisation by the biased batch variance, as in Flax)."""

    def _flax_forward(self, x: Tensor, forward: Any) -> Tensor:
        if not (self.training and self.track_running_stats):  # type: ignore[attr-defined]
            return forward(x)
        self._check_input_dim(x)  # type: ignore[attr-defined]
        m = self.momentum  # type: ignore[attr-defined]
        rm = self.running_mean.clone()  # type: ignore[attr-defined]
        rv = self.running_var.clone()  # type: ignore[attr-defined]
        out = F.batch_norm(x, rm, rv, self.weight, self.bias, True, m, self.eps)  # type: ignore[attr-defined]
        n = x.numel() // x.shape[1]
        with torch.no_grad():
            old = self.running_var  # type: ignore[attr-defined]
            old.copy_(rv - (rv - (1.0 - m) * old) / n)
            self.running_mean.copy_(rm)  # type: ignore[attr-defined]
            self.num_batches_tracked.add_(1)  # type: ignore[attr-defined]
        return out


class _MemoryFormat(nn.Module):
    """``channels_last`` switch shared by the two networks."""

    channels_last: bool = False

    def set_channels_last(self, on: bool = True) -> "_MemoryFormat":
        """Store the conv weights in ``torch.channels_last`` (``on``) or contiguous, and convert
        each input likewise in ``forward``. The parameters' values are unchanged."""
        self.channels_last = bool(on)
        self.to(memory_format=torch.channels_last if on else torch.contiguous_format)
        return self

    def _input(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class FlaxBatchNorm2d(_FlaxRunningVar, nn.BatchNorm2d):
    """``flax.linen.BatchNorm()`` on (N, C, H, W): momentum 0.01 (Flax 0.99), eps 1e-5,
    running variance of the biased batch variance."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, eps=FLAX_BN_EPS, momentum=FLAX_BN_MOMENTUM)

    def forward(self, x: Tensor) -> Tensor:
        return self._flax_forward(x, super().forward)


class FlaxBatchNorm1d(_FlaxRunningVar, nn.BatchNorm1d):
    """``flax.linen.BatchNorm()`` on (N, C) (the VGG head)."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, eps=FLAX_BN_EPS, momentum=FLAX_BN_MOMENTUM)

    def forward(self, x: Tensor) -> Tensor:
        return self._flax_forward(x, super().forward)


# ----------------------------------------------------------------------------- layers
def _same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow/Flax 'SAME' padding (before, after) of one spatial side."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``flax.linen.Conv(features, (k, k), strides=s, padding='SAME')``: pads as Flax does
    (asymmetric for even sides at stride 2), then convolves without padding."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1, bias: bool = True) -> None:
        super().__init__(c_in, c_out, k, stride=stride, padding=0, bias=bias)
        self._symmetric = stride == 1 and k % 2 == 1
        if self._symmetric:  # pad (k−1)/2 on each side: PyTorch's own padding is the same
            self.padding = (k // 2, k // 2)

    def forward(self, x: Tensor) -> Tensor:
        if not self._symmetric:
            k, s = self.kernel_size[0], self.stride[0]
            ph = _same_pad(x.shape[-2], k, s)
            pw = _same_pad(x.shape[-1], k, s)
            if any(ph) or any(pw):
                x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
        return super().forward(x)


# -------------------------------------------------------------------------------- VGG
class VGGNet(_MemoryFormat):
    """The author's ``modules.VGGNet`` with ``use_BN=True``, ``use_DO=False``, ``pool='max'``
    (see the module docstring). Input (N, in_channels, H, W) → (N, n_out)."""

    def __init__(self, n_blocks: int = 3, layers_per_block: int = 3, base_width: int = 8,
                 width_expansion_factor: int = 2, n_out: int = 10, in_channels: int = 3,
                 image_size: int = 32, channels_last: bool = False) -> None:
        super().__init__()
        for name, v in (("n_blocks", n_blocks), ("layers_per_block", layers_per_block),
                        ("base_width", base_width), ("width_expansion_factor", width_expansion_factor),
                        ("n_out", n_out), ("in_channels", in_channels), ("image_size", image_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        side = image_size
        for _ in range(n_blocks):
            side //= 2
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for {n_blocks} 2×2 max-pools")
        blocks: list[nn.Module] = []
        c = in_channels
        width_factor = 1
        for i in range(n_blocks):
            width_factor = width_expansion_factor**i
            w = width_factor * base_width
            layers: list[nn.Module] = []
            for _ in range(layers_per_block):
                layers += [SameConv2d(c, w, 3), FlaxBatchNorm2d(w), nn.ReLU()]
                c = w
            layers.append(nn.MaxPool2d(2, 2))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*blocks)
        self.dense1 = nn.Linear(c * side * side, width_factor)
        self.bn = FlaxBatchNorm1d(width_factor)
        self.dense2 = nn.Linear(width_factor, n_out)
        self.set_channels_last(channels_last)

    def forward(self, x: Tensor) -> Tensor:
        h = self.blocks(self._input(x))
        h = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)  # Flax's flatten order (h, w, c)
        return self.dense2(F.relu(self.bn(self.dense1(h))))


# ----------------------------------------------------------------------------- ResNet
class ResBlock(nn.Module):
    """The author's ``modules.ResBlock`` (depth 2, BN, no dropout, ``sc_conv='Identity'``)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, depth: int = 2) -> None:
        super().__init__()
        if stride == 1 and c_in != c_out:
            raise ValueError(f"an identity shortcut at stride 1 needs c_in == c_out, got {c_in} → {c_out}")
        if c_out < c_in:
            raise ValueError(f"the zero-padded shortcut cannot shrink channels ({c_in} → {c_out})")
        layers: list[nn.Module] = []
        c = c_in
        for i in range(depth):
            layers += [SameConv2d(c, c_out, 3, stride=stride if i == 0 else 1, bias=False),
                       FlaxBatchNorm2d(c_out), nn.ReLU()]
            c = c_out
        self.body = nn.Sequential(*layers)
        self.stride = stride
        delta = c_out - c_in
        self.pad = (delta // 2, delta - delta // 2)

    def forward(self, x: Tensor) -> Tensor:
        sc = x
        if self.stride > 1:
            sc = x[:, :, :: self.stride, :: self.stride]
            if any(self.pad):
                sc = F.pad(sc, (0, 0, 0, 0, self.pad[0], self.pad[1]))
        return F.relu(self.body(x) + sc)


class ResNet(_MemoryFormat):
    """The author's ``modules.ResNet`` with ``use_BN=True``, ``use_DO=False``,
    ``sc_conv='Identity'`` (see the module docstring). Input (N, in_channels, H, W) → (N, n_out)."""

    def __init__(self, n_blocks: int = 3, layers_per_block: int = 3, depth_per_layer: int = 2,
                 base_width: int = 8, width_expansion_factor: int = 2, n_out: int = 10,
                 in_channels: int = 3, channels_last: bool = False) -> None:
        super().__init__()
        for name, v in (("n_blocks", n_blocks), ("layers_per_block", layers_per_block),
                        ("depth_per_layer", depth_per_layer), ("base_width", base_width),
                        ("width_expansion_factor", width_expansion_factor), ("n_out", n_out),
                        ("in_channels", in_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.stem = nn.Sequential(SameConv2d(in_channels, base_width, 3, bias=False),
                                  FlaxBatchNorm2d(base_width), nn.ReLU())
        blocks: list[nn.Module] = []
        c = base_width
        for i in range(n_blocks):
            w = width_expansion_factor**i * base_width
            for j in range(layers_per_block):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(ResBlock(c, w, stride, depth_per_layer))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.dense = nn.Linear(c, n_out)
        self.set_channels_last(channels_last)

    def forward(self, x: Tensor) -> Tensor:
        h = self.blocks(self.stem(self._input(x)))
        return self.dense(h.mean(dim=(2, 3)))


# ----------------------------------------------------------------------------- builders
def _build(cls: type[nn.Module], seed: int, init: str, **kw: Any) -> nn.Module:
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {INITS}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    channels_last = kw.pop("channels_last", False)
    with torch.random.fork_rng(devices=[]):
        seeding.manual_seed(seed)
        model = cls(**kw)  # contiguous: the random fills write in memory order
        initialise_(model, init)
    return model.set_channels_last(channels_last)


def vgg10_base8_bn(*, seed: int = 0, init: str = "author", n_classes: int = 10, in_channels: int = 3,
                   image_size: int = 32, channels_last: bool = False) -> VGGNet:
    """VGG10_base8_BN: ``modules.VGGNet(3, 3, 8, use_DO=False, use_BN=True)`` of the author's
    CIFAR-5k script; 32,782 parameters for 3×32×32 inputs and 10 classes."""
    return _build(VGGNet, seed, init, n_blocks=3, layers_per_block=3, base_width=8, n_out=n_classes,
                  in_channels=in_channels, image_size=image_size, channels_last=channels_last)  # type: ignore[return-value]


def resnet20_base8(*, seed: int = 0, init: str = "author", n_classes: int = 10, in_channels: int = 3,
                   channels_last: bool = False) -> ResNet:
    """ResNet20_base8_Identity_BN: ``modules.ResNet(3, 3, 2, use_DO=False, use_BN=True,
    sc_conv='Identity')`` of the author's CIFAR-5k script; 68,050 parameters for 10 classes."""
    return _build(ResNet, seed, init, n_blocks=3, layers_per_block=3, depth_per_layer=2, base_width=8,
                  n_out=n_classes, in_channels=in_channels, channels_last=channels_last)  # type: ignore[return-value]


#: Architecture name (the author's ``arch_name``) → builder.
ARCHITECTURES = {"vgg": vgg10_base8_bn, "resnet": resnet20_base8}


def build_cnn(arch: str, *, seed: int = 0, init: str = "author", channels_last: bool = False,
              **kw: Any) -> nn.Module:
    """``ARCHITECTURES[arch](seed=…, init=…, channels_last=…, **kw)`` with a one-line error for an
    unknown architecture or initialisation."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](seed=seed, init=init, channels_last=channels_last, **kw)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars (the Hessian's dimension)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
