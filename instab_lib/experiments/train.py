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
test_loss, test_acc    on the test subset (NaN when ``n_test == 0``, and between the
                       ``test_every`` epochs; the last row always has them)
val_loss, val_acc      with ``n_val`` > 0: on the validation subset (the last ``n_val``
                       training images), at the same epochs as the test metrics
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
cos_par_i,             the same (degenerate-safe) against the latest earlier evaluation of
subspace_par, par_lag  the same parity, ``par_lag`` epochs back (t − 2 with spectra every
                       epoch): the rotation measure that does not count the period-2 flip
cos_ref_i,             the same against the reference evaluation (``reference_epoch``)
subspace_ref
hutch_trace(_se)       Hutchinson estimate of tr(H^p) and its standard error
hutch_root             tr(H^p)^(1/p) (≥ λ_max for even p; → λ_max as p grows)
eig_time_s             seconds spent in this evaluation's spectra
root_max               adaptive optimisers with ``precond_every``: the largest unclipped
                       √(v̂ + ε_root) over the epoch's steps and coordinates
p_sharpness,           every ``precond_every`` epochs: λ_max(D^{-1/2} H D^{-1/2}) with D
p_threshold,           the last step's denominator, its stability threshold, the
clip_fraction,         fraction of coordinates where a Clipped-Ada clip bound, and the
p_n_matvec             products spent (:class:`instab_lib.experiments.hooks.Preconditioned`)
clip_mean, clip_max,   with ``clip_candidates``: per epoch, the mean and largest per-step
bind_<c>               fraction of coordinates where the run's own clip bound, and the mean
                       fraction where each candidate c would bind
                       (:class:`instab_lib.experiments.hooks.ClipTrace`)
=====================  ==============================================================

The loop itself is :mod:`instab_lib.experiments.loop` (``init_run`` + ``run_epoch``); every column
beyond the losses comes from a hook of :mod:`instab_lib.experiments.hooks`.

Runs are cached under ``cache_dir/<key>/`` with ``key`` a hash of the full
configuration (defaults filled in), of the library code a run executes
(:func:`instab_lib.experiments.fingerprint.run_fingerprint`: a change that can alter a number gives
a new key, a change to comments or docstrings does not) and of the arithmetic it runs
on (torch version, CPU kernel capability, seed offset:
:func:`instab_lib.experiments.fingerprint.numerics_environment`): ``result.json`` (status, timings, data source,
the SHA-256 digest of every other file), ``table.npz`` (exact) + ``table.csv`` (for people),
``snapshots/epoch_<e>.pt``. A finished run is read back instead of retrained; an entry that
cannot be read (a file missing, truncated, emptied or garbled: its bytes no longer match their
digest) is treated as missing, with one warning line naming the file
(:mod:`instab_lib.experiments.cache_files`): the run is trained again (a damaged ``table.csv``
is only rewritten from the table, a damaged checkpoint only discarded). During training a checkpoint
(``checkpoint.pt``: parameters, buffers, optimiser state, shuffling generator,
eigen-trackers, rows so far) is written at multiples of ``checkpoint_every`` epochs, at most
once per ``checkpoint_seconds`` of wall time (a checkpoint pickles every row so far, so on a
run of 10^4 epochs a checkpoint every 25 epochs cost as much as the training), so a killed
run resumes with little lost and ends with the same numbers. All writes are
atomic (temporary file + ``os.replace``); the checkpoint carries its own digest.

Status: ``"finished"`` (epoch cap), ``"early_stopped"`` (train accuracy ≥
``target_train_acc``), ``"diverged"`` (a non-finite loss or parameter, or a loss above
``divergence_factor`` × the initial loss; ``diverged_step`` is the optimiser step at
which it was seen) or ``"stalled"`` (with ``stall_epochs = k``: the train accuracy stayed
below :func:`chance_ceiling` (2/#classes for 10 classes) for the last k epochs while the
loss fell by less than 0.1 %, a network that died and will never learn). Divergence is a
result, never an exception.

For a full-batch run of a model without BatchNorm or Dropout the row's training loss and
accuracy come from the forward pass the next step's gradient uses
(:func:`instab_lib.experiments.loop.forward_metrics`): the same numbers, one forward pass less per epoch.
``snapshot_final`` saves θ at the last epoch too, which a run with ``init_from`` (the
configuration of another run, as a dict) starts from (:func:`final_parameters`).
"""

from __future__ import annotations

import io
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

from . import fingerprint, loop
from . import hooks as hooks_mod
from .cache_files import (Damaged, atomic_write_bytes, check_digest, entry_lock, read_json, read_sealed, warn_damaged,
                          write_sealed)
from .config import TrainConfig, config_key, default_cache_dir
from .hooks import period2_oscillation
from .losses import LOSSES
from .progress import progress as progress_bar
from .progress import quiet
from .seeding import torch_generator

__all__ = ["TrainConfig", "RunResult", "train", "load_run", "cached_run", "config_key", "period2_oscillation",
           "LOSSES", "default_cache_dir", "STATUSES", "final_parameters", "chance_ceiling"]

STATUSES = ("finished", "early_stopped", "diverged", "stalled")
#: A stalled run's loss fell by less than this fraction over its last ``stall_epochs`` epochs.
STALL_REL_DROP = 1e-3


def chance_ceiling(n_classes: int) -> float:
    """The train accuracy below which a run counts as at chance level: ``min(2/n, 1/n + (1 − 1/n)/4)``
    (0.2 for 10 classes, 0.625 for 2, where 2/n would be 1)."""
    return min(2.0 / n_classes, 1.0 / n_classes + (1.0 - 1.0 / n_classes) / 4)


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
    #: SHA-256 digest of each file of the run's folder (``table.npz``, ``snapshots/epoch_5.pt``, …)
    files: dict[str, str] = field(default_factory=dict)

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
        at ``epoch`` (one of ``config.snapshot_epochs``). A damaged snapshot file is warned
        about once and the run trained again (the same numbers), then read."""
        if self.path is None:
            raise FileNotFoundError("run was not saved")
        rel = f"snapshots/epoch_{epoch}.pt"
        if rel not in self.files:
            raise FileNotFoundError(f"no snapshot at epoch {epoch} (saved: {self.config.snapshot_epochs})")
        try:
            return _read_snapshot(self.path / rel, self.files[rel])
        except Damaged as damage:
            warn_damaged(damage, "training the run again")
        _discard(self.path)
        self.files = train(self.config, self.path.parent, progress=False).files
        return _read_snapshot(self.path / rel, self.files[rel])


def _read_snapshot(path: Path, digest: str) -> dict[str, Any]:
    check_digest(path, digest)
    return torch.load(path, weights_only=False)


# --------------------------------------------------------------------------- io
#: what ``result.json`` must hold to be read back
_RESULT_KEYS = ("key", "status", "diverged_step", "diverged_epoch", "data_source", "wall_time_s",
                "spectra_time_s", "config", "files")


def _save_table(path: Path, table: pd.DataFrame) -> dict[str, str]:
    cols = {c: table[c].to_numpy() for c in table.columns}
    return {"table.npz": atomic_write_bytes(path / "table.npz",
                                            lambda f: np.savez(f, __columns__=np.array(list(table.columns)), **cols)),
            "table.csv": atomic_write_bytes(path / "table.csv", lambda f: f.write(_csv_bytes(table)))}


def _csv_bytes(table: pd.DataFrame) -> bytes:
    return table.to_csv(index=False).encode()


def _load_table(path: Path, digest: str) -> pd.DataFrame:
    f = path / "table.npz"
    check_digest(f, digest)
    try:
        with np.load(f, allow_pickle=False) as z:
            cols = [str(c) for c in z["__columns__"]]
            return pd.DataFrame({c: z[c] for c in cols}, columns=cols)
    except Exception as exc:  # noqa: BLE001 - any failure to parse is damage
        raise Damaged(f, f"{type(exc).__name__}: {exc}") from None


def load_run(path: str | os.PathLike) -> RunResult:
    """Read a finished run back from its folder; :class:`~instab_lib.experiments.cache_files.Damaged`
    when ``result.json`` or ``table.npz`` cannot be read. A damaged ``table.csv`` (for people only) is
    rewritten from the table, with one warning line."""
    p = Path(path)
    meta = read_json(p / "result.json", _RESULT_KEYS)
    try:
        config = TrainConfig.from_dict(meta["config"])
    except (TypeError, ValueError, KeyError) as exc:
        raise Damaged(p / "result.json", f"its config does not load ({type(exc).__name__}: {exc})") from None
    if meta["key"] != p.name or not isinstance(meta["files"], dict) or "table.npz" not in meta["files"]:
        raise Damaged(p / "result.json", "not the record of this run")
    table = _load_table(p, meta["files"]["table.npz"])
    try:
        check_digest(p / "table.csv", meta["files"].get("table.csv"))
    except Damaged as damage:
        warn_damaged(damage, "rewriting it from table.npz")
        atomic_write_bytes(p / "table.csv", lambda f: f.write(_csv_bytes(table)))
    return RunResult(
        config=config, key=meta["key"], status=meta["status"], table=table, diverged_step=meta["diverged_step"],
        diverged_epoch=meta["diverged_epoch"], data_source=meta["data_source"], wall_time_s=meta["wall_time_s"],
        spectra_time_s=meta["spectra_time_s"], path=p, files=dict(meta["files"]),
    )


def cached_run(run_dir: Path) -> RunResult | None:
    """The finished run cached in ``run_dir``, or None: when there is none, and when it cannot be
    read (one warning line naming the damaged file; the entry is removed, so the caller trains it
    again)."""
    if not (run_dir / "result.json").exists():
        return None
    try:
        return load_run(run_dir)
    except Damaged as damage:
        with entry_lock(run_dir):
            try:
                return load_run(run_dir)  # another process trained it again meanwhile
            except Damaged:
                warn_damaged(damage, "training the run again")
                (run_dir / "result.json").unlink(missing_ok=True)
    return None


def _discard(run_dir: Path) -> None:
    """Mark a cached run as missing (its ``result.json`` goes; the rest is overwritten when it is
    trained again)."""
    with entry_lock(run_dir):
        (run_dir / "result.json").unlink(missing_ok=True)


def final_parameters(config: TrainConfig | Mapping[str, Any], cache_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """θ (flat) at the last epoch of the run of ``config`` (a :class:`TrainConfig` or its dict),
    trained first if it is not in the cache. The run must save it (``snapshot_final=True``)
    and must not have diverged."""
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    if not cfg.snapshot_final:
        raise ValueError("init_from: the run to continue must have snapshot_final=True")
    res = train(cfg, cache_dir, progress=False)
    if res.status == "diverged":
        raise ValueError(f"init_from: run {res.key} diverged at step {res.diverged_step}: nothing to continue")
    return res.snapshot(res.epochs_run)["theta"]


def _save_result(res: RunResult) -> None:
    assert res.path is not None
    res.files.update(_save_table(res.path, res.table))
    meta = {
        "key": res.key, "status": res.status, "diverged_step": res.diverged_step,
        "diverged_epoch": res.diverged_epoch, "data_source": res.data_source,
        "wall_time_s": res.wall_time_s, "spectra_time_s": res.spectra_time_s,
        "config": res.config.to_dict(), "final": res.final(),
        "provenance": fingerprint.stamp_fields(res.config.device), "files": res.files,
    }
    blob = json.dumps(meta, indent=1, default=str).encode()
    atomic_write_bytes(res.path / "result.json", lambda f: f.write(blob))  # written last: marks done


# --------------------------------------------------------------------------- train
def train(
    config: TrainConfig,
    cache_dir: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
    use_cache: bool = True,
    num_threads: int | None = None,
    hooks: Mapping[str, Any] | None = None,
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
        hooks: extra measurement hooks (name → :class:`instab_lib.experiments.hooks.Hook`) run after
            the default ones; their columns join the table. A run with extra hooks is not
            cached (its key would not describe its table), so pass ``use_cache=False``.

    Returns:
        :class:`RunResult` (``status`` ∈ finished, early_stopped, diverged).
    """
    config.validate()
    if hooks and use_cache:
        raise ValueError("a run with extra hooks is not cached: pass use_cache=False")
    key = config_key(config)
    run_dir = Path(cache_dir if cache_dir is not None else default_cache_dir()) / key if use_cache else None
    if run_dir is not None and (cached := cached_run(run_dir)) is not None:
        return cached
    with entry_lock(run_dir):  # two processes asking for the same run: one trains, the other reads it back
        if run_dir is not None and (run_dir / "result.json").is_file():
            try:
                return load_run(run_dir)
            except Damaged as damage:
                warn_damaged(damage, "training the run again")
        return _train_unlocked(config, key, run_dir, progress, callback, num_threads, hooks)


def _train_unlocked(config: TrainConfig, key: str, run_dir: Path | None, progress: bool,
                    callback: Callable[[int, dict[str, Any]], None] | None, num_threads: int | None,
                    hooks: Mapping[str, Any] | None) -> RunResult:
    old_threads = torch.get_num_threads()
    if num_threads is not None:
        if num_threads < 1:
            raise ValueError(f"num_threads must be ≥ 1, got {num_threads}")
        torch.set_num_threads(num_threads)
    try:
        res = _Driver(config, key, run_dir, dict(hooks or {})).run(progress=progress, callback=callback)
    finally:
        torch.set_num_threads(old_threads)
    if run_dir is not None:
        res.path = run_dir
        _save_result(res)
        ck = run_dir / "checkpoint.pt"
        if ck.exists():
            ck.unlink()
    return res


def _finite(theta: torch.Tensor, param_norm: float | None) -> bool:
    """Every entry of θ finite. Read from ``param_norm`` (‖θ‖ in float64 from the :class:`~.hooks.Norms`
    hook: finite exactly when every entry is, since a float64 sum of squared float32 values cannot
    overflow) when given, saving a pass over θ every epoch."""
    return math.isfinite(param_norm) if param_norm is not None else bool(torch.isfinite(theta).all())


class _Driver:
    """One run: :func:`instab_lib.experiments.loop.init_run`, epochs of :func:`instab_lib.experiments.loop.run_epoch`,
    a row per epoch built by the hooks, checkpoints (resumed from when present)."""

    def __init__(self, cfg: TrainConfig, key: str, run_dir: Path | None, extra: dict[str, Any]) -> None:
        self.cfg, self.key, self.run_dir = cfg, key, run_dir
        self.t_start = time.perf_counter()
        self.last_checkpoint = self.t_start
        # a continuation starts from the final θ of the run it continues (trained first if need be)
        theta0 = final_parameters(cfg.init_from) if cfg.init_from is not None else None
        self.run_, self.state = loop.init_run(cfg, theta0)
        self.hooks = hooks_mod.default_hooks(cfg, self._write)
        self.hooks.update(extra)
        self.st: dict[str, Any] = {"rows": [], "ref_loss": None, "spectra_time": 0.0, "status": None,
                                   "diverged_step": None, "diverged_epoch": None, "elapsed": 0.0, "files": {}}
        self.ck_path = run_dir / "checkpoint.pt" if run_dir is not None else None
        self.reuse_forward = self.run_.steps_per_epoch == 1 and loop.mode_free(self.run_.model)
        self.pending_loss: torch.Tensor | None = None
        self.resumed = False
        if self.ck_path is not None and self.ck_path.is_file():
            self._resume()
        self.t_start -= self.st["elapsed"]

    # -- checkpoints ----------------------------------------------------------------
    def _write(self, path: Path, write: Callable[[Any], None]) -> None:
        """A file of the run's folder (a snapshot), written atomically; its digest is kept (and
        checkpointed) for ``result.json``."""
        assert self.run_dir is not None
        self.st["files"][path.relative_to(self.run_dir).as_posix()] = atomic_write_bytes(path, write)

    def _resume(self) -> None:
        try:
            ck = torch.load(io.BytesIO(read_sealed(self.ck_path)), weights_only=False,
                            map_location=torch.device(self.cfg.device))
        except Damaged as damage:
            warn_damaged(damage, "training the run from its start")
            self.ck_path.unlink(missing_ok=True)
            return
        self.run_.model.load_state_dict(ck["model"])
        gen = torch_generator(self.cfg.seed)
        gen.set_state(ck["gen"])
        self.state = loop.TrainState(ck["opt_state"], ck["step"], ck["epoch"], gen)
        for name, h in self.hooks.items():
            if name in ck["hooks"]:
                h.load_state_dict(ck["hooks"][name])
        self.st = ck["st"]
        self.resumed = True

    def _checkpoint(self) -> None:
        if self.ck_path is None:
            return
        self.st["elapsed"] = time.perf_counter() - self.t_start
        self.last_checkpoint = time.perf_counter()
        blob = {"model": self.run_.model.state_dict(), "opt_state": self.state.opt_state,
                "gen": self.state.generator.get_state(), "step": self.state.step, "epoch": self.state.epoch,
                "hooks": {n: h.state_dict() for n, h in self.hooks.items()}, "st": self.st}
        buf = io.BytesIO()
        torch.save(blob, buf)
        write_sealed(self.ck_path, buf.getvalue())

    # -- one recorded epoch -----------------------------------------------------------
    def _blown(self, loss: float) -> bool:
        f, ref = self.cfg.divergence_factor, self.st["ref_loss"]
        return f is not None and ref is not None and loss > f * max(ref, 1e-12)

    def _status(self, epoch: int, tr_loss: float, tr_acc: float, theta: torch.Tensor, diverged: bool,
                param_norm: float | None = None) -> None:
        st, cfg = self.st, self.cfg
        if st["ref_loss"] is None:
            st["ref_loss"] = tr_loss if math.isfinite(tr_loss) else 1.0
        blown = not math.isfinite(tr_loss) or not _finite(theta, param_norm) or self._blown(tr_loss)
        if diverged or blown:
            st["status"] = "diverged"
            if st["diverged_step"] is None:
                st["diverged_step"] = self.state.step
            if st["diverged_epoch"] is None:
                st["diverged_epoch"] = epoch
        elif cfg.target_train_acc is not None and tr_acc >= cfg.target_train_acc and epoch > 0:
            st["status"] = "early_stopped"
        elif epoch >= cfg.epochs:
            st["status"] = "finished"
        elif cfg.stall_epochs and self._stalled(tr_loss, tr_acc):
            st["status"] = "stalled"

    def _stalled(self, tr_loss: float, tr_acc: float) -> bool:
        """The last ``stall_epochs`` epochs (and this one) at chance-level train accuracy, the loss
        down by less than :data:`STALL_REL_DROP` relative to its minimum before them."""
        k, rows = self.cfg.stall_epochs, self.st["rows"]
        if len(rows) <= k:
            return False
        chance = chance_ceiling(self.cfg.n_classes)
        window = rows[-k:]
        if tr_acc >= chance or any(r["train_acc"] >= chance for r in window):
            return False
        before = min(r["train_loss"] for r in rows[:-k])
        recent = min([tr_loss] + [r["train_loss"] for r in window])
        return recent > (1 - STALL_REL_DROP) * before

    def _record(self, diverged: bool) -> dict[str, Any]:
        """Row for θ_epoch: losses, hooks, status, the evaluation when due."""
        run, cfg, epoch = self.run_, self.cfg, self.state.epoch
        theta = loop.flat_parameters(run)
        fwd = loop.forward_metrics(run) if self.reuse_forward else None
        if fwd is None:
            self.pending_loss = None
            tr_loss, tr_acc = loop.evaluate(run.model, run.loss_fn, *run.train)
        else:
            self.pending_loss, tr_loss, tr_acc = fwd
        row: dict[str, Any] = {"epoch": epoch, "step": self.state.step, "lr": run.optimizer.lr_at(self.state.step),
                               "train_loss": tr_loss, "train_acc": tr_acc}
        self._held_out(row, epoch % cfg.test_every == 0)
        ctx = hooks_mod.RowContext(run, self.state, epoch, row, self.st["rows"], theta, None, self.run_dir)
        for h in self.hooks.values():
            h.on_row(ctx)
        self._status(epoch, tr_loss, tr_acc, theta, diverged, row.get("param_norm"))
        ctx.status = self.st["status"]
        if ctx.status is not None and epoch % cfg.test_every:  # the last row always has test metrics
            self._held_out(row, True)
        due = cfg.eval_every and (epoch % cfg.eval_every == 0 or ctx.status is not None) and (
            epoch >= cfg.eval_start or epoch == cfg.reference_epoch)
        if ctx.status != "diverged" and due:
            self._evaluate(ctx)
        for h in self.hooks.values():
            h.on_measure(ctx)
        self.st["rows"].append(row)
        return row

    def _held_out(self, row: dict[str, Any], due: bool) -> None:
        """``test_loss``/``test_acc`` (and with a validation split ``val_loss``/``val_acc``): evaluated
        when ``due``, NaN otherwise."""
        run = self.run_
        nan = float("nan")
        row["test_loss"], row["test_acc"] = loop.evaluate(run.model, run.loss_fn, *run.test) if due else (nan, nan)
        if run.val is not None:
            row["val_loss"], row["val_acc"] = loop.evaluate(run.model, run.loss_fn, *run.val) if due else (nan, nan)

    def _evaluate(self, ctx: hooks_mod.RowContext) -> None:
        from .. import curvature

        t0 = time.perf_counter()
        run = self.run_
        ctx.op = curvature.HessianOperator(run.model, run.loss_fn, run.hessian, chunk_size=self.cfg.hessian_chunk)
        for h in self.hooks.values():
            h.on_eval(ctx)
        ctx.op.release()
        ctx.row["resid_max"], ctx.row["eig_converged"], ctx.row["n_matvec"] = (ctx.resid, float(ctx.converged),
                                                                               ctx.n_matvec)
        dt = time.perf_counter() - t0
        ctx.row["eig_time_s"] = dt
        self.st["spectra_time"] += dt

    def _on_step(self, run: loop.Run, state: loop.TrainState) -> None:
        for h in self.hooks.values():
            h.on_step(run, state)

    # -- the run ----------------------------------------------------------------------
    def run(self, progress: bool, callback: Callable[[int, dict[str, Any]], None] | None) -> RunResult:
        cfg, st = self.cfg, self.st
        bar = None
        if progress and not quiet():
            bar = progress_bar(total=cfg.epochs, initial=self.state.epoch, desc=f"{cfg.model} η={cfg.lr:g}")
        if not self.resumed:
            self._record(diverged=False)
            if callback is not None:
                callback(0, st["rows"][-1])
        while st["status"] is None:
            self.state, diverged = loop.run_epoch(self.run_, self.state, self._blown, self._on_step,
                                                  first_loss=self.pending_loss)
            self.pending_loss = None
            if diverged and st["diverged_step"] is None:
                st["diverged_step"] = self.state.step
            row = self._record(diverged)
            if bar is not None:
                bar.update(1)
                post = {"loss": f"{row['train_loss']:.3g}", "acc": f"{row['train_acc']:.3f}"}
                if "sharpness" in row:
                    post["S"] = f"{row['sharpness']:.3g}"
                bar.set_postfix(post, refresh=False)
            if (st["status"] is None and self.state.epoch % cfg.checkpoint_every == 0
                    and time.perf_counter() - self.last_checkpoint >= cfg.checkpoint_seconds):
                self._checkpoint()
            if callback is not None:
                callback(self.state.epoch, row)
        if bar is not None:
            bar.close()
        table = pd.DataFrame(st["rows"])
        table = table[_column_order(table.columns)]
        div = st["status"] == "diverged"
        return RunResult(config=cfg, key=self.key, status=st["status"], table=table,
                         diverged_step=st["diverged_step"] if div else None,
                         diverged_epoch=st["diverged_epoch"] if div else None,
                         data_source=self.run_.data_source, wall_time_s=time.perf_counter() - self.t_start,
                         spectra_time_s=st["spectra_time"], path=self.run_dir, files=dict(st["files"]))


_ORDER = ["epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "val_loss", "val_acc", "param_norm",
          "step_norm", "osc", "sharpness", "lambda_min"]


def _column_order(cols: Any) -> list[str]:
    cols = list(cols)
    head = [c for c in _ORDER if c in cols]
    return head + [c for c in cols if c not in head]
