r"""The author's own CIFAR setting (issue 21 item 2; REFERENCE §4.2–4.3): minibatch SGD and the adaptive
optimisers on VGG10_base8_BN and ResNet20_base8 (BatchNorm), and the statistics of the page ``cifar_author``.

The author's scripts (``lawrencewang94/jax_eigs`` ``train_scripts/cifar5k_ub_family_*.py`` at d96374f) train
CIFAR-5k (512 images per class, 2,000 test images) with **minibatches** (64 and 1024), cross-entropy, a 2-step
linear warm-up, to 99.9 % train accuracy or an epoch cap; SGD at η = 0.1, RMSProp/Adam and their clipped
variants (RMS-UB, Adam-UB) at η = 5e-3, β₂ = 0.99, c ∈ {0.1, 1, 10}; Lanczos on the training set with
BatchNorm in eval mode. Here:

* :class:`Setting` — what every run of the page shares (data, stopping rule, measurements); :meth:`Setting.sgd`
  and :meth:`Setting.adaptive` build one run's :class:`~instab_lib.experiments.config.TrainConfig`;
* :func:`seed_limits` — per seed, the stability threshold 2 / max S of the run at the smallest η, with S the
  top Hessian eigenvalue measured **during** training (BatchNorm in eval mode, the harness's ``sharpness``);
* :func:`train_mode_limits` — the same from the train-mode sharpness at the run's snapshots along training (the
  Hessian of the loss minibatch SGD descends: our reading of "the stability threshold");
* :func:`compare_sides` — the η of a grid below and above a measured threshold's interval and the
  seed-bootstrap difference *best mean test accuracy above − best below*, over runs that reached the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd

from . import generalization as gen
from . import stats
from .clipping import BASES
from .config import TrainConfig

__all__ = ["ARCH_LABELS", "ADAPTIVE_ETA", "TRAINED", "MAX_SNAPSHOTS", "BASES", "Setting", "Sides", "seed_limits", "train_mode_limits",
           "late_root_max", "compare_sides"]

#: The harness's model names (:mod:`instab_lib.experiments.models`) → the author's names.
ARCH_LABELS = {"vgg": "VGG10_base8_BN", "resnet20": "ResNet20_base8 (BN)"}
#: The author's learning rate of the adaptive optimisers (REFERENCE §4.2).
ADAPTIVE_ETA = 5e-3
#: The outcomes of a run whose sharpness may set the threshold: it reached the target or the epoch cap.
TRAINED = ("target", "capped")
#: At most this many snapshots along an SGD run (besides epoch 0) for the train-mode sharpness.
MAX_SNAPSHOTS = 20


@dataclass(frozen=True)
class Setting:
    """What every run of the page shares: a balanced CIFAR-10 subset of ``n_train`` images (of ``classes``,
    None: all 10), the first ``n_test`` test images of those classes, a validation split of the last ``n_val``
    training images (read only by the clip choice), cross-entropy, a linear warm-up of ``warmup_steps`` steps,
    the author's stop at ``target_train_acc`` or ``epochs``, a run at chance for ``stall_epochs`` epochs ends as
    collapsed; the top Hessian eigenvalue (BatchNorm in eval mode) on the first ``hessian_n`` training images
    every ``eval_every`` epochs and at the last one, to relative residual ``eig_tol``."""

    n_train: int
    n_test: int
    classes: tuple[int, ...] | None
    epochs: int
    eval_every: int
    hessian_n: int
    n_val: int = 0
    hessian_chunk: int | None = None
    eig_tol: float = 1e-2
    warmup_steps: int = 2
    target_train_acc: float = 0.999
    stall_epochs: int | None = 50
    beta2: float = 0.99
    traced: tuple[float, ...] = (0.1, 1.0, 10.0)
    device: str = "cpu"

    def _config(self, **kw: Any) -> TrainConfig:
        return TrainConfig(dataset="cifar10", n_train=self.n_train, n_test=self.n_test, n_val=self.n_val,
                           balanced=True, classes=self.classes, loss="ce",
                           lr_schedule={"kind": "constant", "warmup_steps": self.warmup_steps}, epochs=self.epochs,
                           target_train_acc=self.target_train_acc, stall_epochs=self.stall_epochs,
                           eval_every=self.eval_every, k_top=1, eig_tol=self.eig_tol, hessian_n=self.hessian_n,
                           hessian_chunk=self.hessian_chunk, test_every=self.epochs, device=self.device, **kw)

    @property
    def snapshot_epochs(self) -> tuple[int, ...]:
        """The epochs at which an SGD run keeps θ for the train-mode sharpness (:func:`train_mode_limits`): 0 and
        every ``max(eval_every, ⌈epochs / MAX_SNAPSHOTS⌉)`` epochs, at most :data:`MAX_SNAPSHOTS` + 1 of them."""
        every = max(self.eval_every, -(-self.epochs // MAX_SNAPSHOTS))
        return tuple(range(0, self.epochs + 1, every))

    def sgd(self, arch: str, batch_size: int, lr: float, seed: int) -> TrainConfig:
        """Minibatch SGD (no momentum, as the author's ``optax.sgd``) at ``lr``; θ kept along training
        (:attr:`snapshot_epochs`) and at the end for the train-mode sharpness (:func:`train_mode_limits`)."""
        return self._config(model=arch, optimizer="sgd", lr=float(lr), batch_size=int(batch_size), seed=int(seed),
                            snapshot_epochs=self.snapshot_epochs, snapshot_final=True)

    def adaptive(self, arch: str, batch_size: int, optimizer: str, seed: int, c: float | None = None) -> TrainConfig:
        """``rmsprop``, ``adam`` or their clipped variants ``rms_ub``, ``adam_ub`` (which need ``c``) at
        :data:`ADAPTIVE_ETA` and β₂ = ``beta2``; the preconditioned sharpness and the √v̂ quantiles at every
        evaluation, and the per-step binding of the ``traced`` clips and of the run's own."""
        name = str(optimizer).lower().replace("-", "_")
        if name not in (*BASES, *BASES.values()):
            raise ValueError(f"the author's adaptive runs are rmsprop, adam, rms_ub or adam_ub, not {optimizer!r}")
        if (c is None) != (name not in BASES):
            raise ValueError(f"{name} {'needs a clip c' if c is None else 'takes no clip c'}")
        kw: dict[str, Any] = {"beta2": self.beta2} if c is None else {"beta2": self.beta2, "c": float(c)}
        traced = tuple(sorted(set(self.traced) | ({float(c)} if c is not None else set())))
        return self._config(model=arch, optimizer=name, optimizer_kwargs=kw, lr=ADAPTIVE_ETA,
                            batch_size=int(batch_size), seed=int(seed), precond_every=self.eval_every,
                            clip_candidates=traced)


def seed_limits(runs: Sequence[Any], lr: float) -> dict[int, float]:
    """Per seed: 2 / max S over the evaluations of the run at ``lr`` (S: the harness's eval-mode
    ``sharpness``, measured during training), for the runs at ``lr`` that trained (:data:`TRAINED`: they
    reached the target or the epoch cap; a run that diverged or collapsed is left out)."""
    out: dict[int, float] = {}
    for r in runs:
        if not math.isclose(r.config.lr, lr) or gen.run_summary(r)["outcome"] not in TRAINED:
            continue
        s = pd.to_numeric(r.table.get("sharpness"), errors="coerce").dropna() if "sharpness" in r.table else []
        if len(s) and float(s.max()) > 0:
            out[int(r.config.seed)] = 2.0 / float(s.max())
    return out


def train_mode_limits(runs: Sequence[Any], lr: float, *, hessian_n: int, tol: float = 1e-2,
                      ) -> tuple[dict[int, float], dict[int, dict[int, float]]]:
    """Per seed: 2 / max of the **train-mode** sharpness (BatchNorm on the statistics of chunks of the run's
    batch size, :func:`instab_lib.experiments.snapshots.snapshot_sharpness`: the Hessian of the loss minibatch
    SGD descends) over the snapshots the run kept along training (:attr:`Setting.snapshot_epochs`) and at its
    end, for the runs at ``lr`` that trained (:data:`TRAINED`); and the sharpness values per seed and epoch."""
    from .snapshots import snapshot_sharpness

    limits: dict[int, float] = {}
    values: dict[int, dict[int, float]] = {}
    for r in runs:
        if not math.isclose(r.config.lr, lr) or gen.run_summary(r)["outcome"] not in TRAINED:
            continue
        kept = [e for e in r.config.snapshot_epochs if e <= r.epochs_run]
        s = snapshot_sharpness(r, sorted({*kept, r.epochs_run}), hessian_n=hessian_n, tol=tol)
        if s and max(s.values()) > 0:
            values[int(r.config.seed)] = s
            limits[int(r.config.seed)] = 2.0 / max(s.values())
    return limits, values


def late_root_max(run: Any, start: int = 2) -> float:
    """The largest unclipped √v̂ of an adaptive run over the epochs from ``start`` on (the ``root_max`` column of
    :class:`instab_lib.experiments.hooks.Preconditioned`): the first epoch's is that of v̂ built from one or a few
    squared gradients, the same for RMSProp and Adam of one seed, and says little about where a clip binds
    during training. NaN without such an epoch."""
    t = run.table
    if "root_max" not in t:
        return float("nan")
    v = pd.to_numeric(t.loc[t["epoch"] >= start, "root_max"], errors="coerce").dropna()
    return float(v.max()) if len(v) else float("nan")


@dataclass(frozen=True)
class Sides:
    """The outcome of :func:`compare_sides`: the η of the grid below and above the threshold's interval
    (``below``, ``above``), those that may be "best" on their side (``comparable_below``/``_above``,
    :func:`instab_lib.experiments.generalization.comparable`), the mean test accuracy per η over the seeds that
    reached the target (``acc``) and the seed-bootstrap ``gain`` best above − best below (NaN where a side has
    no comparable η)."""

    below: tuple[float, ...]
    above: tuple[float, ...]
    comparable_below: tuple[float, ...]
    comparable_above: tuple[float, ...]
    acc: Mapping[float, float]
    gain: stats.Estimate


def compare_sides(df: pd.DataFrame, limit: stats.Estimate, grid: Sequence[float], seeds: Sequence[int], *,
                  n_boot: int = 2000, seed: int = 17) -> Sides:
    """Best mean test accuracy above the threshold minus the best below, over the runs of ``df``
    (:func:`instab_lib.experiments.generalization.summarize_runs` of one architecture and batch size) that
    reached the target: an η is *below* when it lies under the threshold's interval ``limit.lo``, *above* when
    over ``limit.hi``; above, only η at which every seed reached the target compete, below those where at least
    half did; the 90 % interval resamples whole seeds (:func:`instab_lib.experiments.stats.bootstrap_groups`)."""
    grid = sorted(float(e) for e in grid)
    tgt = df[df["outcome"] == "target"]
    acc = tgt.pivot_table(index="seed", columns="lr", values="test_acc").reindex(index=list(seeds), columns=grid)
    below = [e for e in grid if math.isfinite(limit.lo) and e < limit.lo]
    above = [e for e in grid if math.isfinite(limit.hi) and e > limit.hi]
    cb, ca = gen.comparable(acc, below, "below"), gen.comparable(acc, above, "above")
    gain = stats.bootstrap_groups(list(seeds), lambda ss: gen.best_gain(acc, cb, ca, ss), n_boot=n_boot, seed=seed,
                                  name="best-above-minus-best-below")
    means = {float(e): float(acc[e].mean()) for e in grid if acc[e].notna().any()}
    return Sides(tuple(below), tuple(above), tuple(cb), tuple(ca), means, gain)
