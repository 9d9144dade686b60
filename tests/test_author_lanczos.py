"""The page's NumPy transcription of the two Lanczos steps (instab_lib.experiments.author_lanczos).

Fast (no notebook, no network): the textbook step against numpy.linalg.eigvalsh, the
author's step reproducing the underestimate measured on the page's diagonal example.
"""

import numpy as np
import pytest

from instab_lib.experiments import author_lanczos as al


def _sym(n: int, seed: int) -> np.ndarray:
    A = np.random.default_rng(seed).standard_normal((n, n))
    return (A + A.T) / 2


def test_textbook_full_order_equals_eigvalsh():
    A = _sym(30, 3)
    run = al.lanczos_tridiagonal(lambda v: A @ v, np.ones(30), 30, "textbook")
    np.testing.assert_allclose(al.ritz_values(run), np.linalg.eigvalsh(A)[::-1], atol=1e-10)
    # V_k^T A V_k = T_k: the basis is orthonormal and tridiagonalises A
    np.testing.assert_allclose(run.V @ run.V.T, np.eye(30), atol=1e-12)
    np.testing.assert_allclose(run.V @ A @ run.V.T, al.tridiagonal(run.alpha, run.beta), atol=1e-10)


def test_textbook_finds_the_outliers_of_the_diagonal_example():
    eig, v0 = al.diagonal_example(0)
    run = al.lanczos_tridiagonal(lambda v: eig * v, v0, 20, "textbook")
    np.testing.assert_allclose(al.ritz_values(run)[:3], [20.0, 15.0, 10.0], atol=1e-10)


def test_author_step_underestimates_on_the_diagonal_example():
    eig, v0 = al.diagonal_example(0)
    assert eig.size == 200 and list(eig[:3]) == [20.0, 15.0, 10.0] and np.abs(eig[3:]).max() <= 0.5
    runs = {o: al.lanczos_tridiagonal(lambda v: eig * v, v0, o, "author") for o in (20, 60)}
    # the values measured for the page (seed 0, order 20), and no better at order 60
    np.testing.assert_allclose(al.ritz_values(runs[20])[:3], [14.0834052, 13.8645442, 9.49283107], atol=1e-6)
    np.testing.assert_allclose(al.ritz_values(runs[60])[:3], al.ritz_values(runs[20])[:3], atol=1e-8)


def test_only_beta_differs_and_it_is_at_most_one():
    eig, v0 = al.diagonal_example(1)
    t = al.lanczos_tridiagonal(lambda v: eig * v, v0, 40, "textbook")
    a = al.lanczos_tridiagonal(lambda v: eig * v, v0, 40, "author")
    np.testing.assert_allclose(np.abs(np.sum(t.V * a.V, axis=1)), 1.0, atol=1e-10)  # same vectors (up to sign)
    np.testing.assert_allclose(a.alpha, t.alpha, atol=1e-10)
    assert a.beta.max() <= 1 + 1e-12 and a.beta[0] == pytest.approx(1.0, abs=1e-12)
    assert t.beta.max() > 3  # the true off-diagonal is not bounded by 1
    # β̃_i = β_i / sqrt(β_i² + (β_{i−1} − β̃_{i−1})²): the residual still holds (β_{i−1} − β̃_{i−1}) v_{i−1}
    pred = [1.0]
    for i in range(1, len(t.beta)):
        pred.append(t.beta[i] / np.hypot(t.beta[i], t.beta[i - 1] - pred[-1]))
    np.testing.assert_allclose(a.beta, pred, atol=1e-10)
    np.testing.assert_allclose(a.rho[0], t.beta[0], rtol=1e-12)


def test_prefix_property_and_gershgorin_bound():
    eig, v0 = al.diagonal_example(2)
    a60 = al.lanczos_tridiagonal(lambda v: eig * v, v0, 60, "author")
    a25 = al.lanczos_tridiagonal(lambda v: eig * v, v0, 25, "author")
    np.testing.assert_allclose(al.ritz_values(a60, 25), al.ritz_values(a25), atol=1e-10)
    assert al.ritz_values(a60)[0] <= a60.alpha.max() + 2 * a60.beta.max() + 1e-12


def test_breakdown_stops_early():
    eig = np.array([3.0, 3.0, 1.0, 1.0])
    run = al.lanczos_tridiagonal(lambda v: eig * v, np.ones(4), 4, "textbook")
    assert run.order == 2 and run.n_matvec == 2
    np.testing.assert_allclose(al.ritz_values(run), [3.0, 1.0], atol=1e-12)


@pytest.mark.parametrize("kw", [{"step": "fixed"}, {"order": 0}, {"order": 5}, {"order": 2.0}])
def test_bad_arguments(kw):
    args = {"matvec": lambda v: v, "v0": np.ones(4), "order": 2, "step": "textbook"} | kw
    with pytest.raises(ValueError):
        al.lanczos_tridiagonal(**args)


def test_bad_start_and_tridiagonal_shapes():
    with pytest.raises(ValueError):
        al.lanczos_tridiagonal(lambda v: v, np.zeros(4), 2)
    with pytest.raises(ValueError):
        al.tridiagonal(np.ones(3), np.ones(3))
    run = al.lanczos_tridiagonal(lambda v: v * np.arange(1.0, 5.0), np.ones(4), 3)
    with pytest.raises(ValueError):
        al.ritz_values(run, 4)
