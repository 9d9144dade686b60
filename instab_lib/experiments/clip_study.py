r"""Clipped-Ada where it can restore an instability: measurements and analyses (issue 21, item 1).

The question of B's highlight 5 ("restoring instabilities improves generalization in adaptive
optimization") has two preconditions on a network: the base optimiser must sit near its
preconditioned stability threshold (otherwise there is no suppressed instability to restore),
and the clip :math:`c` of Clipped-Ada (:math:`D = \min(\sqrt{\hat v}, c) + \varepsilon`) must
bind **in bursts**: on few coordinates while training is smooth, on many during a spike
(otherwise the clipped run is GD at :math:`\eta/c` on the clipped coordinates all the time).
This module measures both and holds the pre-registered choice of the clip on a validation split.

Measurements (hooks for :func:`instab_lib.experiments.train.train`'s ``hooks=``, see :mod:`instab_lib.experiments.hooks`):

* :class:`ClipTrace` — per epoch, over its optimiser steps, the mean and the largest fraction of
  coordinates where the run's own clip binds (``clip_mean``, ``clip_max``: UB
  :math:`\sqrt{\hat v_i} > c`), and for each candidate clip :math:`c_k` the mean fraction where it
  *would* bind (``bind_<c_k>``; an unclipped base run tells where a clip would act).
  The library's :class:`~instab_lib.experiments.hooks.Preconditioned` records the clip fraction only at the
  last step of every ``precond_every``-th epoch, too sparse to condition on spikes.
* :class:`ValidationMetrics` — loss and accuracy on a held-out split (``val_loss``, ``val_acc``)
  every ``every`` epochs and at the last row.

Analyses (pure functions on a run's table or on per-seed numbers):

* :func:`validation_split` — the validation images: fMNIST *training* images disjoint from the
  first ``n_train`` the networks train on (default the last 10,000 of the 60,000), never the test set;
* :func:`spike_mask` — the epochs inside a loss spike of :func:`instab_lib.experiments.episodes.loss_spikes`;
* :func:`clip_binding_fraction` — the mean of a per-epoch fraction inside and outside spikes;
* :func:`base_threshold_ratio` — the median of :math:`\lambda_{\max}(P^{-1}H)/\text{threshold}`
  over a run's evaluations (after the first epochs, while the network is alive);
* :func:`predicted_critical_clip` — c* = ηS(1−β₁)/(2+2β₁): a clip that binds on the top eigenvector's
  coordinates makes the run linearly unstable only below it;
* :func:`clips_that_bind` — which clips bind in some base run (the others reproduce the base bit for bit);
* :func:`choose_clip` — the pre-registered rule that picks one clip per setting from validation
  accuracy on a selection ensemble of seeds (its test accuracy is then compared with the base on a
  disjoint confirmation ensemble).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .hooks import Hook, RowContext

__all__ = ["ClipTrace", "ValidationMetrics", "validation_split", "spike_mask", "clip_binding_fraction",
           "base_threshold_ratio", "ClipChoice", "choose_clip", "bind_column", "predicted_critical_clip",
           "clips_that_bind"]


def bind_column(c: float) -> str:
    """The column name of the would-bind fraction of clip ``c``: ``bind_0.05``, ``bind_1``, …"""
    return f"bind_{float(c):g}"


# --------------------------------------------------------------------------- hooks
class ClipTrace(Hook):
    r"""Per epoch, over that epoch's optimiser steps ``s``: ``clip_mean`` = mean_s f_s and
    ``clip_max`` = max_s f_s with f_s the fraction of coordinates where the run's own clip bound
    (:meth:`instab_lib.optim.Optimizer.clip_fraction`; 0 for Adam/RMSProp), and for each ``c`` of
    ``candidates`` the column :func:`bind_column` (c) = mean_s of the fraction of coordinates with
    :math:`\sqrt{\hat v_{s,i} + \varepsilon_\mathrm{root}} > c` (the unclipped root of that step).
    Row 0 (before any step) gets NaN. Cost: one comparison of the (dim,) root per clip and step."""

    def __init__(self, candidates: Sequence[float] = ()) -> None:
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


class ValidationMetrics(Hook):
    """``val_loss`` and ``val_acc`` of the model (eval mode) on ``(X, y)`` at every epoch that is a
    multiple of ``every`` (0: only the last) and at the run's last row (also after an early stop);
    NaN elsewhere and after a divergence. ``X``: (N, C, H, W), ``y``: (N,), on the run's device."""

    def __init__(self, X: Tensor, y: Tensor, every: int = 0) -> None:
        if len(X) != len(y) or len(y) == 0:
            raise ValueError(f"validation set needs as many labels as images (≥ 1), got {len(X)} and {len(y)}")
        if int(every) < 0:
            raise ValueError(f"every must be ≥ 0, got {every}")
        self.X, self.y, self.every = X, y, int(every)

    def on_measure(self, ctx: RowContext) -> None:
        from .loop import evaluate

        due = (self.every and ctx.epoch % self.every == 0) or ctx.status is not None
        ctx.row["val_loss"], ctx.row["val_acc"] = float("nan"), float("nan")
        if due and ctx.status != "diverged":
            run = ctx.run
            X = self.X.to(run.train[0].device, run.train[0].dtype)
            ctx.row["val_loss"], ctx.row["val_acc"] = evaluate(run.model, run.loss_fn, X, self.y.to(X.device))


def validation_split(n_val: int = 10_000, *, n_train: int = 1000, dataset: str = "fashion-mnist",
                     data_dir: str | None = None) -> tuple[Tensor, Tensor, str]:
    """The last ``n_val`` images of the data set's *training* split, standardised as the training
    images (:func:`instab_lib.experiments.data.standardise`): ``(X (n_val, C, H, W) float32, y (n_val,) int64,
    source)``. Disjoint from the first ``n_train`` training images the runs use (an error if they
    would overlap) and from the test split."""
    from . import data as data_mod

    name = data_mod.canonical_name(dataset)
    r = data_mod.resolve(name, data_dir, download=False)
    raw = data_mod.load_raw(r)
    x, y = raw["x_train"], raw["y_train"].astype(np.int64)
    if not (0 < n_val and n_train + n_val <= len(y)):
        raise ValueError(f"a validation split of {n_val} after {n_train} training images needs "
                         f"{n_train + n_val} ≤ {len(y)} training images")
    spec = data_mod.DATASETS[name]
    X = data_mod.standardise(np.array(x[len(y) - n_val:]), spec["mean"], spec["std"])  # a writable copy
    return X, torch.from_numpy(y[len(y) - n_val:].copy()), r.source


# --------------------------------------------------------------------------- spikes and binding
def spike_mask(loss: Sequence[float], *, factor: float = 2.0, min_rise: float = 0.1, skip: int = 0) -> np.ndarray:
    """Boolean per entry of ``loss`` (one per epoch): True inside a spike of
    :func:`instab_lib.experiments.episodes.loss_spikes` (``factor``, ``min_rise``), from its start to the
    entry before its end (to the last entry for a spike that never ends). Spikes that start
    before index ``skip`` (the first epochs, where the loss falls from ln 10) are ignored."""
    from .episodes import loss_spikes

    L = np.asarray(loss, dtype=float)
    mask = np.zeros(len(L), dtype=bool)
    for s in loss_spikes(L, factor=factor, min_rise=min_rise):
        if s.start >= skip:
            mask[s.start:(s.end if s.end is not None else len(L))] = True
    return mask


def clip_binding_fraction(fraction: Sequence[float], mask: Sequence[bool], *, skip: int = 0) -> dict[str, float]:
    """Mean of a per-epoch binding fraction (``clip_mean`` or a ``bind_<c>`` column) over the epochs
    ``≥ skip`` inside the spikes (``mask`` True) and outside them, ignoring NaN entries:
    ``{"inside", "outside", "n_inside", "n_outside"}`` (NaN where a side has no epoch)."""
    f = np.asarray(fraction, dtype=float)
    m = np.asarray(mask, dtype=bool)
    if f.shape != m.shape:
        raise ValueError(f"one mask entry per fraction needed, got {f.shape} and {m.shape}")
    keep = np.isfinite(f) & (np.arange(len(f)) >= skip)
    out: dict[str, float] = {}
    for side, sel in (("inside", keep & m), ("outside", keep & ~m)):
        out[side] = float(f[sel].mean()) if sel.any() else float("nan")
        out[f"n_{side}"] = int(sel.sum())
    return out


def base_threshold_ratio(table: Any, *, skip: int = 4, alive_acc: float = 0.2) -> float:
    r"""Median over a run's evaluations of :math:`\lambda_{\max}(P^{-1}H)/\text{threshold}`
    (``p_sharpness / p_threshold`` of :class:`instab_lib.experiments.hooks.Preconditioned`), over the epochs
    ``≥ skip`` at which the train accuracy is at least ``alive_acc`` (a dead network says nothing);
    NaN without such an evaluation. ≥ 1: the run trains at its adaptive edge of stability."""
    if "p_sharpness" not in table:
        return float("nan")
    ev = table[table["p_sharpness"].notna() & (table["epoch"] >= skip) & (table["train_acc"] >= alive_acc)]
    r = (ev["p_sharpness"] / ev["p_threshold"]).to_numpy(dtype=float)
    r = r[np.isfinite(r)]
    return float(np.median(r)) if r.size else float("nan")


def predicted_critical_clip(lr: float, sharpness: float, beta1: float = 0.0) -> float:
    r"""The clip below which a clip that binds on the top eigenvector's coordinates makes the run
    linearly unstable: :math:`P \approx c` there, so :math:`\lambda_{\max}(P^{-1}H) \approx S/c`
    exceeds the threshold :math:`(2+2\beta_1)/((1-\beta_1)\eta)` when
    :math:`c < \eta S (1-\beta_1)/(2+2\beta_1)` (ηS/2 for RMS-UB, ηS/38 for Adam-UB)."""
    from ..thresholds import stability_threshold

    if not (sharpness > 0 and math.isfinite(sharpness)):
        raise ValueError(f"sharpness must be positive and finite, got {sharpness!r}")
    return sharpness / stability_threshold(lr, beta1)


def clips_that_bind(clips: Sequence[float], base_root_max: Sequence[float]) -> tuple[list[float], list[float]]:
    r"""Split ``clips`` into those that bind in some base run and those that never do, from the largest
    unclipped root of each base run (``root_max`` of :class:`instab_lib.experiments.hooks.Preconditioned`, max over the run;
    one value per seed of the same setting). A "UB" clip with c ≥ every √v̂ of the base run takes
    ``min(√v̂, c) = √v̂`` exactly at every step, so by induction the clipped run *is* the base run, bit for bit:
    it need not be run. Returns ``(binding, identical)``, each in the order given; NaN roots raise."""
    roots = np.asarray(base_root_max, dtype=float)
    if roots.size == 0 or not np.all(np.isfinite(roots)):
        raise ValueError(f"need one finite root maximum per base run, got {list(base_root_max)}")
    top = float(roots.max())
    binding = [float(c) for c in clips if top > float(c)]
    return binding, [float(c) for c in clips if top <= float(c)]


# --------------------------------------------------------------------------- the clip, chosen on validation
@dataclass(frozen=True)
class ClipChoice:
    """The outcome of :func:`choose_clip`: the chosen ``c`` (None: no eligible clip), its mean
    validation accuracy ``val_mean`` and the base's ``base_val_mean``, and the ``eligible`` clips."""

    c: float | None
    val_mean: float
    base_val_mean: float
    eligible: tuple[float, ...]


def choose_clip(val_acc: Mapping[float, Sequence[float]], base_val_acc: Sequence[float], *,
                outside_binding: Mapping[float, float] | None = None, max_outside: float = 0.05,
                min_trained: Mapping[float, float] | None = None, min_trained_frac: float = 0.5) -> ClipChoice:
    """The pre-registered rule (written before any test accuracy is read): among the clips whose
    binding fraction outside spikes (``outside_binding[c]``, median over the selection seeds) is at
    most ``max_outside`` and whose fraction of selection runs reaching the target
    (``min_trained[c]``) is at least ``min_trained_frac`` (either check skipped when its mapping is
    None), pick the clip with the highest **mean validation accuracy** over the selection seeds
    (``val_acc[c]``: one value per seed; a run that diverged or collapsed keeps its accuracy, NaN
    counts as chance, 0.1); ties go to the larger c (the smaller change to the base). The base's mean
    (``base_val_acc``) is reported, not used: the comparison with the base is made on test accuracy
    over a disjoint confirmation ensemble of seeds, never on the seeds that chose c."""
    if not val_acc:
        raise ValueError("choose_clip needs at least one clip")

    def mean(v: Sequence[float]) -> float:
        a = np.asarray(v, dtype=float)
        if a.size == 0:
            raise ValueError("each clip needs at least one validation accuracy")
        return float(np.where(np.isfinite(a), a, 0.1).mean())

    eligible = []
    for c in sorted(val_acc):
        if outside_binding is not None and not (outside_binding.get(c, math.nan) <= max_outside):
            continue
        if min_trained is not None and not (min_trained.get(c, math.nan) >= min_trained_frac):
            continue
        eligible.append(float(c))
    base = mean(base_val_acc) if len(base_val_acc) else float("nan")
    if not eligible:
        return ClipChoice(None, float("nan"), base, ())
    means = {c: mean(val_acc[c]) for c in eligible}
    best = max(eligible, key=lambda c: (means[c], c))
    return ClipChoice(best, means[best], base, tuple(eligible))
