"""The author's CIFAR networks (``instab_lib.experiments.cnn_models``): against the author's Flax modules on
fixed weights (``fixtures/cnn_flax``), parameter counts, Flax's padding and shortcut, BatchNorm's
running statistics, both initialisations' statistics, ``channels_last`` ≡ contiguous."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from instab_lib.experiments.cnn_models import (
    LECUN_TRUNC_CORRECTION,
    FlaxBatchNorm1d,
    FlaxBatchNorm2d,
    ResBlock,
    SameConv2d,
    build_cnn,
    count_parameters,
    resnet20_base8,
    vgg10_base8_bn,
)

pytestmark = pytest.mark.usefixtures("one_thread")

REFERENCE = Path(__file__).parent / "fixtures" / "cnn_flax" / "reference.npz"
ARCHS = ("vgg", "resnet")


# ----------------------------------------------------------------- the Flax reference
def _flax_paths(arch: str) -> list[str]:
    """Flax module paths in the order the author's ``__call__`` creates them (= our layer order)."""
    if arch == "vgg":
        out = [f"VGGBlock_{i}/{kind}_{j}" for i in range(3) for j in range(3) for kind in ("Conv", "BatchNorm")]
        return out + ["Dense_0", "BatchNorm_0", "Dense_1"]
    out = ["Conv_0", "BatchNorm_0"]
    for k in range(9):
        out += [f"ResBlock_{k}/Conv_0", f"ResBlock_{k}/BatchNorm_0", f"ResBlock_{k}/Conv_1", f"ResBlock_{k}/BatchNorm_1"]
    return out + ["Dense_0"]


def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d))]


def _flax_params(model: nn.Module, arch: str) -> list[tuple[str, nn.Parameter, str]]:
    """(Flax parameter path, our parameter, layout) for every parameter."""
    out = []
    for path, layer in zip(_flax_paths(arch), _layers(model), strict=True):
        if isinstance(layer, nn.Conv2d):
            out.append((f"{path}/kernel", layer.weight, "conv"))
        elif isinstance(layer, nn.Linear):
            out.append((f"{path}/kernel", layer.weight, "dense"))
        else:
            out.append((f"{path}/scale", layer.weight, ""))
        if layer.bias is not None:
            out.append((f"{path}/bias", layer.bias, ""))
    return out


def _flax_shape(p: torch.Tensor, layout: str) -> tuple[int, ...]:
    if layout == "conv":  # (out, in, kh, kw) → (kh, kw, in, out)
        return (p.shape[2], p.shape[3], p.shape[1], p.shape[0])
    if layout == "dense":
        return (p.shape[1], p.shape[0])
    return tuple(p.shape)


def _reference_weights(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """``make_reference.weights``, repeated (that file runs under JAX)."""
    rs = np.random.RandomState(0)
    out = {}
    for path in sorted(shapes):
        shape = shapes[path]
        leaf = path.rsplit("/", 1)[1]
        if leaf == "kernel":
            out[path] = (rs.standard_normal(shape) / np.sqrt(int(np.prod(shape[:-1])))).astype(np.float32)
        elif leaf == "scale":
            out[path] = (1.0 + 0.1 * rs.standard_normal(shape)).astype(np.float32)
        else:
            out[path] = (0.1 * rs.standard_normal(shape)).astype(np.float32)
    return out


def _load_reference_weights(model: nn.Module, arch: str) -> list[tuple[str, nn.Parameter, str]]:
    entries = _flax_params(model, arch)
    w = _reference_weights({path: _flax_shape(p, layout) for path, p, layout in entries})
    with torch.no_grad():
        for path, p, layout in entries:
            a = torch.from_numpy(w[path])
            a = a.permute(3, 2, 0, 1) if layout == "conv" else a.T if layout == "dense" else a
            p.copy_(a)
    return entries


def _rel(a: torch.Tensor, b: np.ndarray) -> float:
    b_t = torch.as_tensor(b, dtype=torch.float64)
    return float((a.detach().double() - b_t).abs().max() / b_t.abs().max())


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("arch", ARCHS)
def test_equals_the_authors_flax_module(arch: str, channels_last: bool) -> None:
    """Same weights, same inputs: logits (eval and train mode), BatchNorm running statistics after
    a train-mode call, the gradient and an eval-mode Hessian-vector product, per parameter."""
    ref = np.load(REFERENCE)
    model = build_cnn(arch, seed=0, channels_last=channels_last)
    entries = _load_reference_weights(model, arch)
    assert count_parameters(model) == int(ref[f"{arch}/n_params"])
    x = torch.from_numpy(np.random.RandomState(1).standard_normal((8, 32, 32, 3)).astype(np.float32))
    x = x.permute(0, 3, 1, 2).contiguous()
    y = torch.arange(8) % 10

    model.eval()
    assert _rel(model(x), ref[f"{arch}/logits_eval0"]) < 1e-4
    model.train()
    ps = list(model.parameters())
    logits = model(x)  # train mode: batch statistics; the running statistics are updated once
    assert _rel(logits, ref[f"{arch}/logits_train"]) < 1e-4
    loss = F.cross_entropy(logits, y)
    grads = dict(zip(map(id, ps), torch.autograd.grad(loss, ps)))
    for path, layer in zip(_flax_paths(arch), _layers(model)):
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            assert _rel(layer.running_mean, ref[f"{arch}/stats/{path}/mean"]) < 1e-4, path
            assert _rel(layer.running_var, ref[f"{arch}/stats/{path}/var"]) < 1e-5, path
    model.eval()
    assert _rel(model(x), ref[f"{arch}/logits_eval1"]) < 1e-4
    g = torch.autograd.grad(F.cross_entropy(model(x), y), ps, create_graph=True)
    hv = dict(zip(map(id, ps), torch.autograd.grad(g, ps, grad_outputs=[torch.ones_like(p) for p in ps])))
    g_scale = max(float(ref[f"{arch}/grad_norm/{path}"]) for path, _, _ in entries)
    h_scale = max(float(ref[f"{arch}/hvp_norm/{path}"]) for path, _, _ in entries)
    for path, p, _ in entries:
        # biases in front of a train-mode BN have a zero gradient: compare on the largest norm's scale
        assert abs(float(grads[id(p)].norm()) - float(ref[f"{arch}/grad_norm/{path}"])) < 1e-4 * g_scale, path
        assert abs(float(hv[id(p)].norm()) - float(ref[f"{arch}/hvp_norm/{path}"])) < 1e-3 * h_scale, path


def test_flax_reference_is_not_trivially_matched() -> None:
    """The comparison detects PyTorch's own padding of the strided convolutions."""
    ref = np.load(REFERENCE)
    model = build_cnn("resnet", seed=0)
    _load_reference_weights(model, "resnet")
    for m in model.modules():
        if isinstance(m, SameConv2d) and m.stride == (2, 2):
            m._symmetric, m.padding = True, (1, 1)
    x = torch.from_numpy(np.random.RandomState(1).standard_normal((8, 32, 32, 3)).astype(np.float32))
    assert _rel(model.eval()(x.permute(0, 3, 1, 2)), ref["resnet/logits_eval0"]) > 1e-2


# ----------------------------------------------------------------------- structure
def test_parameter_counts_and_shapes() -> None:
    x = torch.randn(3, 3, 32, 32)
    v, r = vgg10_base8_bn(), resnet20_base8()
    assert v(x).shape == (3, 10) and r(x).shape == (3, 10)
    # convs 3·3·c_in·c_out + c_out; BN 2c; dense 512·4+4, BN 8, 4·10+10 (Flax: 32,782)
    assert count_parameters(v) == 32_782
    assert v.dense1.in_features == 4 * 4 * 32 and v.dense1.out_features == 4
    # stem 216 + BN 16; 6·576, 1,152 + 5·2,304, 4,608 + 5·9,216 (no conv biases); BN 672; dense 330
    assert count_parameters(r) == 68_050
    assert all(m.bias is None for m in r.modules() if isinstance(m, nn.Conv2d))
    assert all(m.bias is not None for m in v.modules() if isinstance(m, nn.Conv2d))
    assert sum(isinstance(m, nn.Conv2d) for m in r.modules()) == 19
    assert vgg10_base8_bn(n_classes=2, image_size=16)(torch.randn(2, 3, 16, 16)).shape == (2, 2)


def test_strided_conv_pads_like_flax() -> None:
    """'SAME' at stride 2 on an even side: 0 before, 1 after, so output (i, j) sees input rows
    2i…2i+2: a kernel with only its top-left tap set returns x[2i, 2j]."""
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(conv(x), x[:, :, ::2, ::2])
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 2, 2] = 1.0  # bottom-right tap: x[2i+2, 2j+2], zero past the edge
    out = conv(x)
    assert torch.equal(out[:, :, :3, :3], x[:, :, 2::2, 2::2])
    assert torch.all(out[:, :, 3, :] == 0) and torch.all(out[:, :, :, 3] == 0)


def test_shortcut_subsamples_and_pads_channels_on_both_sides() -> None:
    block = ResBlock(8, 16, stride=2)
    with torch.no_grad():  # the body's last BN outputs 0, so the block returns ReLU(shortcut)
        bn = block.body[4]
        bn.weight.zero_()
        bn.bias.zero_()
    x = torch.rand(2, 8, 8, 8)
    out = block(x)
    assert out.shape == (2, 16, 4, 4)
    assert torch.equal(out[:, 4:12], x[:, :, ::2, ::2])
    assert torch.all(out[:, :4] == 0) and torch.all(out[:, 12:] == 0)
    with pytest.raises(ValueError, match="identity shortcut"):
        ResBlock(8, 16, stride=1)


@pytest.mark.parametrize("cls, shape", [(FlaxBatchNorm2d, (16, 5, 4, 4)), (FlaxBatchNorm1d, (16, 5))])
def test_batchnorm_is_flax_default(cls: type, shape: tuple[int, ...]) -> None:
    """Flax momentum 0.99, eps 1e-5: running mean ← 0.99·0 + 0.01·mean, running var ← 0.99·1 +
    0.01·(biased variance); eval mode normalises by the running statistics."""
    bn = cls(5)
    assert bn.eps == 1e-5 and bn.momentum == 0.01
    x = 3.0 + 2.0 * torch.randn(*shape, dtype=torch.float64)
    bn = bn.double()
    bn.train()
    out = bn(x)
    dims = (0, 2, 3) if x.dim() == 4 else (0,)
    mean, var = x.mean(dims), x.var(dims, unbiased=False)
    torch.testing.assert_close(bn.running_mean, 0.01 * mean)
    torch.testing.assert_close(bn.running_var, 0.99 + 0.01 * var)
    view = (1, -1, 1, 1) if x.dim() == 4 else (1, -1)
    torch.testing.assert_close(out, (x - mean.view(view)) / torch.sqrt(var.view(view) + 1e-5))
    out.sum().backward()  # the buffers' update leaves autograd intact
    bn.eval()
    torch.testing.assert_close(bn(x), (x - bn.running_mean.view(view)) / torch.sqrt(bn.running_var.view(view) + 1e-5))


# ----------------------------------------------------------------- initialisations
def _kernels(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _biases(model: nn.Module) -> list[torch.Tensor]:
    return [m.bias for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None]


@pytest.mark.parametrize("arch", ARCHS)
def test_author_init_is_flax_lecun_normal(arch: str) -> None:
    """Kernels: N(0, 1/fan_in) truncated at ±2σ̃ with σ̃ = √(1/fan_in)/0.8796 (variance exactly
    1/fan_in after truncation); biases 0; BN scale 1, bias 0."""
    model = build_cnn(arch, seed=3, init="author")
    z = torch.cat([(w.detach() * math.sqrt(w[0].numel())).flatten() for w in _kernels(model)]).double()
    bound = 2.0 / LECUN_TRUNC_CORRECTION  # 2.2737 in units of √(1/fan_in)
    assert z.abs().max() <= bound + 1e-5 and z.abs().max() > 0.98 * bound
    n = z.numel()  # ≈ 32.7k / 67.7k: the variance's standard error is ≈ 0.006 / 0.004
    assert abs(float(z.var()) - 1.0) < 0.03 and abs(float(z.mean())) < 4 / math.sqrt(n)
    # a truncated normal, not a uniform: kurtosis ≈ 2.37 (uniform 1.8, normal 3)
    assert 2.2 < float((z**4).mean() / z.var() ** 2) < 2.55
    assert all(torch.all(b == 0) for b in _biases(model))
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
            assert torch.all(m.running_mean == 0) and torch.all(m.running_var == 1)


@pytest.mark.parametrize("arch", ARCHS)
def test_torch_init_is_kaiming_uniform(arch: str) -> None:
    """PyTorch's defaults: kernels and biases U(−1/√fan_in, 1/√fan_in) (variance 1/(3·fan_in))."""
    model = build_cnn(arch, seed=3, init="torch")
    z = torch.cat([(w.detach() * math.sqrt(w[0].numel())).flatten() for w in _kernels(model)]).double()
    assert z.abs().max() <= 1.0 + 1e-6 and z.abs().max() > 0.999
    assert abs(float(z.var()) - 1 / 3) < 0.01
    assert 1.7 < float((z**4).mean() / z.var() ** 2) < 1.9
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            assert torch.all(m.bias.abs() <= 1 / math.sqrt(m.weight[0].numel()) + 1e-7)
            assert torch.any(m.bias != 0)


def test_seeding_is_deterministic_and_leaves_the_global_generator() -> None:
    torch.manual_seed(5)
    state = torch.get_rng_state()
    a, b, c = (build_cnn("vgg", seed=s) for s in (1, 1, 2))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    t = build_cnn("vgg", seed=1, init="torch")
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), t.parameters()))


# --------------------------------------------------------------------- memory format
@pytest.mark.parametrize("arch", ARCHS)
def test_channels_last_equals_contiguous(arch: str) -> None:
    """Same weights for the same seed; outputs (train and eval mode), gradients and running
    statistics equal to float32 rounding."""
    a = build_cnn(arch, seed=0)
    b = build_cnn(arch, seed=0, channels_last=True)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in b.parameters())
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % 10
    for model in (a, b):
        model.train()
    la, lb = a(x), b(x)
    la_d, lb_d = la.detach(), lb.detach()
    torch.testing.assert_close(lb_d, la_d, rtol=1e-4, atol=1e-4 * float(la_d.abs().max()))
    ga = torch.autograd.grad(F.cross_entropy(la, y), list(a.parameters()))
    gb = torch.autograd.grad(F.cross_entropy(lb, y), list(b.parameters()))
    scale = max(float(g.abs().max()) for g in ga)
    # a ReLU input within rounding of 0 can flip with the summation order: contiguous float32
    # itself differs from float64 by up to 1.2e-3 of the largest gradient on some inputs
    assert max(float((g - h).abs().max()) for g, h in zip(ga, gb)) < 5e-3 * scale
    for ma, mb in zip(a.modules(), b.modules()):
        if isinstance(ma, nn.modules.batchnorm._BatchNorm):
            torch.testing.assert_close(mb.running_var, ma.running_var, rtol=1e-5, atol=1e-6)
    a.eval(), b.eval()
    with torch.no_grad():
        ea, eb = a(x), b(x)
    torch.testing.assert_close(eb, ea, rtol=1e-4, atol=1e-4 * float(ea.abs().max()))
    b.set_channels_last(False)
    assert all(p.is_contiguous() for p in b.parameters())


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown architecture 'vit'"):
        build_cnn("vit")
    with pytest.raises(ValueError, match="unknown init 'xavier'"):
        build_cnn("vgg", init="xavier")
    with pytest.raises(ValueError, match="seed must be an integer"):
        build_cnn("resnet", seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="too small"):
        vgg10_base8_bn(image_size=4)
