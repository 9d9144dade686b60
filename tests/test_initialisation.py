"""The fMNIST models' initialisation switch (``init`` / ``$INSTAB_INIT``): PyTorch's default draw
left exactly as it was, the author's (Flax) draw with the variance and truncation it promises, the
environment variable honoured only where no ``init`` is given, and the choice in the run key."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from instab_lib.experiments import config as config_mod
from instab_lib.experiments import initialisation, models, seeding


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def test_torch_init_is_pytorchs_own_draw_bit_for_bit(monkeypatch):
    monkeypatch.delenv(initialisation.INIT_ENV, raising=False)
    got = models.build_model("mlp", seed=3, input_dim=784, depth=3, width=32, n_classes=10)
    with torch.random.fork_rng(devices=[]):
        seeding.manual_seed(3)
        ref = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                            nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
    for a, b in zip(got.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)
    explicit = models.build_model("mlp", seed=3, init="torch")
    assert all(torch.equal(a, b) for a, b in zip(got.parameters(), explicit.parameters(), strict=True))


def test_author_init_is_lecun_normal_truncated_with_zero_biases():
    model = models.build_model("mlp", seed=0, input_dim=784, depth=3, width=32, n_classes=10, init="author")
    for lin in _linears(model):
        fan_in = lin.weight.shape[1]
        sigma = math.sqrt(1.0 / fan_in) / initialisation.LECUN_TRUNC_CORRECTION
        w = lin.weight.detach().double()
        assert torch.count_nonzero(lin.bias) == 0
        assert w.abs().max() <= 2 * sigma + 1e-7  # truncated at ±2σ of the underlying normal
        # the variance is 1/fan_in (JAX's correction of the truncation), within 4 standard errors of a
        # sample variance of n values (relative s.e. ≤ √(2/n); 25,088 values in the first layer: ±3.6 %)
        assert abs(w.var().item() * fan_in - 1.0) < 4 * math.sqrt(2 / w.numel())
    # a different draw from PyTorch's (same seed), and deterministic
    torch_model = models.build_model("mlp", seed=0, init="torch")
    assert not torch.equal(_linears(model)[0].weight, _linears(torch_model)[0].weight)
    again = models.build_model("mlp", seed=0, input_dim=784, depth=3, width=32, n_classes=10, init="author")
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters(), strict=True))


def test_the_environment_sets_the_default_and_an_explicit_init_wins(monkeypatch):
    author = models.build_model("linear", seed=1, n_out=2, init="author")
    torch_ = models.build_model("linear", seed=1, n_out=2, init="torch")
    monkeypatch.setenv(initialisation.INIT_ENV, "author")
    assert initialisation.default_init() == "author"
    from_env = models.build_model("linear", seed=1, n_out=2)
    assert torch.equal(from_env[1].weight, author[1].weight) and torch.count_nonzero(from_env[1].bias) == 0
    assert torch.equal(models.build_model("linear", seed=1, n_out=2, init="torch")[1].weight, torch_[1].weight)


@pytest.mark.parametrize("value", ["lecun", "Author", "1"])
def test_a_bad_value_is_one_line_error_before_any_draw(monkeypatch, value):
    monkeypatch.setenv(initialisation.INIT_ENV, value)
    with pytest.raises(ValueError, match=r"INSTAB_INIT must be one of") as e:
        models.build_model("mlp", seed=0)
    assert "\n" not in str(e.value)
    monkeypatch.delenv(initialisation.INIT_ENV)
    with pytest.raises(ValueError, match=r"unknown init 'flax'"):
        models.build_model("mlp", seed=0, init="flax")


def test_the_resolved_init_is_in_the_configuration_and_the_run_key(monkeypatch):
    monkeypatch.delenv(initialisation.INIT_ENV, raising=False)
    c = config_mod.TrainConfig(dataset="fashion-mnist", model="mlp", n_train=100, n_test=0, epochs=1, lr=0.1)
    assert c.resolved_model_kwargs()["init"] == "torch"
    key_torch = config_mod.config_key(c)
    monkeypatch.setenv(initialisation.INIT_ENV, "author")
    assert c.resolved_model_kwargs()["init"] == "author"
    key_author = config_mod.config_key(c)
    assert key_author != key_torch
    # an explicit init in the configuration is not overridden by the environment
    explicit = c.replace(model_kwargs={"init": "torch"})
    assert explicit.resolved_model_kwargs()["init"] == "torch"
