"""instab_lib.experiments.toys against closed forms (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from instab_lib import optim
from instab_lib.experiments import dln, toys


def _rotation(a: float) -> np.ndarray:
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def test_quadratic_loss_grad_hessian():
    q = toys.quadratic([20.0, 1.0], _rotation(0.4), [0.5, -1.0])
    w = np.array([1.3, 0.2])
    d = w - q.minimum
    assert q.loss(w) == pytest.approx(0.5 * d @ q.hessian @ d, rel=1e-14)
    np.testing.assert_allclose(q.grad(w), q.hessian @ d, rtol=1e-14)
    np.testing.assert_allclose(np.linalg.eigvalsh(q.hessian), [1.0, 20.0], rtol=1e-13)
    assert q.smoothness == 20.0
    with pytest.raises(ValueError):
        toys.quadratic([1.0, -1.0])
    with pytest.raises(ValueError):
        toys.quadratic([1.0, 2.0], np.ones((2, 2)))


def test_gd_iterates_equal_closed_form():
    q = toys.quadratic([20.0, 1.0], _rotation(0.3), [0.1, 0.2])
    for eta in (0.05, 0.0999, 0.11):
        it = toys.quadratic_gd(q, [1.0, 1.0], eta, 50)
        cf = toys.quadratic_gd_closed_form(q, [1.0, 1.0], eta, 50)
        np.testing.assert_allclose(it, cf, rtol=1e-9, atol=1e-12)
        # eigen-coordinates are multiplied by (1 − ηλ) each step
        c = q.coords(it)
        np.testing.assert_allclose(c[1:], c[:-1] * (1 - eta * q.eigenvalues), rtol=1e-9, atol=1e-13)


def test_descent_lemma_bound_and_exact_slack():
    q = toys.quadratic([20.0, 1.0])
    for eta in (0.02, 0.08, 0.0999, 0.12):
        w = toys.quadratic_gd(q, [1.0, 1.0], eta, 30)
        loss, g = q.loss(w), q.grad(w)
        bound = toys.descent_lemma_bound(loss[:-1], np.sum(g[:-1] ** 2, axis=1), eta, q.smoothness)
        slack = toys.descent_lemma_slack_exact(q, w[:-1], eta)
        np.testing.assert_allclose(bound - loss[1:], slack, rtol=1e-9, atol=1e-12 * np.max(np.abs(bound)))
        assert np.all(slack >= 0)
        if eta < 2 / q.smoothness:
            assert np.all(np.diff(loss) < 0)
        else:
            assert loss[-1] > loss[0]


def test_geometric_rate():
    assert toys.geometric_rate(3.0 * (-1.3) ** np.arange(20)) == pytest.approx(1.3, rel=1e-12)
    assert toys.geometric_rate(0.5 ** np.arange(10)) == pytest.approx(0.5, rel=1e-12)
    with pytest.raises(ValueError):
        toys.geometric_rate([1.0, 0.0, 1.0])


def test_run_optimizer_gd_closed_form_and_reference_toy():
    # GD on S/2 w²: w_t = (1 − ηS)^t w₀
    w = toys.run_optimizer(optim.gd(1.0), [0.1], toys.quadratic_1d_grad(2.3), 100)[:, 0]
    np.testing.assert_allclose(w, 0.1 * (1 - 2.3) ** np.arange(101), rtol=1e-12)
    # REFERENCE §5.2(a): RMS-LB 4.8 / 1.5e-15 and RMS-UB ≈ 1e4 / 0.5
    for S, lb, ub in ((2.3, 4.8, None), (1.9, 1.5e-15, 0.5)):
        kw = dict(beta2=0.9, nu_init=(S * 0.1) ** 2, bias_correction=False)
        wl = toys.run_optimizer(optim.clipped_ada(10.0, 11.0, mode="LB", beta1=0.0, **kw), [0.1],
                                toys.quadratic_1d_grad(S), 100)[-1, 0]
        assert abs(wl) == pytest.approx(lb, rel=0.05)
        wu = toys.run_optimizer(optim.clipped_ada(1.0, 1.1, beta1=0.0, **kw), [0.1], toys.quadratic_1d_grad(S), 100)
        if ub is None:
            assert 1e4 <= abs(wu[-1, 0]) <= 2e4
        else:
            assert abs(wu[-1, 0]) == pytest.approx(ub, abs=0.05)


def test_dln_grad_matches_closed_form_and_gd():
    for th in ([-0.1, 10.0], [0.3, -1.2, 0.7]):
        p = [torch.tensor(v, dtype=torch.float64) for v in th]
        np.testing.assert_allclose([g.item() for g in toys.dln_grad(p)], dln.gradient(th), rtol=1e-14)
    path = toys.run_optimizer(optim.gd(0.011), [-0.1, 10.0], toys.dln_grad, 10)
    np.testing.assert_allclose(path, dln.run_gd([-0.1, 10.0], 0.011, 10).theta, rtol=1e-12)
    # REFERENCE §5.2(b): GD θ₁ → −0.54, θ₂ → 9.83, loss 28.4
    assert path[-1, 0] == pytest.approx(-0.54, abs=5e-3) and path[-1, 1] == pytest.approx(9.83, abs=5e-3)
