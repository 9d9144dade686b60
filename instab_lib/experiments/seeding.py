"""Random generators for the experiments, with one switch that shifts every seed.

Every random draw the experiments choose a seed for (initialisations, minibatch orders,
the eigen-solver starts and Hutchinson probes of the training hooks, slices and snapshots,
the B §5 simulation, bootstrap resamples) is seeded from a nominal seed ``s`` through this
module: a generator made here, or, for the library's solvers (which take a plain ``seed``
and read no environment variable), the seed :func:`shifted` ``(s)``. That seed is

.. math::  s' = s + \\text{offset},\\qquad \\text{offset} = \\$INSTAB\\_SEED\\_OFFSET \\ (default 0),

so ``INSTAB_SEED_OFFSET=1000 instab run …`` re-runs a page on an independent set of
seeds while tables and figures keep showing the nominal seeds 0, 1, 2, … (the
perturbation check of :mod:`instab_lib.book.perturb` uses it). The offset is part of every
run key (:func:`instab_lib.experiments.train.config_key`), so shifted runs never share a cache entry
with unshifted ones. A page that calls a library solver itself passes the seed it chooses
(``seed=seeding.shifted(s)`` to follow the offset).
"""

from __future__ import annotations

import os

import numpy as np
import torch

__all__ = ["SEED_OFFSET_ENV", "seed_offset", "shifted", "torch_generator", "numpy_rng", "manual_seed"]

#: Environment variable holding the offset added to every seed.
SEED_OFFSET_ENV = "INSTAB_SEED_OFFSET"


def seed_offset() -> int:
    """The offset read from :data:`SEED_OFFSET_ENV` (0 when unset or empty).

    Raises ``ValueError`` with a one-line reason when it is not a non-negative integer.
    """
    raw = os.environ.get(SEED_OFFSET_ENV, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{SEED_OFFSET_ENV} must be a non-negative integer, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{SEED_OFFSET_ENV} must be a non-negative integer, got {raw!r}")
    return value


def shifted(seed: int) -> int:
    """``seed + seed_offset()``: the seed a generator is actually seeded with."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return int(seed) + seed_offset()


def torch_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`shifted` ``(seed)``."""
    g = torch.Generator(device=device)
    g.manual_seed(shifted(seed))
    return g


def numpy_rng(seed: int) -> np.random.Generator:
    """``numpy.random.default_rng(shifted(seed))``."""
    return np.random.default_rng(shifted(seed))


def manual_seed(seed: int) -> None:
    """``torch.manual_seed(shifted(seed))``: for draws made through torch's global generator
    (PyTorch's default layer initialisation); call it inside ``torch.random.fork_rng``."""
    torch.manual_seed(shifted(seed))
