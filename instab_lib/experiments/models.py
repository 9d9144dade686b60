"""The models of the companion, built by name with a deterministic initialisation.

``build_model(name, seed=s, **kw)`` draws the initialisation under ``torch.manual_seed(s)``
(shifted by the library's seed offset, :mod:`instab_lib.experiments.seeding`) inside
:func:`torch.random.fork_rng`, so the same seed gives the same weights and the global random state
is left as it was. ``mlp`` and ``linear`` take ``init`` (:mod:`instab_lib.experiments.initialisation`):
``"torch"`` (PyTorch's defaults), ``"author"`` (Flax's: LeCun-normal kernels, zero biases) or
``None``, the default, for ``$INSTAB_INIT`` or else ``"torch"``.

=========  ==============================================================  =============
name       architecture (REFERENCE §4.2)                                   input
=========  ==============================================================  =============
mlp        Flatten → [Linear(width) → act] × depth → Linear(n_classes);     (N, …) any
           the paper's fMNIST MLP is 784-32-32-32-10 ReLU (27,562 params)
linear     Flatten → Linear(n_out): the depth-1 control (1,570 params for   (N, …) any
           784 → 2)
vgg        VGG10_base8_BN: 3 blocks × 3 [conv3×3 → BN → ReLU], widths       (N, 3, 32, 32)
           8/16/32, max-pool 2×2 after each block, Flatten → Dense(4) →
           BN → ReLU → Dense(10)
resnet20   ResNet20_base8_Identity_BN: conv3×3(8) → BN → ReLU, 3 stages ×   (N, 3, 32, 32)
           3 basic blocks (widths 8/16/32, stride 2 at stages 2, 3),
           identity shortcuts with zero-padded channels, GAP → Dense(10)
dln        depth-D diagonal linear network θ ∈ ℝᴰ, output Θ = ∏ᵢ θᵢ        none, or x:
           (times x when an input is given)                                Θ·x
=========  ==============================================================  =============
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..validation import integer
from . import seeding
from .initialisation import initialise_, resolve_init

__all__ = ["build_model", "MODELS", "INPUTS", "data_kwargs", "count_parameters", "DiagonalLinearNet", "register"]

#: Model names accepted by :func:`build_model` → builder (filled by :func:`register`).
MODELS: dict[str, Callable[..., nn.Module]] = {}
#: Model name → ``inputs(shape, n_classes) -> kwargs``: the builder arguments implied by a data
#: set's input shape ``(C, H, W)`` and class count (each model declares its own).
INPUTS: dict[str, Callable[[tuple[int, ...], int], dict[str, Any]]] = {}


def register(name: str, inputs: Callable[[tuple[int, ...], int], dict[str, Any]] | None = None) -> Callable:
    """Decorator: add a builder to :data:`MODELS` under ``name``, with the keyword arguments
    its data implies (``inputs``; none for models without data, like the DLN)."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = fn
        INPUTS[name] = inputs or (lambda shape, n_classes: {})
        return fn

    return deco


def data_kwargs(name: str, shape: Sequence[int], n_classes: int) -> dict[str, Any]:
    """The builder arguments of model ``name`` implied by inputs of ``shape`` (C, H, W) and
    ``n_classes`` classes (e.g. ``input_dim`` and ``n_classes`` of the MLP)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return dict(INPUTS[name](tuple(int(d) for d in shape), int(n_classes)))

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars (the dimension of the Hessian)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _positive_int(name: str, value: Any, *, allow_zero: bool = False) -> int:
    return integer(name, value, 0 if allow_zero else 1)  # type: ignore[return-value]


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


# ---------------------------------------------------------------------------- MLP
@register("mlp", inputs=lambda shape, n: {"input_dim": math.prod(shape), "n_classes": n})
def mlp(
    input_dim: int = 784,
    depth: int = 3,
    width: int = 32,
    n_classes: int = 10,
    activation: str = "relu",
    init: str | None = None,
) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units; ``depth = 0`` is a linear map.

    Parameters: (input_dim+1)·w + (depth−1)(w+1)·w + (w+1)·n_classes for depth ≥ 1,
    e.g. 784-32-32-32-10 → 25,120 + 2,112 + 330 = 27,562. ``init``: ``"torch"`` keeps the layers'
    own draw (PyTorch's defaults), ``"author"`` re-draws every layer LeCun-normal with zero biases
    (:func:`instab_lib.experiments.initialisation.initialise_`), ``None`` reads ``$INSTAB_INIT``.
    """
    init = resolve_init(init)
    input_dim = _positive_int("input_dim", input_dim)
    depth = _positive_int("depth", depth, allow_zero=True)
    width = _positive_int("width", width)
    n_classes = _positive_int("n_classes", n_classes)
    layers: list[nn.Module] = [nn.Flatten()]
    d = input_dim
    for _ in range(depth):
        layers += [nn.Linear(d, width), _activation(activation)]
        d = width
    layers.append(nn.Linear(d, n_classes))
    model = nn.Sequential(*layers)
    return initialise_(model, "author") if init == "author" else model


@register("linear", inputs=lambda shape, n: {"input_dim": math.prod(shape), "n_out": n})
def linear(input_dim: int = 784, n_out: int = 10, init: str | None = None) -> nn.Sequential:
    """Flatten → Linear(input_dim → n_out): the depth-1 control (constant Hessian under MSE);
    ``init`` as for :func:`mlp`."""
    return mlp(input_dim=input_dim, depth=0, n_classes=n_out, init=init)


# ---------------------------------------------------------------------------- VGG
@register("vgg", inputs=lambda shape, n: {"in_channels": shape[0], "n_classes": n, "image_size": shape[1]})
def vgg(
    in_channels: int = 3,
    widths: Sequence[int] = (8, 16, 32),
    convs_per_block: int = 3,
    dense_width: int = 4,
    n_classes: int = 10,
    image_size: int = 32,
) -> nn.Sequential:
    """VGG10_base8_BN (REFERENCE §4.2): per block ``convs_per_block`` × [conv3×3 (pad 1) →
    BN → ReLU] then max-pool 2×2; head Flatten → Linear(dense_width) → BN1d → ReLU →
    Linear(n_classes). Spatial size after the blocks: image_size / 2^len(widths)."""
    widths = [_positive_int("widths[i]", w) for w in widths]
    convs_per_block = _positive_int("convs_per_block", convs_per_block)
    dense_width = _positive_int("dense_width", dense_width)
    side = _positive_int("image_size", image_size) // 2 ** len(widths)
    if side < 1:
        raise ValueError(f"image_size {image_size} too small for {len(widths)} pooling stages")
    layers: list[nn.Module] = []
    c = _positive_int("in_channels", in_channels)
    for w in widths:
        for _ in range(convs_per_block):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        layers.append(nn.MaxPool2d(2))
    layers += [
        nn.Flatten(),
        nn.Linear(c * side * side, dense_width),
        nn.BatchNorm1d(dense_width),
        nn.ReLU(),
        nn.Linear(dense_width, _positive_int("n_classes", n_classes)),
    ]
    return nn.Sequential(*layers)


# ------------------------------------------------------------------------- ResNet
class _BasicBlock(nn.Module):
    """x ↦ ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x)); the shortcut subsamples by
    ``stride`` and zero-pads the new channels (He et al. 2016, option A)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride = stride
        self.pad = c_out - c_in

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        sc = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.pad:
            sc = F.pad(sc, (0, 0, 0, 0, 0, self.pad))
        return F.relu(out + sc)


class ResNet(nn.Module):
    """CIFAR ResNet-(6n+2) with identity (zero-padded) shortcuts, BN, GAP, Dense.
    Input (N, C, H, W) → logits (N, n_classes)."""

    def __init__(self, blocks_per_stage: int, base_width: int, in_channels: int, n_classes: int) -> None:
        super().__init__()
        w = base_width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(w), nn.ReLU())
        blocks: list[nn.Module] = []
        c = w
        for stage, width in enumerate((w, 2 * w, 4 * w)):
            for b in range(blocks_per_stage):
                stride = 2 if (stage > 0 and b == 0) else 1
                blocks.append(_BasicBlock(c, width, stride))
                c = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.blocks(self.stem(x))
        return self.fc(h.mean(dim=(2, 3)))


@register("resnet20", inputs=lambda shape, n: {"in_channels": shape[0], "n_classes": n})
def resnet20(base_width: int = 8, in_channels: int = 3, n_classes: int = 10) -> ResNet:
    """ResNet20_base8_Identity_BN (REFERENCE §4.2): 3 stages × 3 blocks × 2 convs + stem + fc."""
    return ResNet(3, _positive_int("base_width", base_width),
                  _positive_int("in_channels", in_channels), _positive_int("n_classes", n_classes))


# ---------------------------------------------------------------------------- DLN
class DiagonalLinearNet(nn.Module):
    """Depth-D diagonal linear network: parameters θ = (θ₁, …, θ_D) (one vector
    ``theta`` of shape (D,)), output Θ = ∏ᵢ θᵢ; ``forward()`` → Θ (0-d),
    ``forward(x)`` → Θ·x (same shape as x). With L = z(Θ), z(Θ) = Θ² this is the toy
    of REFERENCE §2.2 (initialisation (−0.1, 10))."""

    def __init__(self, init: Sequence[float], dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([float(v) for v in init], dtype=dtype))

    def output(self) -> Tensor:
        return torch.prod(self.theta)

    def forward(self, x: Tensor | None = None) -> Tensor:
        out = self.output()
        return out if x is None else out * x


@register("dln")
def dln(depth: int = 2, init: Sequence[float] | None = None, dtype: str = "float64") -> DiagonalLinearNet:
    """``init`` gives θ₁…θ_D (default (−0.1, 10) for D = 2, the paper's toy); ``dtype``
    float64 by default (toys are run in float64)."""
    depth = _positive_int("depth", depth)
    if init is None:
        if depth != 2:
            raise ValueError(f"dln of depth {depth} needs an explicit init of {depth} values")
        init = (-0.1, 10.0)
    init = [float(v) for v in init]
    if len(init) != depth:
        raise ValueError(f"dln init has {len(init)} values for depth {depth}")
    if not all(math.isfinite(v) for v in init):
        raise ValueError(f"dln init must be finite, got {init}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return DiagonalLinearNet(init, dtype=getattr(torch, dtype))


def model_kwargs(name: str) -> dict[str, Any]:
    """The keyword arguments model ``name`` accepts, with their defaults."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return {k: p.default for k, p in inspect.signature(MODELS[name]).parameters.items()}


def build_model(name: str, *, seed: int, **kw: Any) -> nn.Module:
    """Build model ``name`` with its initialisation drawn from ``seed`` (``init`` where the
    builder takes one).

    The draw happens inside ``torch.random.fork_rng`` (CPU generator), so the global RNG
    state is untouched and two calls with the same seed give identical weights.
    Unknown names or keyword arguments raise ``ValueError`` listing what is accepted.
    """
    accepted = model_kwargs(name)
    bad = sorted(set(kw) - set(accepted))
    if bad:
        raise ValueError(f"model {name!r} does not take {bad}; it takes {sorted(accepted)}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        seeding.manual_seed(seed)
        try:
            return MODELS[name](**kw)
        except TypeError as e:  # wrong kinds of values deep inside torch
            raise ValueError(f"model {name!r}: bad arguments {kw}: {e}") from e
