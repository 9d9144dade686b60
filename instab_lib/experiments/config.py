"""The configuration of a training run, its validation and its cache key.

A :class:`TrainConfig` is everything that defines a run (JSON-able). It is validated
when it is built, cheaply (the model is built on the CPU to count its parameters; no
data is touched), so a bad value fails with a one-line ``ValueError`` before any
compute. :func:`config_key` hashes the configuration with its defaults filled in, the
fingerprint of the library code a run executes and the numerics environment
(:mod:`instab_lib.experiments.fingerprint`), so a cached run is served again only when nothing that
can change its numbers has changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .. import optim as optim_mod
from ..validation import integer, positive
from . import data as data_mod
from . import fingerprint, initialisation, repo_root
from . import models as models_mod
from .losses import LOSSES

__all__ = ["TrainConfig", "config_key", "default_cache_dir"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run (JSON-able; the run key hashes all of it except
    ``data_dir``, ``checkpoint_every`` and ``checkpoint_seconds``, which do not change the numbers)."""

    # data
    dataset: str = "fashion-mnist"
    n_train: int | None = 1000  #: first n training images (None: all)
    n_test: int | None = 2000  #: first n test images (0: no test metrics)
    test_every: int = 1  #: test metrics every m epochs and at the last one (NaN in between)
    n_val: int = 0  #: validation split: the last n_val training images (val_loss/val_acc when test metrics are due)
    balanced: bool = False  #: first n_train/10 images per class instead
    classes: tuple[int, ...] | None = None  #: keep only these labels (relabelled 0…k−1)
    # model and loss
    model: str = "mlp"
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    loss: str = "ce"  #: "ce" (cross-entropy) or "mse" (one-hot targets)
    # optimiser
    optimizer: str = "gd"  #: a name of :data:`instab_lib.optim.OPTIMIZERS`
    lr: float = 0.1
    optimizer_kwargs: Mapping[str, Any] = field(default_factory=dict)
    lr_schedule: Mapping[str, Any] | None = None  #: :func:`instab_lib.optim.make_schedule` spec
    batch_size: int | None = None  #: None: full batch (one step per epoch)
    epochs: int = 400  #: cap
    target_train_acc: float | None = 0.999  #: early stop (None: never)
    divergence_factor: float | None = 1e4  #: loss > factor × initial loss ⇒ diverged
    stall_epochs: int | None = None  #: end as "stalled" after this many epochs at chance level without progress
    init_from: Mapping[str, Any] | None = None  #: start from the final θ of this run (a TrainConfig dict)
    seed: int = 0  #: initialisation, minibatch order, eigen-solver starts, probes
    device: str = "cpu"
    dtype: str = "float32"
    # spectra
    eval_every: int = 1  #: spectra every m epochs (0: never), and at the last epoch
    eval_start: int = 0  #: no spectra before this epoch (except at reference_epoch)
    k_top: int = 1
    k_bottom: int = 0
    eig_tol: float = 1e-3  #: relative residual ‖Hv − λv‖ ≤ tol · max|λ|
    hessian_n: int | None = None  #: Hessian on the first n training images (None: all)
    hessian_chunk: int | None = None  #: HVPs over chunks of this many images
    reference_epoch: int = 0  #: eigenvectors compared against those of this epoch
    hutchinson_samples: int = 0  #: 0: off, else ≥ 2 Rademacher probes per evaluation
    hutchinson_power: int = 1
    snapshot_epochs: tuple[int, ...] = ()  #: save θ (and eigenvectors) at these epochs
    snapshot_final: bool = False  #: also save θ at the last epoch (what ``init_from`` reads)
    # adaptive optimisers: preconditioned sharpness λ_max(D^{-1/2} H D^{-1/2})
    precond_every: int = 0  #: every m epochs ≥ 1 (0: never); needs an adaptive optimiser
    precond_tol: float = 1e-2  #: relative residual of that Lanczos solve
    #: for a model with normalisation layers, the Hessian of that solve: "train" (batch statistics over chunks of
    #: ``batch_size`` images: the objective the optimiser steps on) or "eval" (running statistics)
    precond_bn_mode: str = "train"
    clip_candidates: tuple[float, ...] = ()  #: per-step clip-binding trace of these clips (adaptive optimisers)
    # bookkeeping
    checkpoint_every: int = 25  #: a checkpoint only at a multiple of this epoch count …
    checkpoint_seconds: float = 30.0  #: … and at least this long after the last one (each pickles all rows so far)
    data_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("model_kwargs", "optimizer_kwargs"):
            object.__setattr__(self, name, dict(getattr(self, name) or {}))
        if self.lr_schedule is not None:
            object.__setattr__(self, "lr_schedule", dict(self.lr_schedule))
        object.__setattr__(self, "snapshot_epochs", tuple(int(e) for e in self.snapshot_epochs))
        object.__setattr__(self, "clip_candidates", _float_tuple("clip_candidates", self.clip_candidates))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        if self.init_from is not None:  # canonical form: the full dict of a valid configuration
            src = self.init_from if isinstance(self.init_from, TrainConfig) else TrainConfig.from_dict(self.init_from)
            object.__setattr__(self, "init_from", src.to_dict())
        self.validate()

    # -- derived ----------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.classes is not None else 10

    def resolved_model_kwargs(self) -> dict[str, Any]:
        """Model kwargs: the builder's defaults, then what the data set's input shape and class
        count imply (:func:`instab_lib.experiments.models.data_kwargs`), then ``model_kwargs`` (what the run
        key hashes)."""
        ds = data_mod.DATASETS[data_mod.canonical_name(self.dataset)]
        out = dict(models_mod.model_kwargs(self.model))
        out.update(models_mod.data_kwargs(self.model, ds["shape"], self.n_classes))
        out.update(self.model_kwargs)
        if "init" in out and out["init"] is None:  # the builder's "ask the environment": resolved here, so
            out["init"] = initialisation.default_init()  # the run key and record name the draw
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}

    def resolved_optimizer_kwargs(self) -> dict[str, Any]:
        fn = optim_mod.OPTIMIZERS[self.optimizer.lower().replace("-", "_")]
        base = fn.func if hasattr(fn, "func") else fn
        fixed = getattr(fn, "keywords", {})
        accepted, _ = optim_mod.optimizer_hyperparameters(self.optimizer)
        sig = inspect.signature(base).parameters
        out = {k: sig[k].default for k in accepted if sig[k].default is not inspect.Parameter.empty}
        out.update(fixed)
        out.update(self.optimizer_kwargs)
        return out

    def build_model(self) -> Any:
        """The run's model at its initialisation (seed, kwargs; CPU, default dtype)."""
        return models_mod.build_model(self.model, seed=self.seed, **self.resolved_model_kwargs())

    def optimizer_for(self, steps_per_epoch: int) -> optim_mod.Optimizer:
        """The run's optimiser, its schedule converted from epochs to steps."""
        sched = optim_mod.make_schedule(self.lr, self.lr_schedule, steps_per_epoch=steps_per_epoch)
        return optim_mod.make_optimizer(self.optimizer, sched, **self.optimizer_kwargs)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["snapshot_epochs"] = list(self.snapshot_epochs)
        d["clip_candidates"] = list(self.clip_candidates)
        d["classes"] = list(self.classes) if self.classes is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        d = dict(d)
        if d.get("snapshot_epochs") is not None:
            d["snapshot_epochs"] = tuple(d["snapshot_epochs"])
        if d.get("clip_candidates") is not None:
            d["clip_candidates"] = tuple(d["clip_candidates"])
        if d.get("classes") is not None:
            d["classes"] = tuple(d["classes"])
        return cls(**d)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes``; dotted names set one entry of a dict field
        (``"model_kwargs.width"``, ``"optimizer_kwargs.c"``)."""
        flat: dict[str, Any] = {}
        for k, v in changes.items():
            if "." in k:
                outer, inner = k.split(".", 1)
                if outer not in ("model_kwargs", "optimizer_kwargs", "lr_schedule"):
                    raise ValueError(f"dotted key {k!r}: only model_kwargs, optimizer_kwargs, "
                                     "lr_schedule hold entries")
                base = dict(flat.get(outer, getattr(self, outer) or {}))
                base[inner] = v
                flat[outer] = base
            else:
                flat[k] = v
        unknown = sorted(set(flat) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"TrainConfig has no field(s) {unknown}")
        return dataclasses.replace(self, **flat)

    # -- validation ---------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ValueError`` with a clear message for any inconsistent setting; cheap
        (builds the model on the CPU to count its parameters, touches no data)."""
        self._validate_data()
        self._validate_optimisation()
        self._validate_measurements()

    def _validate_data(self) -> None:
        data_mod.canonical_name(self.dataset)
        integer("n_train", self.n_train, 1, none_ok=True)
        integer("n_test", self.n_test, 0, none_ok=True)
        integer("test_every", self.test_every, 1)
        integer("n_val", self.n_val, 0)
        if self.n_val and self.n_train is None:
            raise ValueError("n_val > 0 needs n_train: the validation images are the last n_val training images, "
                             "disjoint from the first n_train")
        if self.balanced and self.n_train is not None and self.n_train % self.n_classes:
            raise ValueError(f"balanced=True needs n_train divisible by {self.n_classes}, got {self.n_train}")
        if self.classes is not None and (len(set(self.classes)) != len(self.classes)
                                         or not set(self.classes) <= set(range(10)) or len(self.classes) < 2):
            raise ValueError(f"classes must be ≥ 2 distinct labels in 0…9, got {self.classes}")
        if self.model not in models_mod.MODELS:
            raise ValueError(f"unknown model {self.model!r}; known: {sorted(models_mod.MODELS)}")
        if self.model == "dln":
            raise ValueError("model 'dln' is a toy without data: use instab_lib.experiments.dln / optim directly")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; known: {sorted(LOSSES)}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {self.device!r}")
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"device {self.device!r} asked for, but CUDA is not available here")

    def _validate_optimisation(self) -> None:
        accepted, required = optim_mod.optimizer_hyperparameters(self.optimizer)
        bad = sorted(set(self.optimizer_kwargs) - set(accepted))
        if bad:
            raise ValueError(f"optimizer {self.optimizer!r} does not take {bad}; it takes {accepted}")
        missing = [r for r in required if r not in self.optimizer_kwargs]
        if missing:
            raise ValueError(f"optimizer {self.optimizer!r} needs optimizer_kwargs {missing}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)):
            raise ValueError(f"lr (learning rate) must be a positive finite number, got {self.lr!r}")
        positive("lr (learning rate)", self.lr)
        optim_mod.make_schedule(self.lr, self.lr_schedule)  # raises on a bad spec
        opt = self.optimizer_for(steps_per_epoch=1)  # raises on bad hyperparameter values (c ≤ 0, β ≥ 1, …)
        integer("batch_size", self.batch_size, 1, none_ok=True)
        if self.batch_size is not None and self.n_train is not None and self.batch_size > self.n_train:
            raise ValueError(f"batch_size {self.batch_size} exceeds n_train {self.n_train}")
        integer("epochs", self.epochs, 1)
        if self.target_train_acc is not None and not (0 < self.target_train_acc <= 1):
            raise ValueError(f"target_train_acc must lie in (0, 1] or be None, got {self.target_train_acc}")
        if self.divergence_factor is not None and not (self.divergence_factor > 1):
            raise ValueError(f"divergence_factor must be > 1 or None, got {self.divergence_factor}")
        integer("seed", self.seed, 0)
        integer("stall_epochs", self.stall_epochs, 1, none_ok=True)
        if self.init_from is not None:
            src = TrainConfig.from_dict(self.init_from)
            if not src.snapshot_final:
                raise ValueError("init_from: the run to continue must have snapshot_final=True")
            if (src.model, src.resolved_model_kwargs(), src.dataset, src.classes) != (
                    self.model, self.resolved_model_kwargs(), self.dataset, self.classes):
                raise ValueError("init_from: the run to continue must have the same model, model_kwargs, dataset "
                                 "and classes")
        integer("precond_every", self.precond_every, 0)
        if self.precond_every and "beta2" not in opt.hyper:
            raise ValueError(f"precond_every needs an adaptive optimiser (Adam, RMSProp, Clipped-Ada); "
                             f"{self.optimizer!r} has no preconditioner")
        if not (self.precond_tol > 0):
            raise ValueError(f"precond_tol must be positive, got {self.precond_tol}")
        if self.precond_bn_mode not in ("train", "eval"):
            raise ValueError(f"precond_bn_mode must be 'train' or 'eval', got {self.precond_bn_mode!r}")
        if self.clip_candidates and "beta2" not in opt.hyper:
            raise ValueError(f"clip_candidates need an adaptive optimiser (Adam, RMSProp, Clipped-Ada); "
                             f"{self.optimizer!r} has no √v̂ to clip")

    def _validate_measurements(self) -> None:
        integer("eval_every", self.eval_every, 0)
        integer("eval_start", self.eval_start, 0)
        integer("k_top", self.k_top, 0)
        integer("k_bottom", self.k_bottom, 0)
        if self.eval_every and self.k_top + self.k_bottom == 0:
            raise ValueError("eval_every > 0 needs k_top ≥ 1 or k_bottom ≥ 1 (or set eval_every=0)")
        if not (self.eig_tol > 0):
            raise ValueError(f"eig_tol must be positive, got {self.eig_tol}")
        integer("hessian_n", self.hessian_n, 1, none_ok=True)
        if self.hessian_n is not None and self.n_train is not None and self.hessian_n > self.n_train:
            raise ValueError(f"hessian_n {self.hessian_n} exceeds n_train {self.n_train}")
        integer("hessian_chunk", self.hessian_chunk, 1, none_ok=True)
        if self.hutchinson_samples == 1 or self.hutchinson_samples < 0:
            raise ValueError(f"hutchinson_samples must be 0 (off) or ≥ 2, got {self.hutchinson_samples}")
        integer("hutchinson_power", self.hutchinson_power, 1)
        if self.eval_every:
            if self.reference_epoch % self.eval_every or not 0 <= self.reference_epoch <= self.epochs:
                raise ValueError(f"reference_epoch {self.reference_epoch} must be an evaluation epoch "
                                 f"(a multiple of eval_every={self.eval_every} in [0, epochs])")
        bad_snap = [e for e in self.snapshot_epochs if not 0 <= e <= self.epochs]
        if bad_snap:
            raise ValueError(f"snapshot_epochs {bad_snap} outside [0, epochs={self.epochs}]")
        integer("checkpoint_every", self.checkpoint_every, 1)
        if not self.checkpoint_seconds >= 0:
            raise ValueError(f"checkpoint_seconds must be >= 0, got {self.checkpoint_seconds}")
        try:
            model = models_mod.build_model(self.model, seed=0, **self.resolved_model_kwargs())
        except ValueError as e:
            raise ValueError(f"model_kwargs: {e}") from None
        dim = models_mod.count_parameters(model)
        if self.eval_every and self.k_top + self.k_bottom >= dim:
            raise ValueError(f"k_top + k_bottom = {self.k_top + self.k_bottom} must be < the parameter "
                             f"count {dim}")


def _float_tuple(name: str, values: Any) -> tuple[float, ...]:
    """``values`` as a tuple of distinct positive finite floats (one-line ``ValueError`` otherwise)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a list of positive numbers, got {values!r}")
    out = tuple(positive(f"{name} entry", v) for v in values)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat a value, got {list(values)}")
    return out


def config_key(config: TrainConfig) -> str:
    """16 hex digits of SHA-256 over the configuration with defaults filled in, the
    fingerprint of the code a run executes and the numerics environment (module docstring)."""
    d = config.to_dict()
    d.pop("data_dir")
    d.pop("checkpoint_every")
    d.pop("checkpoint_seconds")
    d["dataset"] = data_mod.canonical_name(config.dataset)
    d["model_kwargs"] = config.resolved_model_kwargs()
    d["optimizer_kwargs"] = config.resolved_optimizer_kwargs()
    d["_code"] = fingerprint.run_fingerprint()
    d["_numerics"] = fingerprint.numerics_environment()
    d["_numerics"].pop("aten_cpu_capability")  # the capability itself is what counts
    blob = json.dumps(d, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$INSTAB_RUNS`` or ``<repo>/_build/runs``."""
    env = os.environ.get("INSTAB_RUNS")
    return Path(env) if env else repo_root() / "_build" / "runs"
