"""Models: parameter counts, shapes, deterministic seeded initialisation, errors."""

from __future__ import annotations

import pytest
import torch

from instab_lib.experiments.models import build_model, count_parameters


def test_fmnist_mlp_has_27562_parameters():
    m = build_model("mlp", seed=0, input_dim=784, depth=3, width=32)
    assert count_parameters(m) == 27_562
    assert m(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_linear_control():
    m = build_model("linear", seed=0, n_out=2)
    assert count_parameters(m) == 1_570
    assert m(torch.zeros(3, 784)).shape == (3, 2)


def test_cnns_shapes_and_counts():
    x = torch.randn(4, 3, 32, 32)
    v = build_model("vgg", seed=0)
    assert v(x).shape == (4, 10)
    assert 30_000 < count_parameters(v) < 36_000  # ≈ 33k (REFERENCE §4.2)
    r = build_model("resnet20", seed=0)
    assert r(x).shape == (4, 10)
    # stem 232 + stages 3,552 + 12,864 + 51,072 (convs without bias, BN γ/β) + fc 330
    assert count_parameters(r) == 68_050
    assert count_parameters(v) == 32_782


def test_dln():
    m = build_model("dln", seed=0)
    assert m.theta.dtype == torch.float64 and m.theta.tolist() == [-0.1, 10.0]
    assert torch.isclose(m(), torch.tensor(-1.0, dtype=torch.float64))
    m3 = build_model("dln", seed=0, depth=3, init=[1.0, 2.0, 3.0])
    assert m3().item() == 6.0 and m3(torch.tensor([2.0], dtype=torch.float64)).item() == 12.0
    with pytest.raises(ValueError, match="explicit init"):
        build_model("dln", seed=0, depth=3)
    with pytest.raises(ValueError, match="values for depth"):
        build_model("dln", seed=0, depth=2, init=[1.0])


def test_seeded_init_is_deterministic_and_side_effect_free():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_model("mlp", seed=7)
    b = build_model("mlp", seed=7)
    c = build_model("mlp", seed=8)
    assert torch.equal(torch.get_rng_state(), before)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_errors():
    with pytest.raises(ValueError, match="unknown model 'vit'"):
        build_model("vit", seed=0)
    with pytest.raises(ValueError, match="does not take"):
        build_model("mlp", seed=0, hidden=3)
    with pytest.raises(ValueError, match="activation"):
        build_model("mlp", seed=0, activation="swish")
    with pytest.raises(ValueError, match="width"):
        build_model("mlp", seed=0, width=0)
    with pytest.raises(ValueError, match="seed"):
        build_model("mlp", seed=1.5)
