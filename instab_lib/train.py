"""Training with spectral monitoring, cached and resumable (REFERENCE §5.1).

``train(config)`` trains ``config.model`` on a deterministic subset of
``config.dataset`` and records, in one tidy table (one row per epoch ``e`` = the
parameters θ_e after ``e`` epochs; row 0 is the initialisation), the losses and
accuracies, and every ``eval_every`` epochs (and at the last epoch) the Hessian
spectrum of the training loss on the first ``hessian_n`` training images:

=====================  ==============================================================
column                 meaning
=====================  ==============================================================
epoch, step            epochs and optimiser steps done
lr                     learning rate of the next step (the one that moves θ_epoch)
train_loss, train_acc  on the training subset, model in eval mode
test_loss, test_acc    on the test subset (NaN when ``n_test == 0``)
param_norm             ‖θ_e‖₂
step_norm              ‖θ_e − θ_{e−1}‖₂ (valley jumps)
osc                    period-2 oscillation ‖θ_e − θ*_e‖₂ with the period-2 centre
                       θ*_e = (θ_{e−1} + 2θ_e + θ_{e+1})/4, i.e.
                       ‖θ_{e−1} − 2θ_e + θ_{e+1}‖₂ / 4 (REFERENCE §10; a pure period-2
                       oscillation ±a about a fixed point gives ‖a‖, a straight
                       trajectory gives 0). NaN at the first and last row.
sharpness              λ_max(H) (= eig_top_1)
lambda_min             smallest eigenvalue found (eig_bot_1; NaN when k_bottom = 0)
eig_top_i, eig_bot_i   top-k (descending) and bottom-k (ascending) eigenvalues
resid_max              largest relative residual ‖Hv − λv‖ / max|λ| of those pairs
eig_converged          all pairs met the tolerance
n_matvec               Hessian-vector products spent at this evaluation
cos_prev_i             |cos(v_i(prev eval), v_i(this eval))| index-matched (the
                       author's ``cos_sim``)
ccos_prev_i            the same, but near-degenerate pairs compared as a subspace
                       (:func:`instab_lib.rotation.eigenvector_similarity`)
subspace_prev          top-k subspace similarity (``dk_cos``) with the previous eval
cos_ref_i,             the same against the reference evaluation (``reference_epoch``)
subspace_ref
hutch_trace(_se)       Hutchinson estimate of tr(H^p) and its standard error
hutch_root             tr(H^p)^(1/p) (≥ λ_max for even p; → λ_max as p grows)
eig_time_s             seconds spent in this evaluation's spectra
=====================  ==============================================================

Runs are cached under ``cache_dir/<key>/`` with ``key`` a hash of the full
configuration (defaults filled in), of the library code a run executes
(:func:`instab_lib.provenance.run_fingerprint`: a change that can alter a number gives
a new key, a change to comments or docstrings does not) and of the arithmetic it runs
on (torch version, CPU kernel capability, seed offset:
:func:`instab_lib.provenance.numerics_environment`): ``result.json`` (status, timings, data source),
``table.npz`` (exact) + ``table.csv`` (for people), ``snapshots/epoch_<e>.pt``. A
finished run is read back instead of retrained. During training a checkpoint
(``checkpoint.pt``: parameters, buffers, optimiser state, shuffling generator,
eigen-trackers, rows so far) is written every ``checkpoint_every`` epochs, so a killed
run resumes without losing records and ends with the same numbers. All writes are
atomic (temporary file + ``os.replace``).

Status: ``"finished"`` (epoch cap), ``"early_stopped"`` (train accuracy ≥
``target_train_acc``) or ``"diverged"`` (a non-finite loss or parameter, or a loss above
``divergence_factor`` × the initial loss; ``diverged_step`` is the optimiser step at
which it was seen). Divergence is a result, never an exception.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import data as data_mod
from . import repo_root
from . import models as models_mod
from . import optim as optim_mod
from . import provenance
from . import seeding
from .progress import progress as progress_bar
from .progress import quiet

__all__ = ["TrainConfig", "RunResult", "train", "load_run", "config_key", "period2_oscillation",
           "LOSSES", "default_cache_dir"]

STATUSES = ("finished", "early_stopped", "diverged")


# --------------------------------------------------------------------------- losses
def _mse(out: Tensor, y: Tensor) -> Tensor:
    """``mean_{i,c} (f_c(x_i) − onehot(y_i)_c)²`` (PyTorch's ``mse_loss`` on one-hot targets;
    for the 2-class depth-1 control this gives S₀ = λ_max(Σ x̃x̃ᵀ/N) ≈ 485 on the first 200
    images, the scale of the author's 458–473)."""
    return F.mse_loss(out, F.one_hot(y, out.shape[-1]).to(out.dtype))


#: ``name → loss_fn(logits (N, C), y (N,) int64) -> scalar mean``.
LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"ce": F.cross_entropy, "mse": _mse}


def period2_oscillation(prev: Tensor, cur: Tensor, nxt: Tensor) -> float:
    """‖θ_t − θ*_t‖₂ with θ*_t = (θ_{t−1} + 2θ_t + θ_{t+1})/4 (REFERENCE §10), for flat
    parameter vectors of shape (dim,): equals ‖θ_{t−1} − 2θ_t + θ_{t+1}‖₂ / 4."""
    return float(torch.linalg.vector_norm((prev.double() - 2 * cur.double() + nxt.double()) / 4))


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run (JSON-able; the run key hashes all of it except
    ``data_dir`` and ``checkpoint_every``, which do not change the numbers)."""

    # data
    dataset: str = "fashion-mnist"
    n_train: int | None = 1000  #: first n training images (None: all)
    n_test: int | None = 2000  #: first n test images (0: no test metrics)
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
    seed: int = 0  #: initialisation, minibatch order, eigen-solver starts, probes
    device: str = "cpu"
    dtype: str = "float32"
    # spectra
    eval_every: int = 1  #: spectra every m epochs (0: never), and at the last epoch
    k_top: int = 1
    k_bottom: int = 0
    eig_tol: float = 1e-3  #: relative residual ‖Hv − λv‖ ≤ tol · max|λ|
    hessian_n: int | None = None  #: Hessian on the first n training images (None: all)
    hessian_chunk: int | None = None  #: HVPs over chunks of this many images
    reference_epoch: int = 0  #: eigenvectors compared against those of this epoch
    hutchinson_samples: int = 0  #: 0: off, else ≥ 2 Rademacher probes per evaluation
    hutchinson_power: int = 1
    snapshot_epochs: tuple[int, ...] = ()  #: save θ (and eigenvectors) at these epochs
    # bookkeeping
    checkpoint_every: int = 25
    data_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("model_kwargs", "optimizer_kwargs"):
            object.__setattr__(self, name, dict(getattr(self, name) or {}))
        if self.lr_schedule is not None:
            object.__setattr__(self, "lr_schedule", dict(self.lr_schedule))
        object.__setattr__(self, "snapshot_epochs", tuple(int(e) for e in self.snapshot_epochs))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        self.validate()

    # -- derived ----------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.classes is not None else 10

    def resolved_model_kwargs(self) -> dict[str, Any]:
        """Model kwargs with the data set's input shape and class count filled in, then
        the builder's defaults (what the run key hashes)."""
        ds = data_mod.DATASETS[data_mod.canonical_name(self.dataset)]
        c, h, w = ds["shape"]
        fill: dict[str, Any] = {}
        if self.model in ("mlp",):
            fill = {"input_dim": c * h * w, "n_classes": self.n_classes}
        elif self.model == "linear":
            fill = {"input_dim": c * h * w, "n_out": self.n_classes}
        elif self.model == "vgg":
            fill = {"in_channels": c, "n_classes": self.n_classes, "image_size": h}
        elif self.model == "resnet20":
            fill = {"in_channels": c, "n_classes": self.n_classes}
        out = dict(models_mod.model_kwargs(self.model))
        out.update(fill)
        out.update(self.model_kwargs)
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

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["snapshot_epochs"] = list(self.snapshot_epochs)
        d["classes"] = list(self.classes) if self.classes is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        d = dict(d)
        if d.get("snapshot_epochs") is not None:
            d["snapshot_epochs"] = tuple(d["snapshot_epochs"])
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

        def pos_int(name: str, v: Any, *, none_ok: bool = False, zero_ok: bool = False) -> None:
            if v is None and none_ok:
                return
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if zero_ok else 1):
                raise ValueError(f"{name} must be an integer ≥ {0 if zero_ok else 1}"
                                 f"{' or None' if none_ok else ''}, got {v!r}")

        ds = data_mod.canonical_name(self.dataset)
        pos_int("n_train", self.n_train, none_ok=True)
        pos_int("n_test", self.n_test, none_ok=True, zero_ok=True)
        if self.balanced and self.n_train is not None and self.n_train % self.n_classes:
            raise ValueError(f"balanced=True needs n_train divisible by {self.n_classes}, got {self.n_train}")
        if self.classes is not None and (len(set(self.classes)) != len(self.classes)
                                         or not set(self.classes) <= set(range(10)) or len(self.classes) < 2):
            raise ValueError(f"classes must be ≥ 2 distinct labels in 0…9, got {self.classes}")
        if self.model not in models_mod.MODELS:
            raise ValueError(f"unknown model {self.model!r}; known: {sorted(models_mod.MODELS)}")
        if self.model == "dln":
            raise ValueError("model 'dln' is a toy without data: use instab_lib.dln / optim directly")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; known: {sorted(LOSSES)}")
        accepted, required = optim_mod.optimizer_hyperparameters(self.optimizer)
        bad = sorted(set(self.optimizer_kwargs) - set(accepted))
        if bad:
            raise ValueError(f"optimizer {self.optimizer!r} does not take {bad}; it takes {accepted}")
        missing = [r for r in required if r not in self.optimizer_kwargs]
        if missing:
            raise ValueError(f"optimizer {self.optimizer!r} needs optimizer_kwargs {missing}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) \
                or self.lr <= 0:
            raise ValueError(f"lr (learning rate) must be a positive finite number, got {self.lr!r}")
        optim_mod.make_schedule(self.lr, self.lr_schedule)  # raises on a bad spec
        self._optimizer(steps_per_epoch=1)  # raises on bad hyperparameter values (c ≤ 0, β ≥ 1, …)
        pos_int("batch_size", self.batch_size, none_ok=True)
        if self.batch_size is not None and self.n_train is not None and self.batch_size > self.n_train:
            raise ValueError(f"batch_size {self.batch_size} exceeds n_train {self.n_train}")
        pos_int("epochs", self.epochs)
        if self.target_train_acc is not None and not (0 < self.target_train_acc <= 1):
            raise ValueError(f"target_train_acc must lie in (0, 1] or be None, got {self.target_train_acc}")
        if self.divergence_factor is not None and not (self.divergence_factor > 1):
            raise ValueError(f"divergence_factor must be > 1 or None, got {self.divergence_factor}")
        pos_int("seed", self.seed, zero_ok=True)
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} asked for, but CUDA is not available here")
        pos_int("eval_every", self.eval_every, zero_ok=True)
        pos_int("k_top", self.k_top, zero_ok=True)
        pos_int("k_bottom", self.k_bottom, zero_ok=True)
        if self.eval_every and self.k_top + self.k_bottom == 0:
            raise ValueError("eval_every > 0 needs k_top ≥ 1 or k_bottom ≥ 1 (or set eval_every=0)")
        if not (self.eig_tol > 0):
            raise ValueError(f"eig_tol must be positive, got {self.eig_tol}")
        pos_int("hessian_n", self.hessian_n, none_ok=True)
        if self.hessian_n is not None and self.n_train is not None and self.hessian_n > self.n_train:
            raise ValueError(f"hessian_n {self.hessian_n} exceeds n_train {self.n_train}")
        pos_int("hessian_chunk", self.hessian_chunk, none_ok=True)
        if self.hutchinson_samples == 1 or self.hutchinson_samples < 0:
            raise ValueError(f"hutchinson_samples must be 0 (off) or ≥ 2, got {self.hutchinson_samples}")
        pos_int("hutchinson_power", self.hutchinson_power)
        if self.eval_every:
            if self.reference_epoch % self.eval_every or not 0 <= self.reference_epoch <= self.epochs:
                raise ValueError(f"reference_epoch {self.reference_epoch} must be an evaluation epoch "
                                 f"(a multiple of eval_every={self.eval_every} in [0, epochs])")
        bad_snap = [e for e in self.snapshot_epochs if not 0 <= e <= self.epochs]
        if bad_snap:
            raise ValueError(f"snapshot_epochs {bad_snap} outside [0, epochs={self.epochs}]")
        pos_int("checkpoint_every", self.checkpoint_every)
        try:
            model = models_mod.build_model(self.model, seed=0, **self.resolved_model_kwargs())
        except ValueError as e:
            raise ValueError(f"model_kwargs: {e}") from None
        dim = models_mod.count_parameters(model)
        if self.eval_every and self.k_top + self.k_bottom >= dim:
            raise ValueError(f"k_top + k_bottom = {self.k_top + self.k_bottom} must be < the parameter "
                             f"count {dim}")
        _ = ds

    def _optimizer(self, steps_per_epoch: int) -> optim_mod.Optimizer:
        sched = optim_mod.make_schedule(self.lr, self.lr_schedule, steps_per_epoch=steps_per_epoch)
        return optim_mod.make_optimizer(self.optimizer, sched, **self.optimizer_kwargs)


def config_key(config: TrainConfig) -> str:
    """16 hex digits of SHA-256 over the configuration with defaults filled in, the
    fingerprint of the code a run executes and the numerics environment (module docstring)."""
    d = config.to_dict()
    d.pop("data_dir")
    d.pop("checkpoint_every")
    d["dataset"] = data_mod.canonical_name(config.dataset)
    d["model_kwargs"] = config.resolved_model_kwargs()
    d["optimizer_kwargs"] = config.resolved_optimizer_kwargs()
    d["_code"] = provenance.run_fingerprint()
    d["_numerics"] = provenance.numerics_environment()
    d["_numerics"].pop("aten_cpu_capability")  # the capability itself is what counts
    blob = json.dumps(d, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$INSTAB_RUNS`` or ``<repo>/_build/runs``."""
    env = os.environ.get("INSTAB_RUNS")
    return Path(env) if env else repo_root() / "_build" / "runs"


# --------------------------------------------------------------------------- result
@dataclass
class RunResult:
    """A run: its config, ``status``, the table (one row per epoch, see module docstring),
    ``diverged_step``/``diverged_epoch`` (None unless diverged), timings and data source.
    ``path`` is the run's folder (``None`` for runs not saved)."""

    config: TrainConfig
    key: str
    status: str
    table: pd.DataFrame
    diverged_step: int | None = None
    diverged_epoch: int | None = None
    data_source: str = ""
    wall_time_s: float = 0.0
    spectra_time_s: float = 0.0
    path: Path | None = None
    error: str | None = None

    @property
    def spectra(self) -> pd.DataFrame:
        """The rows where the spectrum was computed."""
        if "sharpness" not in self.table:
            return self.table.iloc[0:0]
        return self.table[self.table["sharpness"].notna()].reset_index(drop=True)

    @property
    def epochs_run(self) -> int:
        return int(self.table["epoch"].iloc[-1]) if len(self.table) else 0

    def final(self) -> dict[str, float]:
        """Last row's losses/accuracies, last and max sharpness."""
        if not len(self.table):
            return {}
        last = self.table.iloc[-1]
        out = {k: float(last[k]) for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
        sp = self.spectra
        out["sharpness"] = float(sp["sharpness"].iloc[-1]) if len(sp) else float("nan")
        out["max_sharpness"] = float(sp["sharpness"].max()) if len(sp) else float("nan")
        out["epochs"] = self.epochs_run
        return out

    def snapshot(self, epoch: int) -> dict[str, Any]:
        """``{"theta": (dim,), "eigenvectors": (dim, k) or None, "eigenvalues": …}`` saved
        at ``epoch`` (one of ``config.snapshot_epochs``)."""
        if self.path is None:
            raise FileNotFoundError("run was not saved")
        f = self.path / "snapshots" / f"epoch_{epoch}.pt"
        if not f.is_file():
            raise FileNotFoundError(f"no snapshot at epoch {epoch} (saved: {self.config.snapshot_epochs})")
        return torch.load(f, weights_only=False)


# --------------------------------------------------------------------------- io
def _atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _save_table(path: Path, table: pd.DataFrame) -> None:
    cols = {c: table[c].to_numpy() for c in table.columns}
    _atomic_write_bytes(path / "table.npz", lambda f: np.savez(f, __columns__=np.array(list(table.columns)), **cols))
    _atomic_write_bytes(path / "table.csv", lambda f: f.write(table.to_csv(index=False).encode()))


def _load_table(path: Path) -> pd.DataFrame:
    with np.load(path / "table.npz", allow_pickle=False) as z:
        cols = [str(c) for c in z["__columns__"]]
        return pd.DataFrame({c: z[c] for c in cols}, columns=cols)


def load_run(path: str | os.PathLike) -> RunResult:
    """Read a finished run back from its folder."""
    p = Path(path)
    meta = json.loads((p / "result.json").read_text())
    return RunResult(
        config=TrainConfig.from_dict(meta["config"]), key=meta["key"], status=meta["status"],
        table=_load_table(p), diverged_step=meta["diverged_step"], diverged_epoch=meta["diverged_epoch"],
        data_source=meta["data_source"], wall_time_s=meta["wall_time_s"],
        spectra_time_s=meta["spectra_time_s"], path=p,
    )


def _save_result(res: RunResult) -> None:
    assert res.path is not None
    _save_table(res.path, res.table)
    meta = {
        "key": res.key, "status": res.status, "diverged_step": res.diverged_step,
        "diverged_epoch": res.diverged_epoch, "data_source": res.data_source,
        "wall_time_s": res.wall_time_s, "spectra_time_s": res.spectra_time_s,
        "config": res.config.to_dict(), "final": res.final(),
        "provenance": provenance.stamp_fields(res.config.device),
    }
    blob = json.dumps(meta, indent=1, default=str).encode()
    _atomic_write_bytes(res.path / "result.json", lambda f: f.write(blob))  # written last: marks done


# --------------------------------------------------------------------------- helpers
def _flat(params: list[Tensor]) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params]).clone()


@torch.no_grad()
def _evaluate(model: nn.Module, loss_fn: Callable, X: Tensor, y: Tensor, chunk: int = 4096) -> tuple[float, float]:
    """(mean loss, accuracy) in eval mode, over chunks of ``chunk`` samples."""
    if len(y) == 0:
        return float("nan"), float("nan")
    was = model.training
    model.eval()
    tot_loss, correct = 0.0, 0
    for i in range(0, len(y), chunk):
        out = model(X[i:i + chunk])
        tot_loss += float(loss_fn(out, y[i:i + chunk])) * len(out)
        correct += int((out.argmax(-1) == y[i:i + chunk]).sum())
    model.train(was)
    return tot_loss / len(y), correct / len(y)


# --------------------------------------------------------------------------- train
def train(
    config: TrainConfig,
    cache_dir: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
    use_cache: bool = True,
    num_threads: int | None = None,
) -> RunResult:
    """Train (or read back) the run of ``config``; see the module docstring.

    Args:
        config: the run (validated already at construction).
        cache_dir: folder holding runs (default :func:`default_cache_dir`).
        progress: tqdm bar in a terminal (never when ``INSTAB_QUIET=1``).
        callback: ``callback(epoch, row)`` after each recorded epoch (after the
            checkpoint of that epoch); an exception in it propagates, leaving the last
            checkpoint to resume from.
        use_cache: ``False``: neither read nor write anything on disk.
        num_threads: torch's intra-op threads during this run (restored afterwards).
            On a busy 2-core machine ``1`` can be 10–100× faster for small models
            (idle OpenMP threads spin); results are bit-for-bit reproducible for a
            fixed thread count.

    Returns:
        :class:`RunResult` (``status`` ∈ finished, early_stopped, diverged).
    """
    config.validate()
    key = config_key(config)
    run_dir = Path(cache_dir if cache_dir is not None else default_cache_dir()) / key if use_cache else None
    if run_dir is not None and (run_dir / "result.json").is_file():
        return load_run(run_dir)
    old_threads = torch.get_num_threads()
    if num_threads is not None:
        if num_threads < 1:
            raise ValueError(f"num_threads must be ≥ 1, got {num_threads}")
        torch.set_num_threads(num_threads)
    try:
        res = _run_training(config, key, run_dir, progress=progress, callback=callback)
    finally:
        torch.set_num_threads(old_threads)
    if run_dir is not None:
        res.path = run_dir
        _save_result(res)
        ck = run_dir / "checkpoint.pt"
        if ck.exists():
            ck.unlink()
    return res


def _run_training(
    cfg: TrainConfig,
    key: str,
    run_dir: Path | None,
    *,
    progress: bool,
    callback: Callable[[int, dict[str, Any]], None] | None,
) -> RunResult:
    """The training loop proper (resumes from ``run_dir/checkpoint.pt`` when present)."""
    from . import curvature, rotation

    t_start = time.perf_counter()
    device = torch.device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    ds = data_mod.load_dataset(cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test,
                               balanced=cfg.balanced, classes=cfg.classes, data_dir=cfg.data_dir)
    Xtr, ytr = ds.X_train.to(device, dtype), ds.y_train.to(device)
    Xte, yte = ds.X_test.to(device, dtype), ds.y_test.to(device)
    n = len(ytr)
    bs = cfg.batch_size or n
    steps_per_epoch = math.ceil(n / bs)
    hn = cfg.hessian_n or n
    hess_data = (Xtr[:hn], ytr[:hn])
    loss_fn = LOSSES[cfg.loss]
    model = models_mod.build_model(cfg.model, seed=cfg.seed, **cfg.resolved_model_kwargs()).to(device, dtype)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = cfg._optimizer(steps_per_epoch)
    opt_state = opt.init(params)
    gen = seeding.torch_generator(cfg.seed)
    trackers = {}
    if cfg.eval_every and cfg.k_top:
        trackers["top"] = curvature.EigTracker(cfg.k_top, "LA", tol=cfg.eig_tol, seed=cfg.seed)
    if cfg.eval_every and cfg.k_bottom:
        trackers["bot"] = curvature.EigTracker(cfg.k_bottom, "SA", tol=cfg.eig_tol, seed=cfg.seed + 7919)
    st: dict[str, Any] = {
        "epoch": 0, "step": 0, "rows": [], "prev": None, "ref": None, "theta_prev": None,
        "theta_cur": None, "ref_loss": None, "spectra_time": 0.0, "status": None,
        "diverged_step": None, "diverged_epoch": None, "elapsed": 0.0,
    }
    ck_path = run_dir / "checkpoint.pt" if run_dir is not None else None
    resumed = False
    if ck_path is not None and ck_path.is_file():
        ck = torch.load(ck_path, weights_only=False, map_location=device)
        model.load_state_dict(ck["model"])
        opt_state = ck["opt_state"]
        gen.set_state(ck["gen"])
        trackers = ck["trackers"]
        st = ck["st"]
        resumed = True
    t_start -= st["elapsed"]

    def save_checkpoint() -> None:
        if ck_path is None:
            return
        st["elapsed"] = time.perf_counter() - t_start
        blob = {"model": model.state_dict(), "opt_state": opt_state, "gen": gen.get_state(),
                "trackers": trackers, "st": st}
        _atomic_write_bytes(ck_path, lambda f: torch.save(blob, f))

    def spectra(epoch: int, row: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        op = curvature.HessianOperator(model, loss_fn, hess_data, chunk_size=cfg.hessian_chunk)
        n_mv, resid, conv = 0, 0.0, True
        results = {}
        for name, tr in trackers.items():
            r = tr.update(op)
            results[name] = r
            n_mv += r.n_matvec
            scale = r.scale if math.isfinite(r.scale) and r.scale > 0 else 1.0
            resid = max(resid, float(r.residuals.max()) / scale)
            conv = conv and r.converged
        if "top" in results:
            ev = results["top"].eigenvalues.double().cpu()
            for i, v in enumerate(ev.tolist(), 1):
                row[f"eig_top_{i}"] = v
            row["sharpness"] = ev[0].item()
            cur = results["top"]
            if st["prev"] is not None:
                rep = rotation.eigenvector_similarity(st["prev"], cur)
                for i in range(cfg.k_top):
                    row[f"cos_prev_{i + 1}"] = float(rep.raw_cosines[i])
                    row[f"ccos_prev_{i + 1}"] = float(rep.cosines[i])
                row["subspace_prev"] = rep.subspace
            if epoch == cfg.reference_epoch:
                st["ref"] = _light(cur)
            if st["ref"] is not None:
                V, R = cur.eigenvectors, st["ref"].eigenvectors
                for i in range(cfg.k_top):
                    row[f"cos_ref_{i + 1}"] = rotation.abs_cosine(R[:, i], V[:, i])
                row["subspace_ref"] = rotation.subspace_similarity(R, V)
            st["prev"] = _light(cur)
        if "bot" in results:
            ev = results["bot"].eigenvalues.double().cpu()
            for i, v in enumerate(ev.tolist(), 1):
                row[f"eig_bot_{i}"] = v
            row["lambda_min"] = ev[0].item()
        if cfg.hutchinson_samples:
            est, se = curvature.hutchinson_trace(op, cfg.hutchinson_samples, seed=cfg.seed * 1_000_003 + epoch,
                                                 power=cfg.hutchinson_power)
            n_mv += cfg.hutchinson_samples * ((cfg.hutchinson_power + 1) // 2)
            row["hutch_trace"], row["hutch_trace_se"] = est, se
            row["hutch_root"] = est ** (1 / cfg.hutchinson_power) if est > 0 else float("nan")
        op.release()
        row["resid_max"], row["eig_converged"], row["n_matvec"] = resid, float(conv), n_mv
        dt = time.perf_counter() - t0
        row["eig_time_s"] = dt
        st["spectra_time"] += dt
        if epoch in cfg.snapshot_epochs and run_dir is not None:
            snap = {"epoch": epoch, "theta": _flat(params).cpu(),
                    "eigenvalues": results["top"].eigenvalues.cpu() if "top" in results else None,
                    "eigenvectors": results["top"].eigenvectors.cpu() if "top" in results else None,
                    "bottom_eigenvalues": results["bot"].eigenvalues.cpu() if "bot" in results else None,
                    "bottom_eigenvectors": results["bot"].eigenvectors.cpu() if "bot" in results else None}
            _atomic_write_bytes(run_dir / "snapshots" / f"epoch_{epoch}.pt", lambda f: torch.save(snap, f))

    def record(epoch: int, diverged: bool) -> dict[str, Any]:
        """Row for θ_epoch; decides early stop / divergence; spectra when due."""
        theta = _flat(params)
        tr_loss, tr_acc = _evaluate(model, loss_fn, Xtr, ytr)
        te_loss, te_acc = _evaluate(model, loss_fn, Xte, yte)
        row: dict[str, Any] = {
            "epoch": epoch, "step": st["step"], "lr": opt.lr_at(st["step"]),
            "train_loss": tr_loss, "train_acc": tr_acc, "test_loss": te_loss, "test_acc": te_acc,
            "param_norm": float(torch.linalg.vector_norm(theta.double())),
            "step_norm": float(torch.linalg.vector_norm((theta - st["theta_cur"]).double()))
            if st["theta_cur"] is not None else float("nan"),
            "osc": float("nan"),
        }
        if st["theta_prev"] is not None and st["rows"]:
            st["rows"][-1]["osc"] = period2_oscillation(st["theta_prev"], st["theta_cur"], theta)
        st["theta_prev"], st["theta_cur"] = st["theta_cur"], theta
        if st["ref_loss"] is None:
            st["ref_loss"] = tr_loss if math.isfinite(tr_loss) else 1.0
        blown = (not math.isfinite(tr_loss) or not bool(torch.isfinite(theta).all())
                 or (cfg.divergence_factor is not None
                     and tr_loss > cfg.divergence_factor * max(st["ref_loss"], 1e-12)))
        if diverged or blown:
            st["status"] = "diverged"
            if st["diverged_step"] is None:
                st["diverged_step"] = st["step"]
            if st["diverged_epoch"] is None:
                st["diverged_epoch"] = epoch
        elif cfg.target_train_acc is not None and tr_acc >= cfg.target_train_acc and epoch > 0:
            st["status"] = "early_stopped"
        elif epoch >= cfg.epochs:
            st["status"] = "finished"
        if st["status"] != "diverged" and cfg.eval_every and (
                epoch % cfg.eval_every == 0 or st["status"] is not None):
            spectra(epoch, row)
        elif epoch in cfg.snapshot_epochs and run_dir is not None and st["status"] != "diverged":
            snap = {"epoch": epoch, "theta": theta.cpu(), "eigenvalues": None, "eigenvectors": None}
            _atomic_write_bytes(run_dir / "snapshots" / f"epoch_{epoch}.pt", lambda f: torch.save(snap, f))
        st["rows"].append(row)
        return row

    def run_epoch() -> bool:
        """One epoch of optimiser steps; True if a non-finite/blown-up loss was seen."""
        nonlocal opt_state
        perm = torch.randperm(n, generator=gen).to(device) if bs < n else None
        for b in range(steps_per_epoch):
            if perm is None:
                xb, yb = Xtr, ytr
            else:
                idx = perm[b * bs:(b + 1) * bs]
                xb, yb = Xtr[idx], ytr[idx]
            loss = loss_fn(model(xb), yb)
            lv = float(loss.detach())
            if not math.isfinite(lv) or (cfg.divergence_factor is not None and st["ref_loss"] is not None
                                          and lv > cfg.divergence_factor * max(st["ref_loss"], 1e-12)):
                st["diverged_step"] = st["step"]
                return True
            grads = torch.autograd.grad(loss, params)
            new, opt_state = opt.update(list(grads), opt_state, params)
            with torch.no_grad():
                for p, q in zip(params, new):
                    p.copy_(q)
            st["step"] += 1
        return False

    bar = None
    if progress and not quiet():
        bar = progress_bar(total=cfg.epochs, initial=st["epoch"], desc=f"{cfg.model} η={cfg.lr:g}")
    if not resumed:
        record(0, diverged=False)
        if callback is not None:
            callback(0, st["rows"][-1])
    while st["status"] is None:
        diverged = run_epoch()
        st["epoch"] += 1
        row = record(st["epoch"], diverged)
        if bar is not None:
            bar.update(1)
            post = {"loss": f"{row['train_loss']:.3g}", "acc": f"{row['train_acc']:.3f}"}
            if "sharpness" in row:
                post["S"] = f"{row['sharpness']:.3g}"
            bar.set_postfix(post, refresh=False)
        if st["status"] is None and st["epoch"] % cfg.checkpoint_every == 0:
            save_checkpoint()
        if callback is not None:
            callback(st["epoch"], row)
    if bar is not None:
        bar.close()
    table = pd.DataFrame(st["rows"])
    table = table[_column_order(table.columns)]
    return RunResult(
        config=cfg, key=key, status=st["status"], table=table,
        diverged_step=st["diverged_step"] if st["status"] == "diverged" else None,
        diverged_epoch=st["diverged_epoch"] if st["status"] == "diverged" else None,
        data_source=ds.source, wall_time_s=time.perf_counter() - t_start,
        spectra_time_s=st["spectra_time"], path=run_dir,
    )


def _light(r: Any) -> Any:
    """An EigResult reduced to what later comparisons need (no ``extra``)."""
    return dataclasses.replace(r, extra={})


_ORDER = ["epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "param_norm",
          "step_norm", "osc", "sharpness", "lambda_min"]


def _column_order(cols: Any) -> list[str]:
    cols = list(cols)
    head = [c for c in _ORDER if c in cols]
    return head + [c for c in cols if c not in head]
