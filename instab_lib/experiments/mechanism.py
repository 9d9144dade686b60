r"""The instability mechanism read off one run's table: phases, spikes, windows, rotation.

Every function takes the per-epoch table of :func:`instab_lib.experiments.train.train` (spectra
every epoch for the rotation measures) and returns plain numbers, so a page computes one
value per seed and decides its claim on the ensemble (:mod:`instab_lib.experiments.stats`).

* :func:`phases` — the first epoch with :math:`\eta_t S_t \ge 2` and the stable / unstable
  epoch masks (the stable phase ends ``onset_margin`` epochs before it).
* :func:`spikes` — the loss spikes ("valley jumps", :func:`instab_lib.experiments.episodes.find_spikes`)
  of at least ``min_length`` epochs that resolve before the run ends.
* :func:`spike_mask` — the epochs inside any spike (a margin around each).
* :func:`between_spikes` — per spike, the stretch it shares with its neighbours: from the end of
  the previous spike to the start of the next one (the run's first / last epoch at the ends).
* :func:`grassmann_distance` — :math:`d = \tfrac{2}{\pi}\arccos(\mathrm{sim})` from the
  author's subspace similarity :math:`\mathrm{sim} = \cos(d\pi/2)`, :math:`d \in [0, 1]`.
* :func:`rotation_rate` — the mean same-parity rotation :math:`d_t` between :math:`\theta_{t-2}`
  and :math:`\theta_t` (column ``subspace_par``) over chosen epochs: how fast the top-k
  eigenspace turns, without counting the period-2 flip of the edge of stability.
* :func:`rotation_per_spike` — the rotation path length of one instability:
  :math:`\sum d_t` over the same-parity steps inside it (every other epoch).
* :func:`matched_window` — the epochs of a stable run whose sharpness lies in a given band
  (a control "at matched sharpness").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from .episodes import Episode, find_spikes

__all__ = ["Phases", "phases", "spikes", "spike_mask", "Stretch", "between_spikes", "grassmann_distance",
           "rotation_values", "rotation_rate", "rotation_per_spike", "matched_window", "eta_s_over_2"]


@dataclass(frozen=True)
class Phases:
    """``first_unstable``: the first evaluated epoch with ηS ≥ 2 (None if never); ``stable``,
    ``unstable``: boolean masks over the table's rows (epochs before ``first_unstable −
    onset_margin``; epochs from ``first_unstable`` on)."""

    first_unstable: int | None
    stable: np.ndarray
    unstable: np.ndarray


def eta_s_over_2(table: pd.DataFrame) -> pd.Series:
    """:math:`\\eta_t S_t / 2` per evaluated epoch (index: epoch); ≥ 1 is beyond the stability threshold."""
    sp = table[table["sharpness"].notna()]
    return pd.Series((sp["lr"] * sp["sharpness"] / 2).to_numpy(), index=sp["epoch"].to_numpy())


def phases(table: pd.DataFrame, onset_margin: int = 2) -> Phases:
    """The stable and unstable phases of a run (see :class:`Phases`)."""
    r = eta_s_over_2(table)
    over = r.index[r.to_numpy() >= 1.0]
    first = int(over[0]) if len(over) else None
    ep = table["epoch"].to_numpy()
    if first is None:
        return Phases(None, np.ones(len(ep), bool), np.zeros(len(ep), bool))
    return Phases(first, ep < first - onset_margin, ep >= first)


def spikes(table: pd.DataFrame, rel: float = 0.02, window: int = 10, min_length: int = 1,
           min_height: float = 1.0) -> list[Episode]:
    """Loss spikes of at least ``min_length`` epochs that resolve before the run ends and whose peak
    is at least ``min_height`` × the lowest loss of the ``window`` epochs before them (1.1: a spike
    of 10% or more, an instability one sees in the loss curve, not a wiggle)."""
    out = []
    loss = table.set_index("epoch")["train_loss"]
    for s in find_spikes(table, "train_loss", rel=rel, window=window, min_length=min_length):
        if s.resolved is None:
            continue
        base = float(loss.loc[max(int(loss.index[0]), s.start - window):s.start - 1].min())
        if s.peak_value >= min_height * base:
            out.append(s)
    return out


class Stretch(NamedTuple):
    """One spike with the quiet stretch around it: the epochs ``after_previous … spike.start − 1``
    lie after the previous spike (or from the run's first epoch), ``spike.end + 1 … before_next``
    before the next one starts (or to the run's last epoch). Both bounds are inclusive epochs."""

    spike: Episode
    after_previous: int
    before_next: int


def between_spikes(spikes: Sequence[Episode], first: int, last: int) -> list[Stretch]:
    """The spikes in order of their start, each with the epochs it shares with no other spike:
    ``after_previous`` = end of the previous spike + 1 (``first`` for the first spike) and
    ``before_next`` = start of the next spike − 1 (``last`` for the last). Spikes are disjoint
    (:func:`~instab_lib.experiments.episodes.find_spikes` returns maximal runs), so for spike
    ``i`` of ``n``: ``[end_{i-1} + 1, start_{i+1} − 1]``. ``first``/``last``: the run's first and
    last recorded epoch."""
    if last < first:
        raise ValueError(f"last epoch {last} is before the first {first}")
    sp = sorted(spikes, key=lambda e: e.start)
    for a, b in zip(sp, sp[1:]):
        if b.start <= a.end:
            raise ValueError(f"spikes overlap: {a.start}–{a.end} and {b.start}–{b.end}")
    return [Stretch(s, sp[i - 1].end + 1 if i else first, sp[i + 1].start - 1 if i + 1 < len(sp) else last)
            for i, s in enumerate(sp)]


def spike_mask(table: pd.DataFrame, episodes: Sequence[Episode], margin: int = 0) -> np.ndarray:
    """Rows whose epoch lies in ``[start − margin, end + margin]`` of any episode."""
    ep = table["epoch"].to_numpy()
    m = np.zeros(len(ep), bool)
    for s in episodes:
        m |= (ep >= s.start - margin) & (ep <= s.end + margin)
    return m


def grassmann_distance(similarity: float | np.ndarray) -> float | np.ndarray:
    """:math:`d = \\tfrac{2}{\\pi}\\arccos(\\mathrm{sim})`, the normalised Grassmann distance behind the
    author's ``dk_cos`` similarity :math:`\\cos(d\\pi/2)` (0: same subspace, 1: orthogonal)."""
    s = np.clip(np.asarray(similarity, dtype=float), -1.0, 1.0)
    d = 2.0 / math.pi * np.arccos(s)
    return float(d) if d.ndim == 0 else d


def rotation_values(table: pd.DataFrame, mask: np.ndarray | None = None, column: str = "subspace_par") -> np.ndarray:
    """The same-parity rotations :math:`d_t` (:func:`grassmann_distance` of ``column``) of the rows
    selected by ``mask`` (all rows when None) that have a value: shape ``(m,)``, ``m ≤ len(table)``."""
    v = table[column].to_numpy(dtype=float) if column in table else np.full(len(table), np.nan)
    if mask is not None:
        v = v[mask]
    v = v[np.isfinite(v)]
    return np.atleast_1d(grassmann_distance(v)) if v.size else np.empty(0)


def rotation_rate(table: pd.DataFrame, mask: np.ndarray | None = None, column: str = "subspace_par") -> float:
    """Mean same-parity rotation :math:`d_t` over the rows selected by ``mask``
    (:func:`rotation_values`); NaN when none has a value."""
    v = rotation_values(table, mask, column)
    return float(np.mean(v)) if v.size else float("nan")


def rotation_per_spike(table: pd.DataFrame, spike: Episode, column: str = "subspace_par") -> float:
    """Rotation path length of one instability: :math:`\\sum d_t` over the same-parity steps
    ``t = last_stable + 2, last_stable + 4, …, ≤ resolved`` (each step compares θ_t with θ_{t−2})."""
    t = table.set_index("epoch")[column] if column in table else None
    if t is None:
        return float("nan")
    steps = range(spike.last_stable + 2, spike.resolved + 1, 2)
    vals = np.array([t.get(e, np.nan) for e in steps], dtype=float)
    vals = vals[np.isfinite(vals)]
    return float(np.sum(grassmann_distance(vals))) if vals.size else float("nan")


def matched_window(table: pd.DataFrame, lo: float, hi: float) -> np.ndarray:
    """Rows of ``table`` whose sharpness lies in ``[lo, hi]`` (a control at matched sharpness)."""
    s = table["sharpness"].to_numpy(dtype=float)
    return np.isfinite(s) & (s >= lo) & (s <= hi)


def similarity_to_reference(run: "object", ref_epoch: int, epochs: Sequence[int]) -> pd.DataFrame:
    """Similarity of the saved top-k eigenvectors at each of ``epochs`` to those at ``ref_epoch``
    (the run must have saved snapshots there): columns ``epoch``, ``same_parity`` (an even
    number of epochs from the reference), ``cos_i`` (|cos| of the i-th eigenvectors) and
    ``subspace`` (the author's top-k subspace similarity)."""
    from .. import rotation

    R = run.snapshot(int(ref_epoch))["eigenvectors"].double()
    rows = []
    for t in epochs:
        V = run.snapshot(int(t))["eigenvectors"].double()
        row = {"epoch": int(t), "same_parity": (int(t) - int(ref_epoch)) % 2 == 0,
               "subspace": rotation.subspace_similarity(R, V)}
        for k in range(R.shape[1]):
            row[f"cos_{k + 1}"] = rotation.abs_cosine(R[:, k], V[:, k])
        rows.append(row)
    return pd.DataFrame(rows)


def largest_rise(values: Sequence[float]) -> float:
    """The largest increase between consecutive values (≤ 0 for a non-increasing sequence;
    −inf for fewer than two values)."""
    v = np.asarray(values, dtype=float)
    return float(np.max(np.diff(v))) if v.size > 1 else float("-inf")


def chance_monotone(n_steps: int) -> float:
    """Probability that ``n_steps`` exchangeable random increments come out in decreasing order
    of their partial sums, i.e. that a random ordering of ``n_steps + 1`` values is
    non-increasing: :math:`1/(n+1)!` — the null of "monotone within a spike"."""
    return 1.0 / math.factorial(n_steps + 1)


def first_epoch_at_or_below(table: pd.DataFrame, value: float, column: str = "train_loss",
                            epochs: Sequence[int] | None = None) -> int | None:
    """The first epoch (among ``epochs``, e.g. those with a snapshot; default: every row) whose
    ``column`` is at most ``value``: where a run reaches a given training loss. None if never."""
    t = table.set_index("epoch")[column]
    if epochs is not None:
        t = t.loc[[e for e in epochs if e in t.index]]
    hit = t.index[t.to_numpy(dtype=float) <= value]
    return int(hit[0]) if len(hit) else None


def top_mean(table: pd.DataFrame, epoch: int, k: int = 3, halfwidth: int = 1) -> float:
    """Median over the evaluated epochs in ``[epoch − halfwidth, epoch + halfwidth]`` of the mean of
    the top-``k`` eigenvalues (a window, not one snapshot: the edge of stability flips every step)."""
    cols = [f"eig_top_{i}" for i in range(1, k + 1)]
    t = table.set_index("epoch")
    w = t.loc[max(t.index.min(), epoch - halfwidth):epoch + halfwidth, cols].dropna()
    return float(w.mean(axis=1).median()) if len(w) else float("nan")
