"""The seed offset (INSTAB_SEED_OFFSET) is an experiments setting: the library's solvers take the seed
they are given; the experiments shift the seeds they choose (training hooks, slices, snapshots)."""

import numpy as np
import torch

from instab_lib import curvature
from instab_lib.experiments import hooks, landscape, seeding
from instab_lib.experiments.config import TrainConfig


def _spd(n: int = 30) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    return A @ A.T / n + torch.diag(torch.linspace(0.0, 3.0, n, dtype=torch.float64))


def test_the_solvers_ignore_the_seed_offset(monkeypatch):
    """A user's eigen-solver starts and probes depend on ``seed`` alone, whatever the book's environment."""
    op = curvature.MatrixOperator(_spd())
    plain = curvature.lanczos(op, 2, tol=1e-3, max_iter=6, seed=3)
    probes = curvature.hutchinson_trace(op, 4, seed=3)
    monkeypatch.setenv(seeding.SEED_OFFSET_ENV, "1000")
    again = curvature.lanczos(op, 2, tol=1e-3, max_iter=6, seed=3)
    assert torch.equal(plain.eigenvalues, again.eigenvalues) and torch.equal(plain.eigenvectors, again.eigenvectors)
    assert curvature.hutchinson_trace(op, 4, seed=3) == probes
    shifted = curvature.lanczos(op, 2, tol=1e-3, max_iter=6, seed=1003)
    assert not torch.equal(plain.eigenvectors, shifted.eigenvectors)  # the seed does reach the start


def test_the_experiments_shift_the_solver_seeds_they_choose(monkeypatch):
    """Under INSTAB_SEED_OFFSET=k a slice's probes and the training hooks' solvers are seeded with
    seed + k: exactly the draws the unshifted experiment makes at seed + k."""
    D = torch.diag(torch.linspace(-1.0, 4.0, 12, dtype=torch.float64))
    f = lambda t: 0.5 * t @ D @ t + (t ** 4).sum() / 12  # noqa: E731
    theta, d = torch.linspace(-1, 1, 12, dtype=torch.float64), torch.ones(12, dtype=torch.float64)
    kw = dict(lanczos=True, hutchinson_samples=3, hutchinson_power=2, tol=1e-2)
    at_1003 = landscape.slice_along(f, theta, d, [0.0, 0.5], seed=1003, **kw)
    at_3 = landscape.slice_along(f, theta, d, [0.0, 0.5], seed=3, **kw)
    cfg = TrainConfig(n_train=100, n_test=0, epochs=2, eval_every=1, k_top=2, k_bottom=1, seed=3)
    monkeypatch.setenv(seeding.SEED_OFFSET_ENV, "1000")
    shifted = landscape.slice_along(f, theta, d, [0.0, 0.5], seed=3, **kw)
    fields = ("loss", "curvature", "lanczos", "hutch", "hutch_se")
    assert all(np.array_equal(getattr(shifted, f), getattr(at_1003, f)) for f in fields)
    assert not all(np.array_equal(getattr(shifted, f), getattr(at_3, f)) for f in fields)
    spectra = hooks.Spectra(cfg)
    assert spectra.trackers["top"].seed == 1003 and spectra.trackers["bot"].seed == 3 + 7919 + 1000
