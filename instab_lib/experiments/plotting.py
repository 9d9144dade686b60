"""Plot style and colour conventions shared by the notebooks (``progress`` is re-exported)."""

from __future__ import annotations

from typing import Sequence

import matplotlib as mpl
import numpy as np

from .progress import progress, quiet  # noqa: F401  (re-exported for notebooks)

#: Colours of the four DLN trajectories in the author's code (r, orange, green, blue),
#: in increasing learning rate: the first two stable, the last two unstable.
DLN_RUN_COLORS = ("tab:red", "tab:orange", "tab:green", "tab:blue")

#: Colour map of A Fig 5: dark purple (low η) to light yellow (high η).
LR_CMAP = "viridis"
#: The fixed log-η range that :func:`eta_color` maps onto :data:`LR_CMAP`: the same η has the same
#: colour on every page (the DLN's η ≈ 0.01 and the networks' 0.001–2 share one scale).
ETA_COLOR_RANGE = (1e-3, 2.0)


def apply_style() -> None:
    """A plain, print-friendly matplotlib style used by every page."""
    mpl.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 130,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.25,
            "font.size": 11,
            "axes.titlesize": 11,
            "axes.labelsize": 11,
            "legend.fontsize": 9,
            "legend.frameon": False,
        }
    )


def mark_stability_limit(ax, limit) -> None:
    """Draw a measured :class:`~instab_lib.experiments.stability.StabilityLimit` on an η axis: the bracket
    [largest stable η, smallest unstable η] shaded grey and the estimate as a dotted line (A Fig 5)."""
    if limit.largest_stable is not None and limit.smallest_unstable is not None:
        ax.axvspan(limit.largest_stable, limit.smallest_unstable, color="0.9", zorder=0)
    ax.axvline(limit.estimate, ls=":", color="k", lw=1.5, label=f"stability limit ≈ {limit.estimate:.3g}")


def lr_axis(ax, etas: Sequence[float], plain_y: bool = False) -> None:
    """Label a log-η x axis with exactly the learning rates of the grid (``f"{η:g}"``, no
    minor ticks); with ``plain_y`` the y axis too is labelled ``f"{v:g}"`` (no 10^k)."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    etas = list(etas)
    ax.set_xticks(etas, [f"{e:g}" for e in etas], minor=False)
    ax.xaxis.set_minor_locator(NullLocator())
    if plain_y:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def eta_color(eta: float) -> tuple[float, float, float, float]:
    """The colour of learning rate ``η`` on every page: its position on a log scale over
    :data:`ETA_COLOR_RANGE` (clipped), dark purple (small) to yellow (large), as A Fig 5."""
    lo, hi = np.log(ETA_COLOR_RANGE[0]), np.log(ETA_COLOR_RANGE[1])
    pos = float(np.clip((np.log(float(eta)) - lo) / (hi - lo), 0.0, 1.0))
    return mpl.colormaps[LR_CMAP](0.05 + 0.85 * pos)


def lr_colors(etas: Sequence[float], cmap: str = LR_CMAP) -> list[tuple[float, float, float, float]]:
    """One colour per learning rate, ordered on a log scale from dark purple (low) to light yellow (high)."""
    etas = np.asarray(etas, dtype=float)
    if etas.size == 0:
        return []
    logs = np.log(etas)
    span = logs.max() - logs.min()
    pos = (logs - logs.min()) / span if span > 0 else np.zeros_like(logs)
    cm = mpl.colormaps[cmap]
    return [cm(0.05 + 0.9 * p) for p in pos]
