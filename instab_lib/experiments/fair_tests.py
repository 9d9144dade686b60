r"""The papers' Fashion-MNIST claims tested the way the papers state them (issue 20): the statistics.

Each function reads run tables or per-run numbers and returns plain numbers or a
:class:`~instab_lib.experiments.stats.Estimate`; the pages decide their claims on these.

* **Eventual maximum** (A Fig 4: "the *eventual* maximum S(θ)_max") — :func:`eventual_maximum`: the
  largest sharpness after a learning-rate reduction and whether the run got there (it reached the
  train-accuracy target, or its sharpness peaked and stayed below the peak for a declared stretch
  of gradient-flow time η·t).
* **Matched loss** (the reviewers' control) — :func:`sharpness_at_loss`: the sharpness at the epoch a run
  first reaches a given training loss after the reduction (linear in the epoch between the two
  spectra around it); :func:`common_loss_levels`: loss levels every run passes through;
  :func:`matched_loss_ratios` / :func:`matched_loss_ratio`: one run's sharpness over another's at equal loss (per
  level, and their geometric mean).
* **Breakpoint** (A Fig 5b's "phase transition", located) — :func:`piecewise_linear_fit`: the continuous
  piecewise-linear model :math:`y = a_g + b\,x + c\,(x - x_b)_+` (one intercept per seed ``g``) with the
  breakpoint :math:`x_b` fitted freely (profiled least squares), its BIC against the straight line;
  :func:`breakpoint_estimate`: the breakpoint with a seed-cluster bootstrap interval.
* **Interior peak** (the Goldilocks zone among trained runs) — :func:`peak_drop_loso`: accuracy at the best
  η minus accuracy at the largest η where the seeds reached the target, the best η chosen without the
  seed it is evaluated on (leave one seed out: no winner's curse).
* **Pooled fractions** (claims with power) — :func:`cluster_fraction`: a fraction pooled over units (spikes)
  that come in clusters (seeds), with a Wilson interval at the design-effect sample size.
* **Restoration of stability** (B Fig 2) — :func:`restoration_minima`: per spike, the minimum
  :math:`\eta S/2` between its peak and the next spike's onset, over the evaluations of the peak's parity.
* **Sign consistency across settings** — :func:`sign_consistency`.
* **SGD against its noise** — :func:`noise_scale` (η(N/B − 1), 0 at full batch),
  :func:`noisier_stable_pairs` (a stable and an unstable setting, the unstable one with no more noise),
  :func:`log_gap_closed` (how much of a sharpness gap closes during a continuation).
(The cumulative drift of a run's top-6 eigenspace is :func:`instab_lib.experiments.generalization.cumulative_drift`.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import stats
from .seeding import numpy_rng

__all__ = ["EventualMax", "eventual_maximum", "sharpness_at_loss", "common_loss_levels", "matched_loss_ratios",
           "matched_loss_ratio", "geometric_mean_ratio", "BreakpointFit", "piecewise_linear_fit", "breakpoint_estimate",
           "breakpoint_over_limit", "peak_drop_loso", "cluster_fraction", "restoration_minima", "sign_consistency",
           "noise_scale", "noisier_stable_pairs", "log_gap_closed"]


# --------------------------------------------------------------------------- eventual maximum
@dataclass(frozen=True)
class EventualMax:
    """The sharpness a run reaches after ``after_epoch`` (a learning-rate reduction).

    ``s_max``: the largest evaluated sharpness after ``after_epoch``; ``epoch_max`` its epoch;
    ``eta_t``: gradient-flow time :math:`\\sum \\eta` over the epochs after ``after_epoch`` to the end of the
    run; ``eta_t_max``: the same up to ``epoch_max``; ``epoch_target``: the first epoch after the reduction
    at the train-accuracy target (None if never); ``converged``: the run reached the target, or its last
    evaluation lies at least ``span`` of gradient-flow time after the peak (the peak is then the eventual
    maximum of this run as far as the span can tell); ``reason``: ``"target"``, ``"peaked"`` or ``"open"``."""

    s_max: float
    epoch_max: int
    eta_t: float
    eta_t_max: float
    epoch_target: int | None
    converged: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _gf_time(table: pd.DataFrame, start: int, stop: int) -> float:
    """Σ η over the steps taken from epoch ``start`` to epoch ``stop`` (row ``e`` holds the η of the step
    that leaves θ_e, so the steps are the rows ``start … stop − 1``)."""
    t = table[(table["epoch"] >= start) & (table["epoch"] < stop)]
    return float(t["lr"].sum())


def eventual_maximum(table: pd.DataFrame, after_epoch: int, target_acc: float | None = 0.999,
                     span: float = 10.0) -> EventualMax:
    """:class:`EventualMax` of one run table (columns ``epoch``, ``lr``, ``train_acc``, ``sharpness``; the
    spectra every few epochs, NaN elsewhere), read after ``after_epoch``. ``span``: the stretch of
    gradient-flow time η·t after the peak that makes a run that did not reach ``target_acc`` count as
    converged. Raises ``ValueError`` when no spectrum lies after ``after_epoch``."""
    if not span > 0:
        raise ValueError(f"span must be positive, got {span}")
    sp = table[(table["epoch"] > after_epoch) & table["sharpness"].notna()]
    if sp.empty:
        raise ValueError(f"no spectrum after epoch {after_epoch}")
    i = int(np.nanargmax(sp["sharpness"].to_numpy(dtype=float)))
    epoch_max = int(sp["epoch"].iloc[i])
    last = int(table["epoch"].iloc[-1])
    hit = table[(table["epoch"] > after_epoch) & (table["train_acc"] >= target_acc)] if target_acc else table.iloc[:0]
    epoch_target = int(hit["epoch"].iloc[0]) if len(hit) else None
    after_peak = _gf_time(table, epoch_max, int(sp["epoch"].iloc[-1]))
    if epoch_target is not None:
        reason = "target"
    elif after_peak >= span:
        reason = "peaked"
    else:
        reason = "open"
    return EventualMax(float(sp["sharpness"].iloc[i]), epoch_max, _gf_time(table, after_epoch, last),
                       _gf_time(table, after_epoch, epoch_max), epoch_target, reason != "open", reason)


# --------------------------------------------------------------------------- matched loss
def sharpness_at_loss(table: pd.DataFrame, level: float, after_epoch: int = 0) -> float:
    """The sharpness at the first epoch ``e > after_epoch`` whose training loss is at most ``level``:
    linear in the epoch between the evaluations just before and just after ``e`` (the value there when
    ``e`` is evaluated). NaN when the loss never gets there, or no evaluation lies on each side."""
    t = table[table["epoch"] > after_epoch]
    hit = t[t["train_loss"] <= level]
    if hit.empty:
        return float("nan")
    e = float(hit["epoch"].iloc[0])
    sp = table[table["sharpness"].notna()]
    ep, s = sp["epoch"].to_numpy(dtype=float), sp["sharpness"].to_numpy(dtype=float)
    if not (ep.size and ep[0] <= e <= ep[-1]):
        return float("nan")
    return float(np.interp(e, ep, s))


def common_loss_levels(tables: Sequence[pd.DataFrame], after_epochs: Sequence[int], n: int = 5,
                       margin: float = 0.9) -> list[float]:
    """``n`` training-loss levels, geometrically spaced, that every run passes through after its
    ``after_epoch``: from ``margin`` × the smallest of the runs' losses at their ``after_epoch`` down to
    the largest of their final losses / ``margin``. Empty when the ranges do not overlap."""
    if len(tables) != len(after_epochs) or not tables:
        raise ValueError("need one after_epoch per table, and at least one table")
    start = min(float(t.set_index("epoch")["train_loss"].loc[a]) for t, a in zip(tables, after_epochs))
    end = max(float(t["train_loss"].iloc[-1]) for t in tables)
    hi, lo = margin * start, end / margin
    if not (hi > lo > 0):
        return []
    return [float(v) for v in np.geomspace(hi, lo, n)]


def matched_loss_ratios(early: pd.DataFrame, after_early: int, late: pd.DataFrame, after_late: int, n: int = 5,
                        margin: float = 0.9) -> list[tuple[float, float]]:
    r"""``(L_i, S_late(L_i) / S_early(L_i))`` at each of the :func:`common_loss_levels` :math:`L_1 > … > L_n` of
    runs ``early`` and ``late`` after their reductions (epochs ``after_early``, ``after_late``), with
    :math:`S(L)` from :func:`sharpness_at_loss`; a ratio is NaN where a level has no spectrum on each side.
    Below 1: at that loss, ``late`` is flatter. Empty when the runs pass through no common level (one
    ends above where the other starts). The highest level lies just below ``late``'s loss at its reduction
    (``margin`` × it), so it is reached within a few epochs of the reduction; the lowest, just above the
    larger of the two final losses, is nearest to where the eventual maximum is read."""
    levels = common_loss_levels([early, late], [after_early, after_late], n=n, margin=margin)
    return [(L, sharpness_at_loss(late, L, after_late) / sharpness_at_loss(early, L, after_early)) for L in levels]


def matched_loss_ratio(early: pd.DataFrame, after_early: int, late: pd.DataFrame, after_late: int, n: int = 5,
                       margin: float = 0.9) -> float:
    r"""The geometric mean over the levels of :func:`matched_loss_ratios`,
    :math:`\exp\big(\tfrac1n \sum_i \log S_\mathrm{late}(L_i) / S_\mathrm{early}(L_i)\big)`. NaN when there is no
    common level or a ratio is not finite and positive."""
    return geometric_mean_ratio(matched_loss_ratios(early, after_early, late, after_late, n=n, margin=margin))


def geometric_mean_ratio(per_level: Sequence[tuple[float, float]]) -> float:
    r"""The geometric mean of the ratios of ``(level, ratio)`` pairs (what :func:`matched_loss_ratios`
    returns), :math:`\exp\big(\tfrac1n \sum_i \log r_i\big)`: the summary of
    :func:`matched_loss_ratio` for ratios already computed. NaN when there is none or one is not
    finite and positive."""
    r = np.array([v for _, v in per_level], dtype=float)
    if r.size == 0 or not (np.all(np.isfinite(r)) and np.all(r > 0)):
        return float("nan")
    return float(np.exp(np.mean(np.log(r))))


# --------------------------------------------------------------------------- breakpoint
@dataclass(frozen=True)
class BreakpointFit:
    """Least-squares fit of :math:`y = a_g + b\\,x + c\\,(x - x_b)_+`: ``breakpoint`` :math:`x_b`,
    ``slope_below`` :math:`b`, ``slope_above`` :math:`b + c`; ``bic`` (the breakpoint counted as a
    parameter), ``bic_linear`` of the straight line with the same intercepts, ``delta_bic`` =
    ``bic_linear − bic`` (above 2 favours the break), ``n`` points."""

    breakpoint: float
    slope_below: float
    slope_above: float
    rss: float
    bic: float
    bic_linear: float
    delta_bic: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _intercepts(groups: np.ndarray | None, n: int) -> np.ndarray:
    if groups is None:
        return np.ones((n, 1))
    levels = list(pd.unique(groups))
    return np.column_stack([(groups == lv).astype(float) for lv in levels])


def _rss(design: np.ndarray, y: np.ndarray) -> float:
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(np.sum((y - design @ coef) ** 2))


def _bic(rss: float, n: int, k: int) -> float:
    return n * math.log(max(rss, 1e-300) / n) + k * math.log(n)


def piecewise_linear_fit(x: Sequence[float], y: Sequence[float], groups: Sequence[Any] | None = None,
                         lo: float | None = None, hi: float | None = None, n_grid: int = 400) -> BreakpointFit:
    """Fit the continuous piecewise-linear model of :class:`BreakpointFit` with the breakpoint free in
    ``[lo, hi]`` (default: from the second smallest to the second largest distinct ``x``, so each side
    has at least two abscissae): the residual sum of squares profiled over ``n_grid`` breakpoints, then
    refined by a bounded scalar search around the best one. ``groups``: one intercept per group (seeds);
    None: a common intercept. Raises ``ValueError`` with fewer than 4 distinct ``x`` or a bad range."""
    from scipy.optimize import minimize_scalar

    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got {xa.shape} and {ya.shape}")
    ok = np.isfinite(xa) & np.isfinite(ya)
    ga = None if groups is None else np.asarray(groups)[ok]
    xa, ya = xa[ok], ya[ok]
    ux = np.unique(xa)
    if ux.size < 4:
        raise ValueError(f"a breakpoint needs at least 4 distinct x, got {ux.size}")
    lo = float(ux[1]) if lo is None else float(lo)
    hi = float(ux[-2]) if hi is None else float(hi)
    if not lo < hi:
        raise ValueError(f"need lo < hi, got [{lo}, {hi}]")
    base = np.column_stack([_intercepts(ga, xa.size), xa])

    def rss_at(b: float) -> float:
        return _rss(np.column_stack([base, np.maximum(xa - b, 0.0)]), ya)

    grid = np.linspace(lo, hi, n_grid)
    vals = np.array([rss_at(b) for b in grid])
    j = int(np.argmin(vals))
    a, b = grid[max(j - 1, 0)], grid[min(j + 1, n_grid - 1)]
    res = minimize_scalar(rss_at, bounds=(a, b), method="bounded", options={"xatol": 1e-10 * max(1.0, abs(hi - lo))})
    best, rss = (float(res.x), float(res.fun)) if res.fun <= vals[j] else (float(grid[j]), float(vals[j]))
    design = np.column_stack([base, np.maximum(xa - best, 0.0)])
    coef, *_ = np.linalg.lstsq(design, ya, rcond=None)
    n, k0 = xa.size, base.shape[1]
    bic = _bic(rss, n, k0 + 2)
    bic_lin = _bic(_rss(base, ya), n, k0)
    return BreakpointFit(best, float(coef[-2]), float(coef[-2] + coef[-1]), rss, bic, bic_lin, bic_lin - bic, n)


def breakpoint_estimate(x: Sequence[float], y: Sequence[float], groups: Sequence[Any], *, lo: float | None = None,
                        hi: float | None = None, n_boot: int = 1000, seed: int = 0, n_grid: int = 200,
                        level: float = stats.LEVEL) -> stats.Estimate:
    """The breakpoint of :func:`piecewise_linear_fit` with the percentile interval over resamples of
    whole groups (seeds: a seed's runs share an initialisation). ``lo``/``hi`` default to the full
    data's second smallest / second largest distinct ``x`` and are kept fixed across resamples."""
    xa, ya, ga = np.asarray(x, dtype=float), np.asarray(y, dtype=float), np.asarray(groups)
    ux = np.unique(xa[np.isfinite(xa)])
    if ux.size < 4:
        raise ValueError(f"a breakpoint needs at least 4 distinct x, got {ux.size}")
    lo = float(ux[1]) if lo is None else float(lo)
    hi = float(ux[-2]) if hi is None else float(hi)
    rows = {g: np.flatnonzero(ga == g) for g in pd.unique(ga)}

    def stat(keys: list[Any]) -> float:
        idx = np.concatenate([rows[k] for k in keys])
        relabel = np.concatenate([np.full(rows[k].size, i) for i, k in enumerate(keys)])
        return piecewise_linear_fit(xa[idx], ya[idx], relabel, lo, hi, n_grid).breakpoint

    return stats.bootstrap_groups(list(rows), stat, level=level, n_boot=n_boot, seed=seed, name="breakpoint")


def breakpoint_over_limit(x: Sequence[float], y: Sequence[float], groups: Sequence[Any],
                          limit_by_group: Mapping[Any, float], *, lo: float | None = None,
                          hi: float | None = None, n_boot: int = 1000, seed: int = 0, n_grid: int = 200,
                          level: float = stats.LEVEL) -> stats.Estimate:
    r"""Where the free breakpoint sits relative to the stability limit, both measured on the same
    seeds: :math:`\log(\eta_b / \eta^*)` with :math:`\log\eta_b = x_b` the breakpoint of
    :func:`piecewise_linear_fit` (``x`` = log η) and :math:`\eta^*` the median of
    ``limit_by_group`` over the resampled groups (a seed drawn twice counts twice). Both are
    recomputed in every resample of whole groups, so the interval carries the uncertainty of the
    limit as well as that of the break (a paired comparison, not two intervals laid side by side).
    Returned as a ratio :math:`\eta_b/\eta^*` (``log=True``: its standard error is on the log
    scale). ``lo``/``hi``: the breakpoint range, fixed across resamples (default as
    :func:`breakpoint_estimate`). Raises ``ValueError`` when a group has no limit."""
    xa, ya, ga = np.asarray(x, dtype=float), np.asarray(y, dtype=float), np.asarray(groups)
    ux = np.unique(xa[np.isfinite(xa)])
    if ux.size < 4:
        raise ValueError(f"a breakpoint needs at least 4 distinct x, got {ux.size}")
    missing = [g for g in pd.unique(ga) if g not in limit_by_group]
    if missing:
        raise ValueError(f"no limit for group(s) {missing}")
    lo = float(ux[1]) if lo is None else float(lo)
    hi = float(ux[-2]) if hi is None else float(hi)
    rows = {g: np.flatnonzero(ga == g) for g in pd.unique(ga)}

    def stat(keys: list[Any]) -> float:
        idx = np.concatenate([rows[k] for k in keys])
        relabel = np.concatenate([np.full(rows[k].size, i) for i, k in enumerate(keys)])
        xb = piecewise_linear_fit(xa[idx], ya[idx], relabel, lo, hi, n_grid).breakpoint
        return xb - math.log(float(np.median([limit_by_group[k] for k in keys])))

    e = stats.bootstrap_groups(list(rows), stat, level=level, n_boot=n_boot, seed=seed, name="breakpoint-over-limit")
    return stats.Estimate(math.exp(e.est), math.exp(e.lo), math.exp(e.hi), e.se, e.n, e.level, e.method,
                          tuple(math.exp(v) for v in e.values), log=True)


# --------------------------------------------------------------------------- interior peak
def peak_drop_loso(acc: pd.DataFrame, top: float, candidates: Sequence[float] | None = None) -> pd.Series:
    """Per seed, the interior-peak drop ``acc[s, η̂_best(−s)] − acc[s, top]``, where ``η̂_best(−s)`` is the
    column of ``candidates`` (default: every column up to ``top``) with the highest mean accuracy over the
    *other* seeds (leave one seed out: a seed's own noise cannot select its best η, so under no interior
    peak the drops centre on ≤ 0). ``acc``: seeds × η (NaN: the run did not reach the target). A seed
    without a value at either column gives NaN. Index: the seeds."""
    if top not in acc.columns:
        raise ValueError(f"top η {top} is not a column of the accuracy table")
    cols = [c for c in (candidates if candidates is not None else acc.columns) if c <= top and c in acc.columns]
    out = {}
    for s in acc.index:
        rest = acc.drop(index=s)[cols].mean(axis=0, skipna=True).dropna()
        if rest.empty:
            out[s] = float("nan")
            continue
        best = float(rest.idxmax())
        out[s] = float(acc.loc[s, best] - acc.loc[s, top])
    return pd.Series(out, name="peak_drop")


# --------------------------------------------------------------------------- pooled fractions
def cluster_fraction(flags: Sequence[bool], clusters: Sequence[Any], *, level: float = stats.LEVEL,
                     n_boot: int = 2000, seed: int = 0) -> stats.Estimate:
    r"""A fraction pooled over units that come in clusters (spikes within seeds): ``est`` = (units with
    the flag) / (units). The interval is Wilson's at the effective sample size
    :math:`n_\mathrm{eff} = n/\mathrm{deff}`, the design effect :math:`\mathrm{deff}` being the variance of the
    pooled fraction over resamples of whole clusters over the binomial :math:`p(1-p)/n` (at least 1, so
    :math:`n_\mathrm{eff} \le n`). When every unit agrees (``est`` 0 or 1) no design effect can be estimated
    and :math:`n_\mathrm{eff}` is the number of clusters (as if clusters were perfectly correlated: the
    conservative choice). ``se`` is the half-width of that interval over the normal quantile, so a claim's
    margin is finite. ``n`` = units, ``values`` = the flags."""
    from scipy import stats as sps

    f = np.asarray([bool(v) for v in flags], dtype=float)
    g = np.asarray(clusters)
    if f.size == 0 or f.size != g.size:
        raise ValueError(f"need one cluster per flag and at least one flag, got {f.size} flags, {g.size} clusters")
    keys = list(pd.unique(g))
    n, p = f.size, float(f.mean())
    if 0.0 < p < 1.0 and len(keys) >= 2:
        by = {k: (float(f[g == k].sum()), int((g == k).sum())) for k in keys}
        rng = numpy_rng(seed)
        boots = []
        for _ in range(n_boot):
            pick = [keys[i] for i in rng.integers(0, len(keys), len(keys))]
            boots.append(sum(by[k][0] for k in pick) / sum(by[k][1] for k in pick))
        deff = max(1.0, float(np.var(boots, ddof=1)) / (p * (1 - p) / n))
        n_eff = n / deff
    else:
        n_eff = float(len(keys))
    z = float(sps.norm.ppf(1 - (1 - level) / 2))
    den = 1 + z * z / n_eff
    centre = (p + z * z / (2 * n_eff)) / den
    half = z * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff * n_eff)) / den
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return stats.Estimate(p, lo, hi, (hi - lo) / (2 * z), int(n), level, f"wilson-cluster (n_eff={n_eff:.1f})",
                          tuple(f))


# --------------------------------------------------------------------------- restoration of stability
def restoration_minima(table: pd.DataFrame, spikes: Sequence[Any], parity: str = "peak") -> pd.DataFrame:
    r"""Per spike (objects with ``start`` and ``peak`` epochs, e.g. :class:`instab_lib.experiments.episodes` spikes,
    in time order), the minimum of :math:`\eta S/2` from the spike's peak to the epoch before the next
    spike's onset (to the run's end for the last one). ``parity``: ``"peak"`` — only the evaluations an
    even number of epochs after the peak (the edge of stability flips every step, so the two sides of
    the valley are not mixed); ``"both"`` — the larger of the two parities' minima (stability restored
    on both sides); ``"any"`` — every evaluation. Columns: ``start``, ``peak``, ``window_end``,
    ``min_eta_s_over_2``, ``epoch_min``, ``restored`` (minimum below 1), ``n_evals``."""
    if parity not in ("peak", "both", "any"):
        raise ValueError(f"parity must be 'peak', 'both' or 'any', got {parity!r}")
    sp = table[table["sharpness"].notna()]
    ep = sp["epoch"].to_numpy(dtype=int)
    half = (sp["lr"] * sp["sharpness"]).to_numpy(dtype=float) / 2
    last = int(table["epoch"].iloc[-1])
    rows = []
    for i, s in enumerate(spikes):
        end = (int(spikes[i + 1].start) - 1) if i + 1 < len(spikes) else last
        sel = (ep >= s.peak) & (ep <= end)
        par = (ep - s.peak) % 2
        if parity == "peak":
            sel &= par == 0
        cand = np.flatnonzero(sel)
        if parity == "both":
            mins = [(half[cand[par[cand] == q]].min(), cand[par[cand] == q]) for q in (0, 1) if (par[cand] == q).any()]
            if len(mins) < 2:
                cand = np.array([], dtype=int)
            else:
                v, c = max(mins, key=lambda m: m[0])
                cand = c[half[c] == v][:1]
        if cand.size == 0:
            rows.append({"start": int(s.start), "peak": int(s.peak), "window_end": end, "min_eta_s_over_2": np.nan,
                         "epoch_min": None, "restored": False, "n_evals": 0})
            continue
        k = cand[int(np.argmin(half[cand]))]
        rows.append({"start": int(s.start), "peak": int(s.peak), "window_end": end,
                     "min_eta_s_over_2": float(half[k]), "epoch_min": int(ep[k]), "restored": bool(half[k] < 1.0),
                     "n_evals": int(sel.sum())})
    return pd.DataFrame(rows, columns=["start", "peak", "window_end", "min_eta_s_over_2", "epoch_min", "restored",
                                       "n_evals"])


# --------------------------------------------------------------------------- sign consistency
def _get(e: Any, key: str) -> float:
    return float(e[key] if isinstance(e, Mapping) else getattr(e, key))


def sign_consistency(estimates: Mapping[str, Any]) -> dict[str, Any]:
    """How consistent the sign of one correlation is across settings (setting → an estimate with
    ``est``/``lo``/``hi``): ``n_settings`` (finite estimates), ``n_pos``/``n_neg`` (sign of ``est``),
    ``n_pos_settled``/``n_neg_settled`` (interval beyond 0), ``consistent`` (every setting's ``est`` of one
    sign, and no settled one of the other), ``all_settled`` (every setting settled, one sign)."""
    est = {k: v for k, v in estimates.items() if math.isfinite(_get(v, "est"))}
    pos = [k for k, v in est.items() if _get(v, "est") > 0]
    neg = [k for k, v in est.items() if _get(v, "est") < 0]
    pos_s = [k for k, v in est.items() if _get(v, "lo") > 0]
    neg_s = [k for k, v in est.items() if _get(v, "hi") < 0]
    n = len(est)
    consistent = n > 0 and (len(pos) == n or len(neg) == n)
    return {"n_settings": n, "n_pos": len(pos), "n_neg": len(neg), "n_pos_settled": len(pos_s),
            "n_neg_settled": len(neg_s), "consistent": bool(consistent),
            "all_settled": bool(n > 0 and (len(pos_s) == n or len(neg_s) == n))}


# --------------------------------------------------------------------------- SGD against its noise
def noise_scale(lr: float, batch_size: int | None, n_train: int) -> float:
    r"""SGD's gradient-noise scale for minibatches of :math:`B` of the :math:`N` training examples
    drawn without replacement (Smith & Le, 2018): :math:`g = \eta\,(N/B - 1)`, 0 for full-batch GD
    (``batch_size=None`` or :math:`B = N`), which has no gradient noise, and about :math:`\eta N/B`
    for :math:`B \ll N`."""
    b = n_train if batch_size is None else int(batch_size)
    if not (lr > 0 and 0 < b <= n_train):
        raise ValueError(f"need lr > 0 and 0 < batch size ≤ n_train, got lr={lr}, batch_size={batch_size}")
    return float(lr) * (n_train / b - 1.0)


def noisier_stable_pairs(settings: pd.DataFrame, tol: float = 0.25) -> pd.DataFrame:
    r"""Pairs (stable setting, unstable setting) in which the unstable side has **no more** gradient noise
    than the stable side, up to a factor: :math:`g_\text{unstable} \le (1 + \text{tol})\, g_\text{stable}`
    (:func:`noise_scale`; two full-batch settings pair, both without noise). ``settings``: one row per
    setting with ``noise`` (:math:`g`) and ``side`` (``"stable"``, ``"unstable"`` or ``"mixed"``: mixed
    settings, whose runs fell on both sides of the threshold, pair with nothing). If the noise did the
    flattening, the stable (noisier or equally noisy) side of such a pair would end at least as flat.
    Columns: ``stable`` / ``unstable`` (index labels of ``settings``, stable rows outer, both in the
    frame's order) and ``noise_ratio`` (:math:`g_\text{unstable}/g_\text{stable}`, NaN for 0/0)."""
    if not tol >= 0:
        raise ValueError(f"tol must be ≥ 0, got {tol}")
    bad = set(settings["side"]) - {"stable", "unstable", "mixed"}
    if bad:
        raise ValueError(f"side must be 'stable', 'unstable' or 'mixed', got {sorted(map(str, bad))}")
    st, un = settings[settings["side"] == "stable"], settings[settings["side"] == "unstable"]
    rows = []
    for i, a in st.iterrows():
        for j, b in un.iterrows():
            ga, gb = float(a["noise"]), float(b["noise"])
            if gb <= (1 + tol) * ga:
                rows.append({"stable": i, "unstable": j, "noise_ratio": gb / ga if ga > 0 else float("nan")})
    return pd.DataFrame(rows, columns=["stable", "unstable", "noise_ratio"])


def log_gap_closed(s_unstable_0: float, s_stable_0: float, s_unstable_1: float, s_stable_1: float) -> float:
    r"""The fraction of the log-sharpness gap between an unstable and a stable run that closes during a
    continuation: :math:`1 - \log(S_u^1/S_s^1) / \log(S_u^0/S_s^0)` (0: the gap stays, 1: it closes, < 0:
    it widens). NaN when there was no gap to begin with."""
    g0 = math.log(s_unstable_0 / s_stable_0)
    if g0 == 0 or not math.isfinite(g0):
        return float("nan")
    return 1.0 - math.log(s_unstable_1 / s_stable_1) / g0
