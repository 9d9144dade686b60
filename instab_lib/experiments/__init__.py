"""The experiments: the book's models, data, training harness, shared runs and page analyses.

This layer may import the library (``instab_lib``: curvature, rotation, preconditioned,
thresholds, optim, validation), never the book machinery (``instab_lib.book``). Importing
this package imports nothing heavy; import the modules you need:

* a run — ``config`` (``TrainConfig``, its validation and cache key), ``loop`` (``init_run``
  and the pure step), ``hooks`` (every measurement during training), ``train`` (the cached,
  resumable driver), ``sweep`` (grids and lists of runs), ``models``, ``data``, ``losses``;
* the shared runs — ``shared_runs`` (each defined once by name and scale);
* analyses — ``mechanism`` (phases, spikes, rotation read off a run table), ``episodes``
  (instability episodes and loss spikes), ``landscape`` (the loss around a run: slices,
  directional derivatives), ``effective_parameters`` (MacKay's N_eff), ``snapshots`` (train-mode
  BatchNorm sharpness at snapshots), ``stability`` (the measured stability limit),
  ``generalization`` (ρ, rank correlations, Goldilocks fits), ``clipping`` (Clipped-Ada: where a
  clip binds, whether a base has an instability to restore, the clip chosen on validation),
  ``stats`` (estimates with intervals over seeds);
* closed forms — ``dln`` (the diagonal linear network), ``toys`` (quadratics, the descent
  lemma), ``theory`` (B §5 reconstruction), ``author_lanczos`` (a transcription of the
  author's Lanczos step);
* support — ``seeding`` (every seed the experiments choose, with the one seed-offset switch
  ``INSTAB_SEED_OFFSET``), ``fingerprint`` (code fingerprints and the numerics environment
  that key the run cache; the stamp a run records), ``cache_files`` (atomic writes, digests, the warning
  for a cache entry that cannot be read), ``plotting``, ``progress``;
* :func:`repo_root` — the companion's checkout.
"""

import os
from pathlib import Path


def repo_root() -> Path:
    """The companion's root: ``$INSTAB_ROOT`` if set, else the checkout holding ``instab_lib``."""
    env = os.environ.get("INSTAB_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parent.parent.parent
