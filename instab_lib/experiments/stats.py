r"""Statistics over seed ensembles: the uncertainty every claim is decided with.

A claim about trained networks is a statement about the method, not about one run,
so the pages record an :class:`Estimate` — a point value with an interval over
seeds — and the cards compare the *interval* with the null (``x['lo'] > 1``), never a
point value with a threshold. The interval level is 90% unless stated.

* :func:`bootstrap` — any statistic (default: the median) of per-seed values, with the
  percentile bootstrap interval over seeds and the bootstrap standard error;
* :func:`bootstrap_ratio` — the same for positive ratios, on the log scale (margins in log units);
* :func:`mean_se` — the mean with its standard error :math:`s/\sqrt{n}` and the
  Student-t interval :math:`\bar x \pm t_{n-1,\,1-a/2}\, s/\sqrt{n}`;
* :func:`fraction` — a proportion :math:`k/n` with its Wilson score interval;
* :func:`paired_difference` — the per-seed difference of two paired samples
  (:func:`mean_se` of ``a − b``);
* :func:`bootstrap_groups` — any statistic of a data set made of groups (seeds, each with
  several runs), with the percentile interval over resamples of whole groups (a cluster
  bootstrap: runs of one seed share an initialisation, so they are resampled together);
* :func:`pooled_contrast` — the ratio (or difference) of two means taken over every group's values
  pooled (the evaluations inside and outside spikes of every seed), with a cluster bootstrap over
  groups: it can hold on 4 seeds of 5 where a median of five per-seed values cannot (the bootstrap
  interval of a median of 5 reaches down to the smallest value: it passes only when unanimous);
* :func:`binomial_se` — the sampling error :math:`\sqrt{p(1-p)/n}` of an accuracy measured on
  ``n`` test images;
* :func:`margin` — distance of an estimate from a threshold in units of its standard error.

Resamples are drawn from :func:`instab_lib.experiments.seeding.numpy_rng`, so results are
deterministic given ``seed`` (and shift with the library's seed offset).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .seeding import numpy_rng

__all__ = ["Estimate", "bootstrap", "bootstrap_ratio", "mean_se", "fraction", "paired_difference", "pooled_share",
           "bootstrap_groups", "pooled_contrast", "binomial_se", "margin", "window_median", "LEVEL"]

#: The default interval level of every estimate.
LEVEL = 0.9


@dataclass(frozen=True)
class Estimate:
    """A statistic over an ensemble: ``est`` with the central ``level`` interval
    ``[lo, hi]``, standard error ``se``, ``n`` values, the ``method`` that made it
    (``"bootstrap-median"``, ``"mean-t"``, ``"wilson"``, …) and the per-seed ``values``.
    Recorded as a dict (:meth:`to_dict`); cards read ``x['est']``, ``x['lo']``,
    ``x['hi']``, ``x['se']``, ``x['n']``."""

    est: float
    lo: float
    hi: float
    se: float
    n: int
    level: float = LEVEL
    method: str = ""
    values: tuple[float, ...] = field(default_factory=tuple)
    log: bool = False  #: ``se`` is on the log scale (a ratio): margins are measured in log units

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["values"] = [float(v) for v in self.values]
        return d

    @classmethod
    def point(cls, value: float) -> "Estimate":
        """A degenerate estimate at ``value`` (no spread): how a card's null is evaluated."""
        v = float(value)
        return cls(v, v, v, 0.0, 0, LEVEL, "null", ())

    def __str__(self) -> str:
        return f"{self.est:.4g} [{self.lo:.4g}, {self.hi:.4g}] (n={self.n})"


def _clean(values: Sequence[float]) -> np.ndarray:
    a = np.asarray([float(v) for v in values], dtype=float)
    if a.ndim != 1:
        raise ValueError(f"need a 1-D sequence of per-seed values, got shape {a.shape}")
    return a


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")


def bootstrap(values: Sequence[float], stat: Callable[[np.ndarray], float] = np.median, *,
              level: float = LEVEL, n_boot: int = 4000, seed: int = 0, name: str | None = None) -> Estimate:
    """``stat(values)`` with the percentile bootstrap interval over the values (one per seed).

    NaN values (a run without the quantity) are an error, not silently dropped: pass only
    the values that exist and say on the page how many were left out. With one value the
    interval is that value and ``se`` is NaN (no spread can be estimated).
    """
    _check_level(level)
    a = _clean(values)
    if a.size == 0:
        raise ValueError("bootstrap needs at least one value")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"bootstrap got non-finite values {a.tolist()}: drop (and report) missing runs first")
    method = f"bootstrap-{name or getattr(stat, '__name__', 'stat')}"
    est = float(stat(a))
    if a.size == 1:
        return Estimate(est, est, est, float("nan"), 1, level, method, tuple(a))
    rng = numpy_rng(seed)
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    boots = np.array([stat(a[i]) for i in idx], dtype=float)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return Estimate(est, float(lo), float(hi), float(boots.std(ddof=1)), int(a.size), level, method, tuple(a))


def bootstrap_ratio(values: Sequence[float], *, level: float = LEVEL, n_boot: int = 4000, seed: int = 0) -> Estimate:
    """The median of positive per-seed **ratios** with its bootstrap interval, computed on the
    log scale (ratios are skewed: 0.5 and 2 are equally far from 1). ``est``, ``lo``, ``hi`` are
    ratios; ``se`` is the bootstrap standard error of ``log(median)``, and ``log=True`` tells
    :func:`margin` callers (the claims) to measure the distance to a threshold in log units."""
    a = _clean(values)
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"bootstrap_ratio needs finite positive ratios, got {a.tolist()}")
    e = bootstrap(np.log(a), np.median, level=level, n_boot=n_boot, seed=seed, name="median-log")
    return Estimate(float(np.exp(e.est)), float(np.exp(e.lo)), float(np.exp(e.hi)), e.se, e.n, level,
                    "bootstrap-median-of-ratios (log scale)", tuple(a), True)


def mean_se(values: Sequence[float], *, level: float = LEVEL) -> Estimate:
    """The mean with its standard error ``s/√n`` and the Student-t ``level`` interval."""
    from scipy import stats as sps

    _check_level(level)
    a = _clean(values)
    if a.size < 2:
        raise ValueError(f"mean_se needs at least two values for a standard error, got {a.size}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"mean_se got non-finite values {a.tolist()}")
    m, se = float(a.mean()), float(a.std(ddof=1) / math.sqrt(a.size))
    t = float(sps.t.ppf(1 - (1 - level) / 2, a.size - 1))
    return Estimate(m, m - t * se, m + t * se, se, int(a.size), level, "mean-t", tuple(a))


def fraction(successes: Sequence[bool] | int, n: int | None = None, *, level: float = LEVEL) -> Estimate:
    """A proportion ``k/n`` with its Wilson score interval; ``successes`` is a sequence of
    booleans, or a count with ``n`` given. ``se`` is the binomial ``√(p(1−p)/n)``."""
    from scipy import stats as sps

    _check_level(level)
    if n is None:
        flags = [bool(s) for s in successes]  # type: ignore[union-attr]
        k, n = sum(flags), len(flags)
        vals = tuple(float(f) for f in flags)
    else:
        k, vals = int(successes), ()  # type: ignore[arg-type]
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 ≤ successes ≤ n and n ≥ 1, got {k}/{n}")
    p = k / n
    z = float(sps.norm.ppf(1 - (1 - level) / 2))
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), math.sqrt(p * (1 - p) / n), int(n), level,
                    "wilson", vals)


def paired_difference(a: Sequence[float], b: Sequence[float], *, level: float = LEVEL) -> Estimate:
    """:func:`mean_se` of the per-seed differences ``a_i − b_i`` (same seeds, same order)."""
    aa, bb = _clean(a), _clean(b)
    if aa.shape != bb.shape:
        raise ValueError(f"paired samples need equal lengths, got {aa.size} and {bb.size}")
    return mean_se(aa - bb, level=level)


def bootstrap_groups(groups: Sequence[Any], stat: Callable[[list[Any]], float], *, level: float = LEVEL,
                     n_boot: int = 2000, seed: int = 0, name: str = "groups") -> Estimate:
    """``stat(groups)`` with the percentile bootstrap interval over resamples of the groups.

    ``stat`` receives a list of group keys (a resample repeats some and drops others; a key
    drawn twice counts twice) and returns the statistic computed from the data of those
    groups. Resamples whose statistic is not finite are dropped (their count is not part of
    the interval); ``values`` holds the statistic on the full set repeated once, ``n`` the
    number of groups. A cluster bootstrap: use it when several values share a group (the
    runs of one seed over a learning-rate grid)."""
    _check_level(level)
    keys = list(groups)
    if len(keys) < 2:
        raise ValueError(f"bootstrap_groups needs at least two groups, got {len(keys)}")
    est = float(stat(keys))
    rng = numpy_rng(seed)
    boots = []
    for _ in range(n_boot):
        v = float(stat([keys[i] for i in rng.integers(0, len(keys), len(keys))]))
        if math.isfinite(v):
            boots.append(v)
    if not boots or not math.isfinite(est):
        nan = float("nan")
        return Estimate(est, nan, nan, nan, len(keys), level, f"bootstrap-{name}", (est,))
    b = np.asarray(boots)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(b, [alpha, 1 - alpha])
    return Estimate(est, float(lo), float(hi), float(b.std(ddof=1)) if b.size > 1 else float("nan"), len(keys),
                    level, f"bootstrap-{name}", (est,))


def pooled_share(flags: dict[Any, Sequence[bool]], *, level: float = LEVEL, n_boot: int = 2000,
                 seed: int = 0) -> Estimate | None:
    r"""The share of ``True`` among the flags of every group pooled (e.g. one flag per spike, grouped by
    seed), :math:`\hat p = \sum_g k_g / \sum_g n_g`, with the percentile interval of a cluster bootstrap
    that resamples whole groups (:func:`bootstrap_groups`); ``n`` is the number of groups. ``None`` when
    fewer than two groups hold a flag (no interval can be drawn). Where every flag is the same the interval
    has zero width: the resampling of groups cannot show more variation than the data have."""
    groups = {g: np.asarray([bool(v) for v in vals], dtype=float) for g, vals in flags.items() if len(vals)}
    if len(groups) < 2:
        return None
    return bootstrap_groups(list(groups), lambda keys: float(np.mean(np.concatenate([groups[k] for k in keys]))),
                            level=level, n_boot=n_boot, seed=seed, name="groups")


def pooled_contrast(a: Mapping[Any, Sequence[float]], b: Mapping[Any, Sequence[float]], *, kind: str = "ratio",
                    level: float = LEVEL, n_boot: int = 2000, seed: int = 0) -> Estimate | None:
    r"""Two means over pooled groups compared, with a cluster bootstrap over the groups.

    ``a[g]`` and ``b[g]`` hold group ``g``'s values of the two conditions (one value per evaluation,
    group = seed or run). With :math:`A = \bigcup_g a_g` and :math:`B = \bigcup_g b_g` pooled,

    .. math::  R = \bar A / \bar B \quad \text{(ratio; values} \ge 0\text{)}, \qquad
               D = \bar A - \bar B \quad \text{(difference)},

    and the percentile interval of the statistic over resamples of whole groups
    (:func:`bootstrap_groups`: a group's values are correlated in time and share an initialisation,
    so they are drawn together). A ratio is bootstrapped on the log scale (``log=True``: ``se`` is
    that of :math:`\log R`, margins are in log units). Only groups with values in both conditions
    count; ``n`` is their number, ``values`` the per-group statistic (shown beside the pooled one).
    ``None`` with fewer than two such groups. Unlike the bootstrap median of per-group values, whose
    90 % interval at five groups reaches down to the smallest one, the pooled mean weighs every
    evaluation, so one group near the null does not decide alone."""
    if kind not in ("ratio", "difference"):
        raise ValueError(f"kind must be 'ratio' or 'difference', got {kind!r}")
    groups = {}
    for g in a:
        x, y = (np.asarray(v, dtype=float).ravel() for v in (a[g], b.get(g, ())))
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]  # NaN: an evaluation without a measurement
        if x.size and y.size:
            if kind == "ratio" and (np.any(x < 0) or np.any(y < 0)):
                raise ValueError(f"pooled_contrast(kind='ratio') needs non-negative values (group {g!r})")
            groups[g] = (x, y)
    if len(groups) < 2:
        return None

    def stat(keys: list[Any]) -> float:
        ma = float(np.mean(np.concatenate([groups[k][0] for k in keys])))
        mb = float(np.mean(np.concatenate([groups[k][1] for k in keys])))
        if kind == "difference":
            return ma - mb
        return math.log(ma / mb) if ma > 0 and mb > 0 else float("nan")

    e = bootstrap_groups(list(groups), stat, level=level, n_boot=n_boot, seed=seed, name=f"pooled-{kind}")
    per = tuple(float(np.mean(x) / np.mean(y)) if kind == "ratio" else float(np.mean(x) - np.mean(y))
                for x, y in groups.values())
    method = f"bootstrap-pooled-{kind} (clusters)"
    if kind == "difference":
        return Estimate(e.est, e.lo, e.hi, e.se, e.n, level, method, per)
    return Estimate(math.exp(e.est), math.exp(e.lo), math.exp(e.hi), e.se, e.n, level, method + ", log scale", per,
                    True)


def binomial_se(p: float, n: int) -> float:
    r"""Standard error :math:`\sqrt{p(1-p)/n}` of an accuracy ``p`` measured on ``n`` independent
    test images: the part of an accuracy's uncertainty that more seeds cannot remove (every
    run is tested on the same images). Raises ``ValueError`` for ``p`` outside [0, 1] or ``n < 1``."""
    if not (0.0 <= p <= 1.0) or n < 1:
        raise ValueError(f"need 0 ≤ p ≤ 1 and n ≥ 1, got p={p!r}, n={n!r}")
    return math.sqrt(p * (1 - p) / n)


def margin(est: float, threshold: float, se: float, side: str = "above") -> float:
    """``(est − threshold)/se`` for a claim ``est > threshold`` (``side="above"``), or
    ``(threshold − est)/se`` for ``est < threshold``: how many standard errors the estimate
    lies on the claimed side (negative: on the wrong side). ``inf`` when ``se = 0`` and the
    estimate is on the claimed side, NaN when ``se`` is NaN."""
    if side not in ("above", "below"):
        raise ValueError(f"side must be 'above' or 'below', got {side!r}")
    d = (est - threshold) if side == "above" else (threshold - est)
    if not math.isfinite(se):
        return float("nan")
    if se == 0:
        return math.copysign(float("inf"), d) if d != 0 else 0.0
    return d / se


def window_median(values: Sequence[float], epochs: Sequence[int], start: int, stop: int) -> float:
    """Median of ``values`` over the epochs in ``[start, stop]`` (a snapshot claim made robust
    by reading a window, not one epoch); NaN values are ignored, NaN if none is left."""
    v, e = _clean(values), np.asarray(epochs)
    sel = v[(e >= start) & (e <= stop)]
    sel = sel[np.isfinite(sel)]
    return float(np.median(sel)) if sel.size else float("nan")
