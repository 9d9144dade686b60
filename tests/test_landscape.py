"""slices, directional derivatives, N_eff (neff) and episodes against closed forms (float64)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from instab_lib import curvature
from instab_lib.experiments import effective_parameters, episodes, landscape
from instab_lib.experiments.models import build_model

A = torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, -1.0]], dtype=torch.float64)
B = torch.tensor([0.7, -1.2, 0.4], dtype=torch.float64)
C = torch.tensor([2.0, 0.5, -3.0], dtype=torch.float64)


@pytest.fixture(autouse=True)
def _float64():
    """Every test here in float64; the global default is restored afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def poly(theta):
    """½θᵀAθ + Σ bθ³/6 + Σ cθ⁴/24: every directional derivative has a closed form."""
    return 0.5 * theta @ A @ theta + (B * theta ** 3).sum() / 6 + (C * theta ** 4).sum() / 24


def poly_derivs(theta, u):
    d1 = float((A @ theta + 0.5 * B * theta ** 2 + C * theta ** 3 / 6) @ u)
    d2 = float(u @ A @ u + ((B * theta + 0.5 * C * theta ** 2) * u ** 2).sum())
    d3 = float(((B + C * theta) * u ** 3).sum())
    d4 = float((C * u ** 4).sum())
    return d1, d2, d3, d4


def test_directional_derivatives_polynomial_exact():
    theta = torch.tensor([0.3, -0.8, 1.1])
    d = torch.tensor([1.0, 2.0, -0.5])
    u = d / d.norm()
    out = landscape.directional_derivatives(poly, theta, d, h=0.1)  # c(s) is quadratic: FD exact for any h
    for name, ref in zip(("D1", "D2", "D3", "D4"), poly_derivs(theta, u)):
        assert out[name] == pytest.approx(ref, rel=1e-9, abs=1e-9), name


def test_directional_derivatives_dln():
    """L = θ₁²θ₂² (the DLN, z = Θ²): L(θ+su) is a quartic in s with L'''' = 24 u₁²u₂²."""
    f = lambda t: t[0] ** 2 * t[1] ** 2  # noqa: E731
    theta = torch.tensor([-0.1, 10.0])
    u = torch.tensor([0.6, 0.8])
    out = landscape.directional_derivatives(f, theta, u)
    t1, t2, u1, u2 = -0.1, 10.0, 0.6, 0.8
    # H = [[2θ₂², 4θ₁θ₂], [4θ₁θ₂, 2θ₁²]]
    assert out["D2"] == pytest.approx(2 * t2 ** 2 * u1 ** 2 + 8 * t1 * t2 * u1 * u2 + 2 * t1 ** 2 * u2 ** 2, rel=1e-12)
    # third derivative of (t1+su1)²(t2+su2)² at s=0: 12 u1 u2 (t1 u2 + t2 u1)
    assert out["D3"] == pytest.approx(12 * u1 * u2 * (t1 * u2 + t2 * u1), rel=1e-6)
    assert out["D4"] == pytest.approx(24 * u1 ** 2 * u2 ** 2, rel=1e-5)
    assert out["D1"] == pytest.approx(2 * t1 * t2 ** 2 * u1 + 2 * t1 ** 2 * t2 * u2, rel=1e-12)


def test_point_hessian_matches_dense_and_solvers_accept_it():
    theta = torch.tensor([0.3, -0.8, 1.1])
    op = landscape.PointHessian(poly, theta)
    H = torch.autograd.functional.hessian(poly, theta)
    Hc = A + torch.diag(B * theta + 0.5 * C * theta ** 2)
    assert torch.allclose(H, Hc, atol=1e-12)
    assert torch.allclose(op.matmat(torch.eye(3)), Hc, atol=1e-12)
    r = curvature.lanczos(op, 1, which="LA", tol=1e-10)
    assert float(r.eigenvalues[0]) == pytest.approx(float(torch.linalg.eigvalsh(Hc)[-1]), rel=1e-9)
    assert op.loss == pytest.approx(float(poly(theta)))


def test_slice_quadratic_closed_form():
    """On L = ½θᵀDθ with D diagonal: loss along the line, constant curvature uᵀDu,
    λ_max(D) by Lanczos, and Hutchinson's tr(D) with zero variance (Rademacher probes on a
    diagonal matrix are exact)."""
    D = torch.diag(torch.tensor([5.0, 2.0, 1.0, 0.5, -0.25]))
    f = lambda t: 0.5 * t @ D @ t  # noqa: E731
    theta = torch.tensor([1.0, -1.0, 0.5, 2.0, 0.0])
    d = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0])
    u = d / d.norm()
    offs = np.linspace(-1, 2, 7)
    sl = landscape.slice_along(f, theta, d, offs, lanczos=True, hutchinson_samples=4, tol=1e-10)
    ref_loss = [float(f(theta + s * u)) for s in offs]
    assert np.allclose(sl.loss, ref_loss, atol=1e-12)
    assert np.allclose(sl.curvature, float(u @ D @ u), atol=1e-12)
    assert np.allclose(sl.lanczos, 5.0, atol=1e-8)
    assert np.allclose(sl.hutch, float(torch.diag(D).sum()), atol=1e-12)
    assert np.allclose(sl.hutch_se, 0.0, atol=1e-12)


def test_slice_hutchinson_power_bounds_lambda_max():
    """tr(Hᵖ)^{1/p} ≥ λ_max for even p and approaches it (here with exact probes: the basis)."""
    lam = torch.tensor([4.0, 3.0, 1.0, 0.1])
    Q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(0)))
    H = Q @ torch.diag(lam) @ Q.T
    f = lambda t: 0.5 * t @ H @ t  # noqa: E731
    sl = landscape.slice_along(f, torch.zeros(4), torch.ones(4), [0.0], lanczos=False,
                               hutchinson_samples=4000, hutchinson_power=8, seed=1)
    exact = float((lam ** 8).sum() ** (1 / 8))
    assert exact >= 4.0
    assert sl.hutch[0] == pytest.approx(exact, rel=0.05)
    assert math.isnan(sl.lanczos[0])


def test_n_eff_from_slq_against_the_eigenvalues():
    # SLQ is exact when the Hessian has ≤ order distinct eigenvalues: Σ λ/(λ+α) = 2·10/11 + 5·1/2
    alpha = 1.0
    ev = torch.tensor([10.0] * 2 + [1.0] * 5 + [0.0] * 13)
    Q, _ = torch.linalg.qr(torch.randn(20, 20, generator=torch.Generator().manual_seed(3)))
    op = curvature.MatrixOperator(Q @ torch.diag(ev) @ Q.T)
    nodes, weights = curvature.slq_density(op, n_probes=64, order=6, seed=0)
    est, se = effective_parameters.n_eff_from_slq(nodes, weights, 20, alpha)
    assert est == pytest.approx(2 * 10 / 11 + 5 * 0.5, abs=4 * se + 1e-9)
    with pytest.raises(ValueError):
        effective_parameters.n_eff_from_slq(nodes, weights, 20, 0.0)


def _table(S, lr=0.1):
    e = np.arange(len(S))
    return pd.DataFrame({"epoch": e, "lr": lr, "sharpness": np.asarray(S, dtype=float)})


def test_find_episodes():
    S = [5, 10, 19, 21, 25, 22, 18, 15, 21, 19, 21, 23, 12, np.nan, 10]
    eps = episodes.find_episodes(_table(S))  # 2/η = 20
    assert [(e.start, e.end, e.peak) for e in eps] == [(3, 5, 4), (8, 8, 8), (10, 11, 11)]
    assert eps[0].last_stable == 2 and eps[0].resolved == 6 and eps[0].peak_value == 25
    assert eps[2].resolved == 12 and eps[2].length == 2
    merged = episodes.find_episodes(_table(S), merge_gap=1)
    assert [(e.start, e.end) for e in merged] == [(3, 5), (8, 11)]
    assert [(e.start, e.end) for e in episodes.find_episodes(_table(S), min_length=2)] == [(3, 5), (10, 11)]
    assert episodes.find_episodes(_table([1, 2, 3])) == []
    last = episodes.find_episodes(_table([1, 30, 30]))[0]
    assert last.last_stable == 0 and last.resolved is None


def test_network_loss_matches_model_and_dense_hessian():
    model = build_model("mlp", seed=0, input_dim=6, n_classes=3, depth=2, width=4).double()
    X = torch.randn(20, 6, generator=torch.Generator().manual_seed(0))
    y = torch.arange(20) % 3
    f = landscape.network_loss(model, F.cross_entropy, X, y, chunk=7)
    theta = curvature.flatten([p.detach() for p in model.parameters()])
    assert float(f(theta).detach()) == pytest.approx(float(F.cross_entropy(model(X), y).detach()), rel=1e-12)
    Hd = curvature.dense_hessian(model, F.cross_entropy, (X, y))
    op = landscape.PointHessian(f, theta)
    assert torch.allclose(op.matmat(torch.eye(op.dim)), Hd, atol=1e-10)


def test_unit():
    with pytest.raises(ValueError):
        landscape.unit(torch.zeros(3))


def test_find_spikes():
    loss = [2.0, 1.8, 1.6, 1.5, 1.6, 1.9, 1.4, 1.3, 1.29, 1.35, 1.2, 1.1]
    t = pd.DataFrame({"epoch": np.arange(len(loss)), "train_loss": loss})
    sp = episodes.find_spikes(t, rel=0.02, window=3)
    assert [(e.start, e.end, e.peak, e.last_stable, e.resolved) for e in sp] == [(4, 5, 5, 3, 6), (9, 9, 9, 8, 10)]
    assert sp[0].peak_value == 1.9
    assert episodes.find_spikes(t, rel=0.3, window=3) == []


def test_resolved_spikes_drops_short_and_unresolved():
    # spikes at 4–5 (length 2, resolves), 9 (length 1, resolves) and 12–13 (length 2, run ends inside it)
    loss = [2.0, 1.8, 1.6, 1.5, 1.6, 1.9, 1.4, 1.3, 1.29, 1.35, 1.2, 1.1, 1.3, 1.4]
    t = pd.DataFrame({"epoch": np.arange(len(loss)), "train_loss": loss})
    spans = lambda sp: [(e.start, e.end) for e in sp]  # noqa: E731
    assert spans(episodes.find_spikes(t, rel=0.02, window=3)) == [(4, 5), (9, 9), (12, 13)]
    assert spans(episodes.resolved_spikes(t, rel=0.02, window=3)) == [(4, 5), (9, 9)]
    assert spans(episodes.resolved_spikes(t, rel=0.02, window=3, min_length=2)) == [(4, 5)]


def _fake_run(S0=2.5, acc=0.9):
    from types import SimpleNamespace

    table = pd.DataFrame({"epoch": [0, 1, 2], "sharpness": [S0, 3.0, 4.0], "train_acc": [0.1, 0.5, acc]})
    return SimpleNamespace(table=table, data_source="fake copy", status="finished", config=None)


def test_run_loss_is_the_training_loss_of_the_run(fake_fmnist):
    from instab_lib.experiments import data as data_mod
    from instab_lib.experiments.train import TrainConfig

    cfg = TrainConfig(data_dir=fake_fmnist, n_train=50, n_test=10, model_kwargs={"depth": 1, "width": 4}, seed=2)
    torch.set_default_dtype(torch.float32)  # the dtype training uses
    f = landscape.run_loss(cfg)
    model = build_model(cfg.model, seed=cfg.seed, **cfg.resolved_model_kwargs())
    ds = data_mod.load_dataset(cfg.dataset, n_train=50, n_test=10, data_dir=fake_fmnist)
    theta = curvature.flatten([p.detach() for p in model.parameters()])
    assert f.dim == theta.numel()
    assert float(f(theta).detach()) == pytest.approx(float(F.cross_entropy(model(ds.X_train), ds.y_train).detach()), rel=1e-6)
    from types import SimpleNamespace
    assert float(landscape.run_loss(SimpleNamespace(config=cfg))(theta)) == pytest.approx(float(f(theta)), rel=1e-12)


def test_mechanism_spikes_by_height():
    from instab_lib.experiments import mechanism

    loss = [5, 4, 3, 2, 1, 1.05, 1.04, 0.9, 0.8, 1.5, 1.6, 0.7, 0.6, 0.5]
    t = pd.DataFrame({"epoch": range(len(loss)), "train_loss": loss})
    every = mechanism.spikes(t, rel=0.02, window=3)
    big = mechanism.spikes(t, rel=0.02, window=3, min_height=1.1)
    assert [(s.start, s.end) for s in every] == [(5, 6), (9, 10)]
    assert [(s.start, s.end) for s in big] == [(9, 10)]


def test_between_spikes_bounds_each_spike_by_its_neighbours():
    from instab_lib.experiments import mechanism

    def ep(a, b):
        return episodes.Episode(a, b, a, 1.0, a - 1, b + 1)

    got = mechanism.between_spikes([ep(20, 22), ep(5, 6), ep(40, 41)], first=0, last=99)
    assert [(s.spike.start, s.after_previous, s.before_next) for s in got] == [(5, 0, 19), (20, 7, 39), (40, 23, 99)]
    assert mechanism.between_spikes([ep(5, 6)], 3, 10) == [mechanism.Stretch(ep(5, 6), 3, 10)]
    assert mechanism.between_spikes([], 0, 10) == []
    with pytest.raises(ValueError, match="overlap"):
        mechanism.between_spikes([ep(5, 9), ep(8, 12)], 0, 20)
    with pytest.raises(ValueError, match="before the first"):
        mechanism.between_spikes([], 10, 0)
