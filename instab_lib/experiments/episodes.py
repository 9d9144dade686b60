r"""Instability episodes and loss spikes of a run.

* :class:`Episode`, :func:`unstable_mask`, :func:`find_episodes` — the edge-of-stability
  episodes of a run's table: maximal runs of evaluated epochs with ``η_t·S_t ≥ 2``;
* :func:`find_spikes` — the loss spikes of a run's table (the separate instabilities within
  the episodes); :func:`resolved_spikes` — those of at least some length that resolve;
* :class:`Spike`, :func:`loss_spikes` — episodes where a loss series rises above a multiple
  of its running minimum (instabilities seen in the loss of an adaptive run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["Episode", "unstable_mask", "find_episodes", "find_spikes", "resolved_spikes", "Spike", "loss_spikes"]


@dataclass(frozen=True)
class Episode:
    """An instability episode: evaluated epochs ``start … end`` (inclusive) with
    ``η_t S_t ≥ threshold``; ``peak`` is the epoch of the largest ``S`` within it,
    ``peak_value`` that ``S`` (for :func:`find_spikes`: the largest loss), ``last_stable`` the last evaluated epoch before
    ``start`` (None at the start of the run), ``resolved`` the first evaluated epoch
    after ``end`` (None when the run ends unstable)."""

    start: int
    end: int
    peak: int
    peak_value: float
    last_stable: int | None
    resolved: int | None

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def unstable_mask(table: pd.DataFrame, threshold: float = 2.0) -> pd.Series:
    """Per evaluated row of a run table (rows with a finite ``sharpness``): True where
    ``lr · sharpness ≥ threshold`` (the learning rate of the step leaving that point)."""
    sp = table[table["sharpness"].notna()]
    return pd.Series((sp["lr"].to_numpy() * sp["sharpness"].to_numpy()) >= threshold, index=sp["epoch"].to_numpy())


def find_spikes(table: pd.DataFrame, column: str = "train_loss", rel: float = 0.02, window: int = 10,
                min_length: int = 1) -> list[Episode]:
    """Loss-spike episodes (B Fig 1's "valley jumping"): maximal runs of epochs where
    ``table[column]`` exceeds ``(1 + rel)`` × its minimum over the previous ``window``
    epochs (the spike's own epochs excluded from that minimum once it has started).

    ``peak`` is the epoch of the largest value inside the episode and ``peak_value`` that
    value; ``last_stable``/``resolved`` the epochs just before/after it. At the edge of
    stability a network's sharpness stays near 2/η for long stretches (one long
    :func:`find_episodes` episode); the spikes are the separate instabilities within it.
    """
    if not rel > 0 or window < 1 or min_length < 1:
        raise ValueError("rel must be > 0, window ≥ 1 and min_length ≥ 1")
    ep = table["epoch"].to_numpy().astype(int)
    v = table[column].to_numpy(dtype=float)
    out, i, n = [], 1, len(v)
    while i < n:
        ref = np.nanmin(v[max(0, i - window):i])
        if v[i] > (1 + rel) * ref:
            j = i
            while j + 1 < n and v[j + 1] > (1 + rel) * ref:
                j += 1
            if j - i + 1 >= min_length:
                k = i + int(np.nanargmax(v[i:j + 1]))
                out.append(Episode(start=int(ep[i]), end=int(ep[j]), peak=int(ep[k]), peak_value=float(v[k]),
                                   last_stable=int(ep[i - 1]), resolved=int(ep[j + 1]) if j + 1 < n else None))
            i = j + 1
        else:
            i += 1
    return out


def resolved_spikes(table: pd.DataFrame, column: str = "train_loss", rel: float = 0.02, window: int = 10,
                    min_length: int = 1) -> list[Episode]:
    """The :func:`find_spikes` episodes of at least ``min_length`` epochs that resolve
    before the run ends (``resolved`` not None): the instabilities a page can follow
    from the epoch before to the epoch after."""
    return [s for s in find_spikes(table, column, rel=rel, window=window, min_length=min_length)
            if s.resolved is not None]


def find_episodes(table: pd.DataFrame, threshold: float = 2.0, merge_gap: int = 0,
                  min_length: int = 1) -> list[Episode]:
    """Instability episodes of a run table (see :class:`Episode`).

    Episodes separated by at most ``merge_gap`` stable evaluations are merged (a
    single stable epoch inside an oscillating phase does not end it); episodes with
    fewer than ``min_length`` evaluated epochs are dropped.
    """
    if merge_gap < 0 or min_length < 1:
        raise ValueError("merge_gap must be ≥ 0 and min_length ≥ 1")
    mask = unstable_mask(table, threshold)
    sp = table[table["sharpness"].notna()]
    epochs = sp["epoch"].to_numpy().astype(int)
    S = sp["sharpness"].to_numpy(dtype=float)
    flags = mask.to_numpy()
    runs: list[list[int]] = []  # [i_start, i_end] in evaluation index
    for i, u in enumerate(flags):
        if not u:
            continue
        if runs and i - runs[-1][1] - 1 <= merge_gap:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    out = []
    for i0, i1 in runs:
        if i1 - i0 + 1 < min_length:
            continue
        j = i0 + int(np.argmax(S[i0:i1 + 1]))
        out.append(Episode(start=int(epochs[i0]), end=int(epochs[i1]), peak=int(epochs[j]),
                           peak_value=float(S[j]),
                           last_stable=int(epochs[i0 - 1]) if i0 > 0 else None,
                           resolved=int(epochs[i1 + 1]) if i1 + 1 < len(epochs) else None))
    return out


@dataclass(frozen=True)
class Spike:
    """One loss spike: indices ``start`` (first point above the line), ``peak``, ``end``
    (first point back below it, or ``None`` if the series ends first), the running
    minimum ``base`` before it and ``height = loss[peak] / base`` (inf for a non-finite peak)."""

    start: int
    peak: int
    end: int | None
    base: float
    height: float


def loss_spikes(loss: Sequence[float], factor: float = 2.0, min_rise: float = 0.0) -> list[Spike]:
    r"""Episodes where the loss exceeds ``factor`` × its running minimum (and the running
    minimum by more than ``min_rise`` in absolute terms).

    The running minimum at index ``t`` is :math:`\min_{s<t} L_s`; a spike starts at the
    first ``t`` with :math:`L_t > \max(\mathrm{factor}\cdot m_t, m_t + \mathrm{min\_rise})`
    and ends at the first later index back at or below that line (the line of the start,
    so one episode is not split by its own peak). Non-finite values count as above the
    line. A monotonically decreasing loss has no spike.
    """
    if not factor > 1:
        raise ValueError(f"factor must be > 1, got {factor!r}")
    if min_rise < 0:
        raise ValueError(f"min_rise must be ≥ 0, got {min_rise!r}")
    L = np.asarray(loss, dtype=float)
    spikes: list[Spike] = []
    run_min = math.inf
    t = 0
    while t < len(L):
        v = L[t]
        if math.isfinite(run_min):
            line = max(factor * run_min, run_min + min_rise)
            if not math.isfinite(v) or v > line:
                start, peak, peak_v = t, t, v
                t += 1
                while t < len(L) and (not math.isfinite(L[t]) or L[t] > line):
                    if not math.isfinite(L[t]) or (math.isfinite(peak_v) and L[t] > peak_v):
                        if math.isfinite(peak_v):
                            peak, peak_v = t, L[t]
                    t += 1
                end = t if t < len(L) else None
                height = peak_v / run_min if math.isfinite(peak_v) and run_min > 0 else math.inf
                spikes.append(Spike(start, peak, end, float(run_min), float(height)))
                continue
        if math.isfinite(v):
            run_min = min(run_min, v)
        t += 1
    return spikes
