"""Measurements during training, one hook per idea.

:func:`instab_lib.experiments.train.train` builds the row of every recorded epoch ``e`` (θ_e after
``e`` epochs) from the losses and accuracies, then asks each hook of
:func:`default_hooks` to add its columns. A hook is an object with any of

* ``on_step(run, state)`` — after every optimiser step (``run``: :class:`instab_lib.experiments.loop.Run`,
  ``state``: :class:`instab_lib.experiments.loop.TrainState`, so the optimiser state is at hand);
* ``on_row(ctx)`` — every recorded epoch, before the run's status is decided;
* ``on_eval(ctx)`` — at the spectrum evaluations (every ``eval_every`` epochs and at the
  last one): ``ctx.op`` is the Hessian operator of that evaluation, shared by the hooks;
* ``on_measure(ctx)`` — every recorded epoch, after the status and the evaluation;
* ``state_dict()`` / ``load_state_dict(d)`` — what a checkpoint must keep to resume.

================  ====================================================================
hook              columns (see :mod:`instab_lib.experiments.train` for their meaning)
================  ====================================================================
Norms             param_norm, step_norm, osc (the period-2 oscillation, filled in one row
                  later)
Spectra           eig_top_i, sharpness, eig_bot_i, lambda_min (warm-started trackers)
Rotation          cos_prev_i, ccos_prev_i, subspace_prev, cos_par_i, subspace_par,
                  par_lag (same parity), cos_ref_i, subspace_ref
Hutchinson        hutch_trace, hutch_trace_se, hutch_root
Preconditioned    root_max (every epoch), p_sharpness, p_threshold, clip_fraction,
                  root_q50, root_q90, root_q99, p_n_matvec (every ``precond_every``
                  epochs; adaptive optimisers)
ClipTrace         clip_mean, clip_max, bind_<c> (every epoch, over its steps; with
                  ``clip_candidates``; adaptive optimisers)
Snapshots         saves θ (and the eigenpairs of that evaluation) at ``snapshot_epochs``
                  (and at the last epoch with ``snapshot_final``)
================  ====================================================================

The hooks seed the library's solvers with :func:`instab_lib.experiments.seeding.shifted`
seeds, so the seed offset moves their starts and probes with the rest of the run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor
from torch.nn.modules.batchnorm import _NormBase

from ..preconditioned import PreconditionedState
from .seeding import shifted

__all__ = ["RowContext", "Norms", "Spectra", "Rotation", "Hutchinson", "Preconditioned", "ClipTrace", "Snapshots",
           "default_hooks", "period2_oscillation", "bind_column"]


@dataclass
class RowContext:
    """What a hook sees at a recorded epoch: the ``run`` and its ``state``, the ``epoch``, the
    ``row`` being built, the previous ``rows``, the flat parameters ``theta``, the ``status``
    (None while training goes on), the run's folder ``run_dir`` (None when not saved); at an
    evaluation also ``op`` (the Hessian operator), ``results`` (eigen-results by name) and
    the evaluation's bookkeeping ``n_matvec``, ``resid``, ``converged``."""

    run: Any
    state: Any
    epoch: int
    row: dict[str, Any]
    rows: list[dict[str, Any]]
    theta: Tensor
    status: str | None = None
    run_dir: Path | None = None
    op: Any = None
    results: dict[str, Any] = field(default_factory=dict)
    n_matvec: int = 0
    resid: float = 0.0
    converged: bool = True

    @property
    def evaluated(self) -> bool:
        return self.op is not None


class Hook:
    """A measurement: override what you need (module docstring)."""

    def on_step(self, run: Any, state: Any) -> None:
        pass

    def on_row(self, ctx: RowContext) -> None:
        pass

    def on_eval(self, ctx: RowContext) -> None:
        pass

    def on_measure(self, ctx: RowContext) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        pass


def period2_oscillation(prev: Tensor, cur: Tensor, nxt: Tensor) -> float:
    """‖θ_t − θ*_t‖₂ with θ*_t = (θ_{t−1} + 2θ_t + θ_{t+1})/4 (REFERENCE §10), for flat
    parameter vectors of shape (dim,): equals ‖θ_{t−1} − 2θ_t + θ_{t+1}‖₂ / 4, computed in float64
    (a float64 input is used as it is, so vectors already converted give the same number)."""
    return float(torch.linalg.vector_norm((prev.double() - 2 * cur.double() + nxt.double()) / 4))


class Norms(Hook):
    """``param_norm`` ‖θ_e‖, ``step_norm`` ‖θ_e − θ_{e−1}‖ and, one row later, ``osc``
    (:func:`period2_oscillation` of θ_{e−1}, θ_e, θ_{e+1}; NaN at the first and last row)."""

    def __init__(self) -> None:
        self.theta_prev: Tensor | None = None
        self.theta_cur: Tensor | None = None
        # float64 copies of θ_{e−1}, θ_e (the conversion is exact): each θ is converted once, not three times
        self._prev64: Tensor | None = None
        self._cur64: Tensor | None = None

    def on_row(self, ctx: RowContext) -> None:
        theta = ctx.theta
        theta64 = theta.double()
        ctx.row["param_norm"] = float(torch.linalg.vector_norm(theta64))
        ctx.row["step_norm"] = (float(torch.linalg.vector_norm((theta - self.theta_cur).double()))
                                if self.theta_cur is not None else float("nan"))
        ctx.row["osc"] = float("nan")
        if self.theta_prev is not None and ctx.rows:
            ctx.rows[-1]["osc"] = period2_oscillation(self._prev64, self._cur64, theta64)
        self.theta_prev, self.theta_cur = self.theta_cur, theta
        self._prev64, self._cur64 = self._cur64, theta64

    def state_dict(self) -> dict[str, Any]:
        return {"theta_prev": self.theta_prev, "theta_cur": self.theta_cur}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.theta_prev, self.theta_cur = d["theta_prev"], d["theta_cur"]
        self._prev64, self._cur64 = (None if t is None else t.double() for t in (self.theta_prev, self.theta_cur))


def _light(r: Any) -> Any:
    """An EigResult reduced to what later comparisons need (no ``extra``)."""
    return dataclasses.replace(r, extra={})


#: The harness's warm-start floor (``EigTracker(warm_extra=…)``): 3 vectors beyond k, not the library's
#: default 10; the book's spectra were computed this way. Measured (``benchmarks/bench_warm_floor.py``) only
#: for top trackers on the fMNIST MLP: full-batch GD at η = 0.1 and 0.05, top-1 and top-3, every epoch or
#: every 5: the warm λ₁ agreed with a cold solve's at all 724 evaluations (largest relative gap 1.6e-5) at
#: 53–73 % of its products. Not measured: the bottom ("SA") trackers, λ₂…λ_k, the CNN, SGD and adaptive runs.
HARNESS_WARM_EXTRA = 3


class Spectra(Hook):
    """Top-``k_top`` (``"LA"``) and bottom-``k_bottom`` (``"SA"``) eigenpairs by warm-started
    :class:`instab_lib.curvature.EigTracker` s; residuals and products go to the evaluation's
    bookkeeping. Results are left in ``ctx.results["top"]`` / ``["bot"]`` for other hooks."""

    def __init__(self, config: Any) -> None:
        from .. import curvature

        self.trackers: dict[str, Any] = {}
        if config.eval_every and config.k_top:
            self.trackers["top"] = curvature.EigTracker(config.k_top, "LA", tol=config.eig_tol,
                                                        seed=shifted(config.seed), warm_extra=HARNESS_WARM_EXTRA)
        if config.eval_every and config.k_bottom:
            self.trackers["bot"] = curvature.EigTracker(config.k_bottom, "SA", tol=config.eig_tol,
                                                        seed=shifted(config.seed + 7919), warm_extra=HARNESS_WARM_EXTRA)

    def on_eval(self, ctx: RowContext) -> None:
        from .. import curvature

        for name, tr in self.trackers.items():
            r = tr.update(ctx.op)
            ctx.results[name] = r
            ctx.n_matvec += r.n_matvec
            ctx.resid = max(ctx.resid, curvature.relative_residual(r))
            ctx.converged = ctx.converged and r.converged
        for name, prefix, single in (("top", "eig_top", "sharpness"), ("bot", "eig_bot", "lambda_min")):
            if name in ctx.results:
                ev = ctx.results[name].eigenvalues.double().cpu()
                for i, v in enumerate(ev.tolist(), 1):
                    ctx.row[f"{prefix}_{i}"] = v
                ctx.row[single] = ev[0].item()

    def state_dict(self) -> dict[str, Any]:
        return {"trackers": self.trackers}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.trackers = d["trackers"]


class Rotation(Hook):
    """Similarity of the top eigenvectors to those of the previous evaluation, of the latest
    earlier evaluation of the **same parity** (an even number of epochs back: at the edge of
    stability the iterate flips sides every step, so consecutive epochs compare two sides of
    a valley; ``cos_par_i``, ``subspace_par``, ``par_lag``; near-degenerate pairs compared as
    a subspace), both by the library's :func:`instab_lib.rotation.rotation_update` (what
    :class:`instab_lib.Monitor` records as ``rotation``), and of the ``reference_epoch``."""

    def __init__(self, config: Any) -> None:
        from ..rotation import RotationState

        self.k, self.reference_epoch = config.k_top, config.reference_epoch
        self.state = RotationState()
        self.ref: Any = None

    def on_eval(self, ctx: RowContext) -> None:
        from .. import rotation

        cur = ctx.results.get("top")
        if cur is None:
            return
        reading, self.state = rotation.rotation_update(self.state, ctx.epoch, cur)
        if reading.previous is not None:
            for i in range(self.k):
                ctx.row[f"cos_prev_{i + 1}"] = float(reading.previous.raw_cosines[i])
                ctx.row[f"ccos_prev_{i + 1}"] = float(reading.previous.cosines[i])
            ctx.row["subspace_prev"] = reading.previous.subspace
        if reading.same_parity is not None:
            for i in range(self.k):
                ctx.row[f"cos_par_{i + 1}"] = float(reading.same_parity.cosines[i])
            ctx.row["subspace_par"] = reading.same_parity.subspace
            ctx.row["par_lag"] = reading.lag
        if ctx.epoch == self.reference_epoch:
            self.ref = _light(cur)
        if self.ref is not None:
            V, R = cur.eigenvectors, self.ref.eigenvectors
            for i in range(self.k):
                ctx.row[f"cos_ref_{i + 1}"] = rotation.abs_cosine(R[:, i], V[:, i])
            ctx.row["subspace_ref"] = rotation.subspace_similarity(R, V)

    def state_dict(self) -> dict[str, Any]:
        return {"rotation": self.state, "ref": self.ref}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        from ..rotation import RotationState

        self.ref = d["ref"]
        self.state = d["rotation"] if "rotation" in d else RotationState(tuple(d.get("history", [])))


class Hutchinson(Hook):
    """Hutchinson's estimate of tr(H^p) with ``hutchinson_samples`` Rademacher probes (seeded by
    seed and epoch), its standard error and the root tr(H^p)^{1/p}."""

    def __init__(self, config: Any) -> None:
        self.samples, self.power, self.seed = config.hutchinson_samples, config.hutchinson_power, config.seed

    def on_eval(self, ctx: RowContext) -> None:
        from .. import curvature

        est, se = curvature.hutchinson_trace(ctx.op, self.samples, seed=shifted(self.seed * 1_000_003 + ctx.epoch),
                                             power=self.power)
        ctx.n_matvec += self.samples * ((self.power + 1) // 2)
        ctx.row["hutch_trace"], ctx.row["hutch_trace_se"] = est, se
        ctx.row["hutch_root"] = est ** (1 / self.power) if est > 0 else float("nan")


class Preconditioned(Hook):
    r"""For adaptive optimisers: ``root_max``, the largest unclipped
    :math:`\sqrt{\hat v + \varepsilon_\mathrm{root}}` over the steps of each epoch and every
    coordinate (every row), and every ``precond_every`` epochs (≥ 1, not after divergence)
    the preconditioned sharpness ``p_sharpness`` = :math:`\lambda_{\max}(D^{-1/2} H D^{-1/2})`
    with :math:`D` the denominator of the last step read from the optimiser's state
    (:meth:`instab_lib.optim.Optimizer.preconditioner`), its threshold ``p_threshold``
    (:func:`instab_lib.thresholds.stability_threshold` for the optimiser's β₁; both read by
    :class:`instab_lib.adapters.LibraryOptimizer`, as :class:`instab_lib.Monitor` reads them), the
    ``clip_fraction`` of that step, the quantiles 0.5, 0.9, 0.99 over the coordinates of the
    unclipped root :math:`\sqrt{\hat v + \varepsilon_\mathrm{root}}` of that step (``root_q50``,
    ``root_q90``, ``root_q99``: where a Clipped-Ada clip ``c`` would sit in the distribution)
    and the products spent, ``p_n_matvec``. Lanczos is warm started from the previous
    evaluation's vector (:func:`instab_lib.preconditioned.track_preconditioned_sharpness`).

    For a model with normalisation layers (BatchNorm) and ``precond_bn_mode="train"`` (the default) :math:`H`
    is the Hessian of the loss the optimiser steps on: BatchNorm with the statistics of chunks of
    ``batch_size`` images (the whole Hessian set for full batch), the running statistics untouched. The
    eval-mode Hessian (running statistics) has curvature along directions in which the training loss is flat
    and the gradient zero, e.g. the bias of a layer followed by BatchNorm; there :math:`\hat v \approx 0`, the
    denominator is :math:`\varepsilon`, and :math:`D^{-1/2} H D^{-1/2}` is of order :math:`h/\varepsilon`:
    a number about no direction the optimiser moves in."""

    def __init__(self, config: Any) -> None:
        self.every, self.tol, self.seed, self.chunk = (config.precond_every, config.precond_tol, config.seed,
                                                       config.hessian_chunk)
        self.bn_mode, self.batch_size = config.precond_bn_mode, config.batch_size
        self.epoch_max = float("nan")
        self.state = PreconditionedState()

    def on_step(self, run: Any, state: Any) -> None:
        root = run.optimizer.unclipped_root(state.opt_state)
        if root is not None:
            m = float(root.max())
            self.epoch_max = m if not math.isfinite(self.epoch_max) else max(self.epoch_max, m)

    def on_measure(self, ctx: RowContext) -> None:
        from .. import adapters, curvature, preconditioned

        ctx.row["root_max"] = self.epoch_max
        self.epoch_max = float("nan")
        if not (ctx.epoch >= 1 and ctx.epoch % self.every == 0 and ctx.status != "diverged"):
            return
        run, opt = ctx.run, ctx.run.optimizer
        if self.bn_mode == "train" and any(isinstance(m, _NormBase) for m in run.model.modules()):
            op = curvature.HessianOperator(run.model, run.loss_fn, run.hessian, bn_mode="train",
                                           chunk_size=self.batch_size or len(run.hessian[1]))
        else:
            op = curvature.HessianOperator(run.model, run.loss_fn, run.hessian, chunk_size=self.chunk)
        reading = adapters.LibraryOptimizer(opt).read(op.params, ctx.state.opt_state, steps=ctx.state.step)
        r, self.state = preconditioned.track_preconditioned_sharpness(self.state, op, reading.preconditioner,
                                                                      tol=self.tol, seed=shifted(self.seed))
        ctx.row["p_sharpness"] = float(r.eigenvalues[0])
        ctx.row["p_threshold"] = reading.threshold
        ctx.row["clip_fraction"] = opt.clip_fraction(ctx.state.opt_state)
        root = opt.unclipped_root(ctx.state.opt_state)
        if root is not None:
            q = torch.quantile(root.detach().double().cpu(), torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64))
            ctx.row["root_q50"], ctx.row["root_q90"], ctx.row["root_q99"] = (float(v) for v in q)
        ctx.row["p_n_matvec"] = op.n_matvec
        op.release()

    def state_dict(self) -> dict[str, Any]:
        return {"epoch_max": self.epoch_max, "v0": self.state.v0}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.epoch_max, self.state = d["epoch_max"], PreconditionedState(d["v0"])


def bind_column(c: float) -> str:
    """The column name of the would-bind fraction of clip ``c``: ``bind_0.05``, ``bind_1``, …"""
    return f"bind_{float(c):g}"


class ClipTrace(Hook):
    r"""Where a Clipped-Ada clip acts, at every optimiser step (:class:`Preconditioned` reads the
    clip fraction only at the last step of every ``precond_every``-th epoch, too sparse to tell
    the epochs inside a loss spike from those outside).

    Per epoch, over that epoch's steps ``s``: ``clip_mean`` = mean_s f_s and ``clip_max`` =
    max_s f_s with f_s the fraction of coordinates where the run's own clip bound
    (:meth:`instab_lib.optim.Optimizer.clip_fraction`; 0 for Adam/RMSProp), and for each ``c`` of
    ``candidates`` the column :func:`bind_column` (c) = mean_s of the fraction of coordinates with
    :math:`\sqrt{\hat v_{s,i} + \varepsilon_\mathrm{root}} > c` (the unclipped root of that step): an
    unclipped base run tells where a clip would act. Row 0 (before any step) gets NaN. Cost: one
    comparison of the (dim,) root per candidate and step."""

    def __init__(self, candidates: Any = ()) -> None:
        cs = [float(c) for c in candidates]
        if any(not (c > 0 and math.isfinite(c)) for c in cs):
            raise ValueError(f"candidate clips must be positive and finite, got {list(candidates)}")
        self.candidates = cs
        self._reset()

    def _reset(self) -> None:
        self.n = 0
        self.sum = 0.0
        self.max = 0.0
        self.bind = np.zeros(len(self.candidates))

    def on_step(self, run: Any, state: Any) -> None:
        opt = run.optimizer
        f = opt.clip_fraction(state.opt_state)
        self.n += 1
        self.sum += f
        self.max = max(self.max, f)
        if self.candidates:
            root = opt.unclipped_root(state.opt_state)
            if root is not None:
                self.bind += np.array([float((root > c).double().mean()) for c in self.candidates])

    def on_row(self, ctx: RowContext) -> None:
        nan = float("nan")
        ctx.row["clip_mean"] = self.sum / self.n if self.n else nan
        ctx.row["clip_max"] = self.max if self.n else nan
        for c, b in zip(self.candidates, self.bind):
            ctx.row[bind_column(c)] = float(b) / self.n if self.n else nan
        self._reset()

    def state_dict(self) -> dict[str, Any]:
        return {"n": self.n, "sum": self.sum, "max": self.max, "bind": self.bind.copy()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.n, self.sum, self.max, self.bind = d["n"], d["sum"], d["max"], np.asarray(d["bind"])


class Snapshots(Hook):
    """Saves ``{"epoch", "theta", "eigenvalues", "eigenvectors", "bottom_eigenvalues"}`` at each
    of ``snapshot_epochs`` (the top eigenpairs and bottom eigenvalues when that epoch was
    evaluated, else None; the bottom eigenvectors are not kept, to spare disk) into
    ``run_dir/snapshots/epoch_<e>.pt``; nothing after divergence or for runs not saved."""

    def __init__(self, config: Any, write: Callable[[Path, Callable[[Any], None]], None]) -> None:
        self.epochs = frozenset(config.snapshot_epochs)
        self.final = bool(config.snapshot_final)
        self.write = write

    def on_measure(self, ctx: RowContext) -> None:
        wanted = ctx.epoch in self.epochs or (self.final and ctx.status is not None)
        if not wanted or ctx.run_dir is None or ctx.status == "diverged":
            return
        if ctx.evaluated:
            top, bot = ctx.results.get("top"), ctx.results.get("bot")
            snap = {"epoch": ctx.epoch, "theta": ctx.theta.cpu(),
                    "eigenvalues": top.eigenvalues.cpu() if top is not None else None,
                    "eigenvectors": top.eigenvectors.cpu() if top is not None else None,
                    "bottom_eigenvalues": bot.eigenvalues.cpu() if bot is not None else None}
        else:
            snap = {"epoch": ctx.epoch, "theta": ctx.theta.cpu(), "eigenvalues": None, "eigenvectors": None}
        self.write(ctx.run_dir / "snapshots" / f"epoch_{ctx.epoch}.pt", lambda f: torch.save(snap, f))


def default_hooks(config: Any, write: Callable[[Path, Callable[[Any], None]], None]) -> dict[str, Hook]:
    """The hooks a :class:`instab_lib.experiments.config.TrainConfig` asks for, in the order they run."""
    hooks: dict[str, Hook] = {"norms": Norms(), "spectra": Spectra(config), "rotation": Rotation(config)}
    if config.hutchinson_samples:
        hooks["hutchinson"] = Hutchinson(config)
    if config.precond_every:
        hooks["preconditioned"] = Preconditioned(config)
    if config.clip_candidates:
        hooks["clip_trace"] = ClipTrace(config.clip_candidates)
    hooks["snapshots"] = Snapshots(config, write)
    return hooks
