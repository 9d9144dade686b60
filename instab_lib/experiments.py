"""The shared experiments of the book, each defined once and referred to by name.

Several pages read the same runs: the fMNIST mechanism ensemble is the subject of six
pages, the stability-limit grid and the Goldilocks grid of two or three. Each is an
:class:`Experiment` built here from its name and a **scale** (``"ci"``: the CPU-sized
default every page runs at; ``"paper"``: the full scale of the ``paper`` presets), so a
page's parameter cell holds only what is specific to that page (``scale`` and its own
analysis settings) and two pages can never ask for slightly different copies of one run.

=================  =================================================================
name               what
=================  =================================================================
fmnist_limit       the stability-limit grid: the fMNIST MLP at η ∈ {0.0125, 0.025,
                   0.05, 0.1} for 300 epochs, top eigenvalue every 5 epochs (the limit
                   of :mod:`instab_lib.stability`, measured over the seed ensemble)
fmnist_mechanism   the mechanism ensemble: η = 0.1 (the author's), 400 epochs, top-3 and
                   bottom-1 eigenpairs every epoch, θ and eigenvectors saved every epoch
fmnist_ladder      the same network at η ∈ {0.02 (stable), 0.05, 0.2}, 200 epochs, top-3
                   every epoch (rotation against η; a stable control at matched sharpness)
fmnist_stable      a long stable run: η = 0.01 for 4,000 epochs, spectra and θ every 25
                   epochs (controls at matched *training loss*: spectra, N_eff)
fmnist_flattening  A Fig 4: η₀ ∈ {0.02 (stable control), 0.1, 0.3} reduced to η = 0.01 at
                   epoch 10, 50 or 150, then the same 300 epochs at 0.01 for every run
=================  =================================================================

The fMNIST setting is the author's (REFERENCE §4.2): MLP 784-32-32-32-10 ReLU, the first
1,000 training images (standardised), cross-entropy, full-batch GD, Hessian on the same
1,000 images. Every experiment runs over a seed ensemble (5 seeds at CI scale, 10 at
paper scale): claims are decided on the ensemble, never on one trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

__all__ = ["Experiment", "SCALES", "get", "EXPERIMENTS", "FMNIST_ETA", "FMNIST_ETA_SMALL", "FMNIST_LADDER_ETAS",
           "FMNIST_LIMIT_ETAS", "FMNIST_FLATTENING", "fmnist_base", "fmnist_flattening"]

#: The scales every experiment is defined at.
SCALES = ("ci", "paper")
#: The learning rate of the mechanism ensemble (the author's, REFERENCE §4.2).
FMNIST_ETA = 0.1
#: The grid that brackets the stability limit of the fMNIST MLP.
FMNIST_LIMIT_ETAS = (0.0125, 0.025, 0.05, 0.1)
#: The ladder of learning rates around the mechanism η: one stable control, two unstable.
FMNIST_LADDER_ETAS = (0.02, 0.05, 0.2)
#: The small learning rate of A Fig 4's caption (and of the long stable control).
FMNIST_ETA_SMALL = 0.01
#: A Fig 4: the large initial learning rates (the first a stable control), the reduction epochs and the budget at
#: η_small that every run gets after its reduction.
FMNIST_FLATTENING = {"eta0": (0.02, 0.1, 0.3), "reduce_at": (10, 50, 150), "budget": 300}


@dataclass(frozen=True)
class Experiment:
    """A named set of runs: ``base`` (a :class:`instab_lib.config.TrainConfig`) over the
    Cartesian ``grid`` (field → values; ``seed`` among them). :meth:`run` trains or reads
    back every configuration (:func:`instab_lib.sweep.sweep`: cached, parallel)."""

    name: str
    scale: str
    description: str
    base: Any
    grid: Mapping[str, tuple] = field(default_factory=dict)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.grid.get("seed", (self.base.seed,)))

    def configs(self) -> list[Any]:
        from .sweep import grid_configs

        return grid_configs(self.base, self.grid)

    def run(self, executor: Any = None, max_workers: int | None = None) -> list[Any]:
        """Every run of the experiment (grid order: first grid key slowest). A run that raised
        (a bug, not a divergence) is an error here, with its traceback."""
        from .sweep import sweep

        runs = sweep(self.base, self.grid, executor=executor, max_workers=max_workers,
                     threads_per_worker=1 if executor in (None, "processes") else None)
        failed = [r for r in runs if r.status == "failed"]
        if failed:
            raise RuntimeError(f"{self.name}: {len(failed)} run(s) failed; first: {failed[0].error}")
        return runs

    def by(self, runs: Sequence[Any], **where: Any) -> list[Any]:
        """The runs whose config matches every ``field=value`` of ``where``, in seed order."""
        out = [r for r in runs if all(getattr(r.config, k) == v for k, v in where.items())]
        return sorted(out, key=lambda r: r.config.seed)


def _seeds(scale: str) -> tuple[int, ...]:
    return tuple(range(5)) if scale == "ci" else tuple(range(10))


def fmnist_base(**changes: Any) -> Any:
    """The fMNIST configuration all three experiments share (REFERENCE §4.2): MLP 784-32-32-32-10
    ReLU, first 1,000 training images, 2,000 test images, cross-entropy, full-batch GD, no early
    stop, Hessian on the 1,000 training images, eigen-residual tolerance 1e-3."""
    from .config import TrainConfig

    base = TrainConfig(dataset="fashion-mnist", n_train=1000, n_test=2000, model="mlp",
                       model_kwargs={"depth": 3, "width": 32}, loss="ce", optimizer="gd",
                       target_train_acc=None, eig_tol=1e-3)
    return base.replace(**changes) if changes else base


def fmnist_limit(scale: str) -> Experiment:
    base = fmnist_base(epochs=300, eval_every=5, k_top=1)
    return Experiment("fmnist_limit", scale, "the stability-limit grid (300 epochs, λ_max every 5 epochs)", base,
                      {"lr": FMNIST_LIMIT_ETAS, "seed": _seeds(scale)})


def fmnist_mechanism(scale: str) -> Experiment:
    epochs = 400
    base = fmnist_base(lr=FMNIST_ETA, epochs=epochs, eval_every=1, k_top=3, k_bottom=1,
                       snapshot_epochs=tuple(range(epochs + 1)))
    return Experiment("fmnist_mechanism", scale,
                      f"the mechanism ensemble (η = {FMNIST_ETA}, {epochs} epochs, top-3 and bottom-1 eigenpairs "
                      "every epoch, θ saved every epoch)", base, {"seed": _seeds(scale)})


def fmnist_ladder(scale: str) -> Experiment:
    epochs = 200 if scale == "ci" else 400
    base = fmnist_base(epochs=epochs, eval_every=1, k_top=3)
    return Experiment("fmnist_ladder", scale,
                      f"the learning-rate ladder (η ∈ {list(FMNIST_LADDER_ETAS)}, {epochs} epochs, top-3 every epoch)",
                      base, {"lr": FMNIST_LADDER_ETAS, "seed": _seeds(scale)})


def fmnist_stable(scale: str) -> Experiment:
    epochs = 4000
    base = fmnist_base(lr=FMNIST_ETA_SMALL, epochs=epochs, eval_every=25, k_top=3, k_bottom=1, test_every=25,
                       snapshot_epochs=tuple(range(0, epochs + 1, 25)))
    return Experiment("fmnist_stable", scale,
                      f"the long stable control (η = {FMNIST_ETA_SMALL}, {epochs} epochs, top-3 and bottom-1 eigenpairs "
                      "and θ every 25 epochs)", base, {"seed": _seeds(scale)})


def fmnist_flattening(scale: str) -> list[Experiment]:
    """A Fig 4 as one experiment per reduction epoch (the epoch count differs: reduction + budget)."""
    spec = FMNIST_FLATTENING
    out = []
    for t_r in spec["reduce_at"]:
        base = fmnist_base(epochs=t_r + spec["budget"], eval_every=5, k_top=1, n_test=0,
                           lr_schedule={"kind": "step", "epochs": [t_r], "values": [FMNIST_ETA_SMALL]})
        out.append(Experiment(f"fmnist_flattening@{t_r}", scale,
                              f"η₀ reduced to {FMNIST_ETA_SMALL} at epoch {t_r}, then {spec['budget']} epochs", base,
                              {"lr": spec["eta0"], "seed": _seeds(scale)}))
    return out


#: name → ``builder(scale) -> Experiment``.
EXPERIMENTS: dict[str, Callable[[str], Experiment]] = {
    "fmnist_limit": fmnist_limit,
    "fmnist_mechanism": fmnist_mechanism,
    "fmnist_ladder": fmnist_ladder,
    "fmnist_stable": fmnist_stable,
}


def get(name: str, scale: str = "ci") -> Experiment:
    """The experiment ``name`` at ``scale`` (``ValueError`` naming the known ones otherwise)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    return EXPERIMENTS[name](scale)
