r"""Clipped-Ada where it could restore an instability: what a run says and what a set of runs decides.

B's highlight 5 ("restoring instabilities improves generalization in adaptive optimization") has
two preconditions on a network. The **base** optimiser (RMSProp for RMS-UB, Adam for Adam-UB) must
sit near its preconditioned stability threshold, or there is no suppressed instability to restore;
and the clip :math:`c` of Clipped-Ada (:math:`D = \min(\sqrt{\hat v}, c) + \varepsilon`) must bind
**in bursts**: on few coordinates while training is smooth, on more during a spike (otherwise the
clipped run is GD at :math:`\eta/c` on the clipped coordinates all the time). The runs carry the
measurements (:class:`instab_lib.experiments.hooks.Preconditioned`, :class:`~instab_lib.experiments.hooks.ClipTrace`,
the validation split of ``TrainConfig.n_val``); this module reads them.

Per run (pure functions on a run's table):

* :func:`spike_mask`, :func:`count_spikes` — the epochs inside a loss spike of
  :func:`instab_lib.experiments.episodes.loss_spikes` on the per-epoch full-batch training loss;
* :func:`clip_binding_fraction` — the mean of a per-epoch binding fraction inside and outside spikes;
* :func:`threshold_ratio` — the median of :math:`\lambda_{\max}(P^{-1}H)/\text{threshold}` over a
  run's evaluations (after the first epochs, while the network is alive);
* :func:`run_row` — one row per run with all of the above (:func:`summarize`: a table of them).

Per setting (``<optimiser>/<batch size>/<β₂>[/<c>]``, see :func:`setting_key`):

* :func:`predicted_critical_clip` — c* = ηS(1−β₁)/(2+2β₁): a clip that binds on the top
  eigenvector's coordinates makes the run linearly unstable only below it;
* :func:`clips_that_bind` — which clips bind in some base run (the others reproduce the base bit for bit);
* :func:`choose_clip` — the pre-registered rule that picks one clip per setting from validation
  accuracy on a selection ensemble of seeds (its test accuracy is then compared with the base on a
  disjoint confirmation ensemble): :func:`choose_clips` applies it to a table of runs;
* :func:`paired_gain` — a clipped run minus its base, paired by seed, with a t-interval;
* :func:`per_setting`, :func:`binding_by_setting`, :func:`burst_by_setting`, :func:`spikes_by_setting`,
  :func:`outcomes_by_setting` — a :func:`summarize` table's medians, fractions and counts per setting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .hooks import bind_column

__all__ = ["SPIKE_FACTOR", "SPIKE_MIN_RISE", "SPIKE_SKIP", "SPIKE_SENSITIVITY_RISE", "BASES", "spike_mask",
           "count_spikes", "clip_binding_fraction", "threshold_ratio", "predicted_critical_clip", "clips_that_bind",
           "ClipChoice", "choose_clip", "run_row", "summarize", "setting_key", "paired_gain", "choose_clips",
           "median_sharpness", "per_setting", "binding_by_setting", "burst_by_setting", "spikes_by_setting",
           "outcomes_by_setting"]

#: The pre-registered spike rule (/work/plan/clipped-prereg.md §1): the per-epoch full-batch training loss
#: above max(factor × running minimum, running minimum + min_rise), spikes starting before epoch skip ignored.
SPIKE_FACTOR = 2.0
SPIKE_MIN_RISE = 0.1
SPIKE_SKIP = 4
#: The sensitivity column: spikes of at least this many nats.
SPIKE_SENSITIVITY_RISE = 0.5
#: The unclipped optimiser each clipped family restores an instability of.
BASES = {"rms_ub": "rmsprop", "adam_ub": "adam"}


# --------------------------------------------------------------------------- spikes and binding
def spike_mask(loss: Sequence[float], *, factor: float = SPIKE_FACTOR, min_rise: float = SPIKE_MIN_RISE,
               skip: int = 0) -> np.ndarray:
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


def count_spikes(loss: Sequence[float], *, factor: float = SPIKE_FACTOR, min_rise: float = SPIKE_MIN_RISE,
                 skip: int = SPIKE_SKIP) -> int:
    """The number of spikes of :func:`spike_mask` 's rule that start at index ``skip`` or later."""
    from .episodes import loss_spikes

    return sum(1 for s in loss_spikes(np.asarray(loss, dtype=float), factor=factor, min_rise=min_rise)
               if s.start >= skip)


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


def threshold_ratio(table: Any, *, skip: int = SPIKE_SKIP, alive_acc: float = 0.2) -> float:
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


def median_sharpness(table: Any, *, skip: int = SPIKE_SKIP) -> float:
    """Median λ_max(H) (``sharpness``) over a run's evaluations from epoch ``skip`` on (NaN without)."""
    if "sharpness" not in table:
        return float("nan")
    s = table.loc[table["sharpness"].notna() & (table["epoch"] >= skip), "sharpness"].to_numpy(dtype=float)
    s = s[np.isfinite(s)]
    return float(np.median(s)) if s.size else float("nan")


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


def _finite_max(values: Any) -> float:
    a = np.asarray(values, dtype=float)
    a = a[np.isfinite(a)]
    return float(a.max()) if a.size else float("nan")


def _finite_median(values: Any) -> float:
    a = np.asarray(values, dtype=float)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else float("nan")


# --------------------------------------------------------------------------- one row per run
def setting_key(optimizer: str, batch_size: int, beta2: float, c: float | None = None) -> str:
    """``"<optimiser>/<batch size>/<β₂>[/<c>]"`` (numbers as ``%g``): ``rms_ub/64/0.99/0.05``."""
    key = f"{optimizer}/{int(batch_size)}/{float(beta2):g}"
    return key if c is None else f"{key}/{float(c):g}"


def run_row(result: Any, *, factor: float = SPIKE_FACTOR, min_rise: float = SPIKE_MIN_RISE, skip: int = SPIKE_SKIP,
            sensitivity_rise: float = SPIKE_SENSITIVITY_RISE) -> dict[str, Any]:
    """One row for a finished adaptive run (:class:`instab_lib.experiments.train.RunResult`): its setting
    (``optimizer``, ``batch_size``, ``beta2``, ``c`` (NaN for a base), ``seed``, ``key``, ``setting``), its
    ``outcome`` (:func:`instab_lib.experiments.generalization.outcome`: target, capped, collapsed, diverged),
    ``epochs``, the spike counts (``spikes``; ``spikes_sens`` with ``sensitivity_rise``), ``spike_epochs``,
    ``ratio`` (:func:`threshold_ratio`), ``sharpness`` (:func:`median_sharpness`), ``root_max``, the medians
    over evaluations (from epoch ``skip``) of the √v̂ quantiles ``root_q50``/``root_q90``/``root_q99``, the own
    clip's binding fraction ``bind_in``/``bind_out`` (inside/outside spikes, epochs ≥ 1) and its largest
    per-step value ``bind_peak``, for every traced candidate c ``would_<c>_in``/``would_<c>_out`` (read by
    :func:`binding_by_setting` with ``prefix="would_<c>"``), and the
    final ``train_acc``, ``val_acc``, ``test_acc`` and ``wall_time_s``."""
    from .generalization import outcome
    from .train import chance_ceiling

    cfg, t = result.config, result.table
    if result.status == "failed":
        raise RuntimeError(f"run {result.key} failed: {result.error}")
    kw = cfg.optimizer_kwargs
    bs = cfg.batch_size or cfg.n_train
    c = float(kw["c"]) if "c" in kw else float("nan")
    last = t.iloc[-1]
    loss = t["train_loss"].to_numpy(dtype=float)
    mask = spike_mask(loss, factor=factor, min_rise=min_rise, skip=skip)
    row: dict[str, Any] = {
        "optimizer": cfg.optimizer, "batch_size": int(bs), "beta2": float(kw.get("beta2", 0.99)), "c": c,
        "seed": int(cfg.seed), "key": result.key,
        "setting": setting_key(cfg.optimizer, bs, kw.get("beta2", 0.99), None if math.isnan(c) else c),
        "outcome": outcome(result.status, float(last["train_acc"]), chance_ceiling(cfg.n_classes)),
        "epochs": int(last["epoch"]),
        "spikes": count_spikes(loss, factor=factor, min_rise=min_rise, skip=skip),
        "spikes_sens": count_spikes(loss, factor=factor, min_rise=sensitivity_rise, skip=skip),
        "spike_epochs": int(mask.sum()), "ratio": threshold_ratio(t, skip=skip), "sharpness": median_sharpness(t, skip=skip),
        "root_max": _finite_max(t["root_max"]) if "root_max" in t else float("nan"),
    }
    for q in ("root_q50", "root_q90", "root_q99"):  # where a clip sits in the run's √v̂ distribution
        if q in t:
            ev = t.loc[t[q].notna() & (t["epoch"] >= skip), q]
            row[q] = _finite_median(ev)
    if "clip_mean" in t:
        own = clip_binding_fraction(t["clip_mean"].to_numpy(dtype=float), mask, skip=1)
        row.update(bind_in=own["inside"], bind_out=own["outside"], bind_peak=_finite_max(t["clip_max"]))
        for col in (c_ for c_ in t.columns if c_.startswith("bind_")):
            w = clip_binding_fraction(t[col].to_numpy(dtype=float), mask, skip=1)
            row[f"would_{col[5:]}_in"], row[f"would_{col[5:]}_out"] = w["inside"], w["outside"]
    for col in ("train_acc", "val_acc", "test_acc"):
        row[col] = float(last[col]) if col in t else float("nan")
    row["wall_time_s"] = float(result.wall_time_s)
    return row


def summarize(results: Iterable[Any], **spike_rule: Any) -> pd.DataFrame:
    """:func:`run_row` of every run (keyword arguments: the spike rule)."""
    return pd.DataFrame([run_row(r, **spike_rule) for r in results])


# --------------------------------------------------------------------------- paired differences
def paired_gain(df: pd.DataFrame, family: str, batch_size: int, beta2: float, c: float, column: str,
                seeds: Sequence[int], *, only_target: bool = False, level: float = 0.9) -> Any:
    """``column`` of the clipped runs (``family`` at clip ``c``) minus that of their base
    (:data:`BASES`) on the same seed, over ``seeds`` that have both (with ``only_target``: both reached
    the train-accuracy target); :func:`instab_lib.experiments.stats.paired_difference` (mean, t-interval)
    or None with fewer than two pairs. ``df``: a :func:`summarize` table."""
    from .stats import paired_difference

    sel = (df["batch_size"] == batch_size) & np.isclose(df["beta2"], beta2) & df["seed"].isin(list(seeds))
    a = df[sel & (df["optimizer"] == family) & np.isclose(df["c"], c)].set_index("seed")
    b = df[sel & (df["optimizer"] == BASES[family])].set_index("seed")
    idx = [s for s in a.index.intersection(b.index)
           if not only_target or (a.loc[s, "outcome"] == "target" and b.loc[s, "outcome"] == "target")]
    if len(idx) < 2:
        return None
    idx = sorted(idx)
    return paired_difference(a.loc[idx, column].to_numpy(float), b.loc[idx, column].to_numpy(float), level=level)


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


def choose_clips(df: pd.DataFrame, clips: Mapping[str, Sequence[float]], seeds: Sequence[int], *,
                 max_outside: float = 0.05, min_trained_frac: float = 0.5) -> dict[str, ClipChoice]:
    """:func:`choose_clip` per setting ``<family>/<batch size>/<β₂>`` of a :func:`summarize` table,
    over the selection ``seeds``, among ``clips[setting]`` (the clips of that setting that were run);
    the outside-spike binding of a clip is the median over those seeds of its own ``bind_out``."""
    out: dict[str, ClipChoice] = {}
    sel = df[df["seed"].isin(list(seeds))]
    for setting, cs in clips.items():
        family, bs, b2 = setting.split("/")
        here = sel[(sel["batch_size"] == int(bs)) & np.isclose(sel["beta2"], float(b2))]
        runs = {float(c): here[(here["optimizer"] == family) & np.isclose(here["c"], float(c))].sort_values("seed")
                for c in cs}
        runs = {c: g for c, g in runs.items() if len(g)}
        if not runs:
            continue
        base = here[here["optimizer"] == BASES[family]].sort_values("seed")
        out[setting] = choose_clip({c: g["val_acc"].tolist() for c, g in runs.items()}, base["val_acc"].tolist(),
                                   outside_binding={c: _finite_median(g["bind_out"]) for c, g in runs.items()},
                                   max_outside=max_outside,
                                   min_trained={c: float((g["outcome"] == "target").mean()) for c, g in runs.items()},
                                   min_trained_frac=min_trained_frac)
    return out


# --------------------------------------------------------------------------- per setting, over seeds
def _estimate(values: Sequence[float], kind: str = "median") -> dict[str, Any] | None:
    """A bootstrap median (``kind="median"``) or a mean with its t-interval (``"mean"``) of the finite
    ``values`` as a dict (:meth:`instab_lib.experiments.stats.Estimate.to_dict`); None with fewer than two."""
    from .stats import bootstrap, mean_se

    a = np.asarray(values, dtype=float)
    a = a[np.isfinite(a)]
    if a.size < 2:
        return None
    return (bootstrap(a) if kind == "median" else mean_se(a)).to_dict()


def per_setting(df: pd.DataFrame, column: str, kind: str = "median") -> dict[str, dict[str, Any] | None]:
    """Per ``setting`` of a :func:`summarize` table: the median over its runs (seeds) of ``column`` with a
    bootstrap 90 % interval (``kind="mean"``: the mean with a t-interval), as a dict; None where fewer
    than two runs have a finite value."""
    return {k: _estimate(g[column], kind) for k, g in df.groupby("setting", sort=False)}


def binding_by_setting(df: pd.DataFrame, prefix: str = "bind") -> dict[str, dict[str, Any]]:
    """Per setting: ``{"inside": …, "outside": …}`` medians over seeds (:func:`per_setting`) of a run's
    binding fraction inside and outside its spikes (``prefix="bind"``: the run's own clip; ``"would_{c}"``
    style prefixes, e.g. ``"would_0.05"``, read the fraction where clip c would bind)."""
    inside, outside = per_setting(df, f"{prefix}_in"), per_setting(df, f"{prefix}_out")
    return {k: {"inside": inside[k], "outside": outside[k]} for k in inside}


def burst_by_setting(df: pd.DataFrame) -> dict[str, dict[str, Any] | None]:
    """Per setting: the mean over seeds of (own binding inside spikes − outside) with a t-interval, over
    the runs that have epochs on both sides; None with fewer than two such runs. Above 0: the clip binds
    in bursts, as REFERENCE §5.2's mechanism asks."""
    d = df.assign(_burst=df["bind_in"] - df["bind_out"])
    return per_setting(d, "_burst", kind="mean")


def spikes_by_setting(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per setting: the fraction of runs with at least one spike (Wilson interval, as a dict), the mean
    spike count per run (``mean_count``; ``mean_count_sens`` with the sensitivity rule) and ``n`` runs."""
    from .stats import fraction

    return {k: {"runs_with_spike": fraction((g["spikes"] > 0).to_numpy()).to_dict(),
                "mean_count": float(g["spikes"].mean()), "mean_count_sens": float(g["spikes_sens"].mean()),
                "n": int(len(g))} for k, g in df.groupby("setting", sort=False)}


def outcomes_by_setting(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per setting: how many runs reached the target, stopped at the cap, collapsed or diverged."""
    return {k: {o: int((g["outcome"] == o).sum()) for o in ("target", "capped", "collapsed", "diverged")}
            for k, g in df.groupby("setting", sort=False)}
