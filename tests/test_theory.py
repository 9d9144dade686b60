"""instab_lib.experiments.theory: definitions, the coupled model's closed-form pieces, exact bootstrap bands, the DLN identity."""

from __future__ import annotations

import numpy as np
import pytest

from instab_lib.experiments import dln, theory


def test_surplus_and_gamma():
    lam = np.array([100.0, 200.0, 250.0])
    np.testing.assert_allclose(theory.instability_surplus(0.01, lam), [-1.0, 0.0, 0.5])
    np.testing.assert_allclose(theory.gamma_u(0.01, lam), -(1 + theory.instability_surplus(0.01, lam)))
    with pytest.raises(ValueError):
        theory.instability_surplus(0.0, lam)


def test_coupled_model_without_noise_stays_at_point_mass():
    p = theory.simulate_coupled(0.01, 210.0, 20.0, 5.0, 0.0, 50, 3, seed=1)
    assert np.all(p.X == 210.0) and np.all(p.Y == 0.0)


def test_coupled_model_first_steps_closed_form():
    eta, u, c, d, s = 0.01, 210.0, 20.0, 5.0, 1e-3
    p = theory.simulate_coupled(eta, u, c, d, s, 3, 7, seed=3)
    xi = np.random.default_rng(3).standard_normal((3, 7))  # the same draws, step by step
    y1 = s * xi[0]
    np.testing.assert_allclose(p.Y[:, 1], y1, rtol=1e-14)
    np.testing.assert_allclose(p.X[:, 1], u + c * y1, rtol=1e-14)  # X̄₁ = u since Y₀ = 0
    y2 = (1 - eta * (u + c * y1)) * y1 + s * xi[1]
    np.testing.assert_allclose(p.Y[:, 2], y2, rtol=1e-13)
    np.testing.assert_allclose(p.Xbar[:, 2], u / (1 + d * y1**2), rtol=1e-14)
    np.testing.assert_allclose(p.X[:, 2], u / (1 + d * y1**2) + c * y2, rtol=1e-13)
    # the floor never increases for d ≥ 0
    assert np.all(np.diff(p.Xbar, axis=1) <= 0)


def test_median_band_matches_brute_force_bootstrap():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((201, 2)) + np.array([0.0, 5.0])
    med, lo, hi = theory.median_band(x, 0.9)
    np.testing.assert_allclose(med, np.median(x, axis=0))
    boot = np.median(x[rng.integers(0, 201, size=(20000, 201))], axis=1)  # (B, 2)
    qlo, qhi = np.quantile(boot, [0.05, 0.95], axis=0)
    # the exact band's ends are order statistics next to the resampling quantiles
    xs = np.sort(x, axis=0)
    for k in range(2):
        i_lo, i_hi = np.searchsorted(xs[:, k], [lo[k], hi[k]])
        j_lo, j_hi = np.searchsorted(xs[:, k], [qlo[k], qhi[k]])
        assert abs(i_lo - j_lo) <= 1 and abs(i_hi - j_hi) <= 1
    assert np.all(lo <= med) and np.all(med <= hi)


def test_prob_at_most():
    x = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0], [3.0, 4.0]])
    p, se = theory.prob_at_most(x, 1.5)
    np.testing.assert_allclose(p, [0.5, 0.25])
    np.testing.assert_allclose(se, np.sqrt(p * (1 - p) / 4))


def test_dln_reduced_dynamics_and_sharpness():
    for eta in (0.009, 0.011, 0.015):
        tr = dln.run_gd([-0.1, 10.0], eta, 300)
        delta, big = theory.dln_invariants(tr.theta)
        dn, bn = theory.dln_reduced_step(delta[:-1], big[:-1], eta)
        np.testing.assert_allclose(dn, delta[1:], rtol=1e-11)
        np.testing.assert_allclose(bn, big[1:], rtol=1e-9, atol=1e-300)
        np.testing.assert_allclose(theory.dln_sharpness_from_invariants(delta, big), tr.sharpness, rtol=1e-12)
        # |Δ| contracts whenever 0 < 4η²Θ² < 2 (and can grow in a violent step with 4η²Θ² > 2)
        contracting = 4 * eta**2 * big[:-1] ** 2 <= 2
        assert np.all((np.diff(np.abs(delta)) - 1e-12 * np.abs(delta[:-1]))[contracting] <= 0)  # up to rounding
        assert eta != 0.011 or np.all(contracting)


def test_measured_gamma_u_recovers_the_quadratic_multiplier():
    """On a quadratic the period-2 amplitude obeys a_{t+1} = |1 − ηλ_t| a_t: the measured ratio is gamma_u."""
    eta = 0.1
    lam = np.array([21.0, 25.0, 19.0, 22.0, 18.0, 30.0, 20.5])
    a = np.empty(lam.size)
    a[0] = 1e-3
    for t in range(lam.size - 1):
        a[t + 1] = abs(1 - eta * lam[t]) * a[t]
    np.testing.assert_allclose(theory.measured_gamma_u(a), np.abs(theory.gamma_u(eta, lam[:-1])), rtol=1e-12)
    res = theory.gamma_u_correlation(a, lam, eta)
    assert res["n"] == lam.size - 1 and res["spearman"] == pytest.approx(1.0)
    assert res["frac_growth_when_unstable"] == 1.0
    # a curvature that shrinks the oscillation when it is high: the correlation turns negative
    b = np.empty(lam.size)
    b[0] = 1e-3
    for t in range(lam.size - 1):
        b[t + 1] = b[t] / abs(1 - eta * lam[t])
    assert theory.gamma_u_correlation(b, lam, eta)["spearman"] == pytest.approx(-1.0)
    stable = theory.gamma_u_correlation(a, lam / 10, eta)  # never ηλ ≥ 2: nothing to correlate
    assert stable["n"] == 0 and np.isnan(stable["spearman"])
    with pytest.raises(ValueError):
        theory.gamma_u_correlation(a, lam[:-1], eta)
