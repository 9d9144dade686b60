"""instab_lib.experiments.dln against PyTorch autograd (float64) and REFERENCE §8.1's numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instab_lib.experiments import dln

RNG = np.random.default_rng(0)


def _points(depth: int, n: int = 10) -> list[np.ndarray]:
    return [RNG.uniform(0.3, 1.7, size=depth) * RNG.choice([-1.0, 1.0], size=depth) for _ in range(n)]


def _torch_loss(link: str):
    return (lambda v: torch.prod(v) ** 2) if link == "square" else (lambda v: torch.prod(v) ** 4)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("link", ["square", "quartic"])
def test_gradient_and_hessian_match_autograd(depth, link):
    f = _torch_loss(link)
    for th in _points(depth):
        t = torch.tensor(th, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(f(t), t)
        H = torch.autograd.functional.hessian(f, t.detach()).numpy()
        np.testing.assert_allclose(dln.gradient(th, link), g.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dln.hessian(th, link), H, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_pair_and_output_multipliers_match_one_autograd_step(depth):
    for th in _points(depth):
        eta = float(RNG.uniform(0.01, 0.3))
        t = torch.tensor(th, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(torch.prod(t) ** 2, t)
        new = (t - eta * g).detach().numpy()
        assert np.prod(new) / np.prod(th) == pytest.approx(dln.output_multiplier(th, eta), rel=1e-11, abs=1e-12)
        for i in range(depth):
            for j in range(i + 1, depth):
                ratio = (new[i] ** 2 - new[j] ** 2) / (th[i] ** 2 - th[j] ** 2)
                assert ratio == pytest.approx(dln.pair_difference_multiplier(th, eta, i, j), rel=1e-9, abs=1e-11)


def test_output_multiplier_special_cases():
    # D = 1, z = Θ²: Θ'/Θ = 1 − 2η; D = 2: γ_Θ of REFERENCE §2.2
    assert dln.output_multiplier([0.7], 0.1) == pytest.approx(0.8, rel=1e-14)
    th = np.array([-0.1, 10.0])
    for eta in (0.001, 0.011, 0.02):
        assert dln.output_multiplier(th, eta) == pytest.approx(float(dln.gamma_theta(th, eta)), rel=1e-13)
    with pytest.raises(ValueError):
        dln.output_multiplier([0.0, 1.0], 0.1)


def test_top_eigenvector_angles():
    v = np.array([[1.0, 0.0], [np.cos(0.3), np.sin(0.3)], [-1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(dln.top_eigenvector_angles(v), [0.0, 0.3, 0.0, np.pi / 2], atol=1e-12)
    assert np.all(dln.top_eigenvector_angles(np.ones((5, 1))) == 0)


def test_run_gd_final_matches_run_gd():
    etas = [0.001, 0.011, 0.015, 0.02, 0.2]
    th, div = dln.run_gd_final([-0.1, 10.0], etas, 600)
    for k, eta in enumerate(etas):
        tr = dln.run_gd([-0.1, 10.0], eta, 600)
        if tr.diverged:
            assert div[k] == tr.diverged_step and np.all(np.isnan(th[k]))
        else:
            assert div[k] == -1
            np.testing.assert_allclose(th[k], tr.theta[-1], rtol=1e-12, atol=1e-300)


def test_reference_8_1_numbers():
    """REFERENCE §8.1: L = θ₁²θ₂² from (−0.1, 10), 5000 GD steps, float64."""
    th0 = [-0.1, 10.0]
    assert 2 / dln.spectrum(th0).sharpness == pytest.approx(0.009996, abs=5e-7)
    ev = dln.spectrum(th0).eigenvalues
    assert ev[0] == pytest.approx(200.080, abs=5e-4) and ev[1] == pytest.approx(-0.060, abs=5e-4)
    expected = {0.001: (9.9994, 199.98), 0.009: (9.9950, 199.80), 0.0099: (9.963, 198.52),
                0.0101: (9.862, 194.51), 0.011: (8.962, 160.62), 0.015: (2.736, 14.97)}
    th, div = dln.run_gd_final(th0, list(expected), 5000)
    for (eta, (t2, S)), row, dv in zip(expected.items(), th, div):
        assert dv == -1
        assert abs(row[1] - t2) <= 5e-4
        assert abs(dln.spectrum(row).sharpness - S) <= 5e-3
    _, div = dln.run_gd_final(th0, [0.02, 0.2], 5000)
    assert abs(div[0] - 14) <= 1 and abs(div[1] - 3) <= 1
    # γ_β at the start and the minimum consecutive cosines over 400 steps
    assert [float(dln.gamma_beta(np.array(th0), e)) for e in (0.001, 0.009, 0.011)] == pytest.approx(
        [1.2500, 1.2498, 0.8331], abs=1e-4)
    for eta, cmin, step in ((0.009, 0.9994, None), (0.011, 0.955, 14), (0.015, 0.302, 6)):
        tr = dln.run_gd(th0, eta, 400)
        cos = dln.consecutive_abs_cosines(tr.top)
        assert abs(cos.min() - cmin) <= (5e-5 if cmin > 0.99 else 5e-4)
        if step is not None:
            assert int(np.argmin(cos)) == step


def test_author_rms_step_is_the_cells_recurrence():
    """dln.run_author_rms against a direct transcription of the recurrence of the author's B Fig 3 cell."""
    theta, rms = np.array([-0.1, 10.0]), np.zeros(2)
    for _ in range(50):
        g = np.array([2 * theta[0] * theta[1] ** 2, 2 * theta[0] ** 2 * theta[1]])
        rms = 0.9 * rms + 0.1 * g * g
        theta = theta - 20 * 0.011 / np.sqrt(rms + 1e-8) * g
    tr = dln.run_author_rms([-0.1, 10.0], 0.011, 50)
    assert np.allclose(tr.theta[-1], theta, rtol=1e-12, atol=1e-15) and not tr.diverged
    assert np.allclose(tr.extra["rms"], rms, rtol=1e-12)
