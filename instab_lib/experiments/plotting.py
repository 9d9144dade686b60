"""Figures made for the book's column, and one colour (and marker) per learning rate.

**The column.** At a 1280-pixel window the book's article is 752 px wide and a cell's output,
where a figure goes, 688 px. A figure is made for it: :func:`figure` gives a :data:`FIG_WIDTH`-inch
figure at :data:`FIG_DPI` dots per inch (650 px, and about 675 px once the notebook's tight
bounding box has added its padding, so it is shown at its natural size, never shrunk), with at
most two panels a row, and :func:`apply_style` sets fonts that read at that size (ticks and legends 9–10 pt, i.e.
12–14 px on screen). ``tests/test_book.py`` measures every figure in the browser.

**One colour per η.** :data:`ETA_STYLES` is a fixed categorical table, η → (colour, marker), for
every learning rate any page uses (the notebooks' parameters and presets and the shared runs of
:mod:`instab_lib.experiments.shared_runs`; ``tests/test_plotting.py`` collects them). :func:`eta_style`
looks η up and raises a one-line error for a value that is not in the table, so a new η is given
its colour once, here, and keeps it on every page. Learning rates that appear in one figure have
colours at least 15 CIE76 units apart; a colour used twice comes with a different marker. The
DLN's learning rates keep the author's colours (red, orange, green, blue in increasing η, as in
``lawrencewang94/jax_eigs``): η = 0.001 red, 0.0095 orange, 0.011 green, 0.013 blue for A Fig 1,
0.009 orange-yellow and 0.2 dark blue for B Fig 3.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import matplotlib as mpl

from .progress import progress, quiet  # noqa: F401  (re-exported for notebooks)

#: Width of a figure in inches: with :data:`FIG_DPI` 650 px, within the 688 px a cell's output has at a 1280 px window.
FIG_WIDTH = 6.5
#: Dots per inch of the figures a page shows (its natural width is ``FIG_WIDTH * FIG_DPI`` pixels).
FIG_DPI = 100
#: Height of one row of panels, in inches.
ROW_HEIGHT = 2.9
#: At most this many panels side by side.
MAX_COLUMNS = 2

#: Colours of the four DLN trajectories in the author's code (r, orange, green, blue),
#: in increasing learning rate: the first two stable, the last two unstable.
DLN_RUN_COLORS = ("tab:red", "tab:orange", "tab:green", "tab:blue")


class EtaStyle(NamedTuple):
    """How one learning rate is drawn on every page."""

    color: str
    marker: str


#: η → (colour, marker): every learning rate the pages use (see the module docstring).
ETA_STYLES: dict[float, EtaStyle] = {eta: EtaStyle(*style) for eta, style in {
    0.001: ("#d62728", "o"), 0.0015: ("#654522", "^"), 0.002: ("#f99379", "^"), 0.003: ("#8db600", "o"),
    0.003125: ("#654522", "s"), 0.004: ("#0067a5", "^"), 0.005: ("#b3446c", "o"), 0.0075: ("#e68fac", "o"),
    0.009: ("#f6a600", "s"), 0.0095: ("#ff7f0e", "o"), 0.0099: ("#f99379", "s"), 0.01: ("#e7298a", "o"),
    0.0101: ("#8db600", "^"), 0.011: ("#2ca02c", "o"), 0.0125: ("#0000ff", "o"), 0.013: ("#1f77b4", "o"),
    0.015: ("#ff00ff", "s"), 0.02: ("#ee82ee", "o"), 0.025: ("#17becf", "o"), 0.03: ("#0067a5", "s"),
    0.035: ("#8b008b", "^"), 0.05: ("#1b9e77", "o"), 0.07: ("#848482", "^"), 0.08: ("#0067a5", "D"),
    0.095: ("#17becf", "D"), 0.0999: ("#604e97", "D"), 0.1: ("#000000", "o"), 0.102: ("#e25822", "X"),
    0.105: ("#f6a600", "X"), 0.11: ("#b3446c", "X"), 0.12: ("#882d17", "X"), 0.14: ("#2ca02c", "^"),
    0.2: ("#0b3d91", "o"), 0.28: ("#a1caf1", "^"), 0.3: ("#e25822", "s"), 0.4: ("#e25822", "o"),
    0.5: ("#b3446c", "s"), 0.57: ("#882d17", "^"), 0.8: ("#875692", "o"), 1.0: ("#f38400", "s"),
    1.13: ("#e7298a", "^"), 1.6: ("#c2b280", "o"), 2.0: ("#8db600", "s"), 2.26: ("#d62728", "^"),
    3.2: ("#f38400", "^"), 4.0: ("#c2b280", "s"), 10.0: ("#875692", "s"),
}.items()}


def _key(eta: float) -> float:
    return float(f"{float(eta):.6g}")


def eta_style(eta: float) -> EtaStyle:
    """The colour and marker of learning rate ``η`` on every page (:data:`ETA_STYLES`).
    Raises ``KeyError`` (one line) for an η that is not in the table: add it there once."""
    try:
        return ETA_STYLES[_key(eta)]
    except KeyError:
        raise KeyError(f"η = {float(eta):g} has no colour yet: add it once to "
                       "instab_lib.experiments.plotting.ETA_STYLES") from None


def eta_legend(where: Any, etas: Sequence[float], title: str | None = "η", **kw: Any) -> Any:
    """A legend with one entry (marker and colour of :func:`eta_style`) per learning rate, on an
    axes or a figure (``loc="outside lower center"`` puts it under a figure's panels)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker=eta_style(e).marker, color=eta_style(e).color, mec="k", mew=0.5, ms=7,
                      label=f"{e:g}") for e in etas]
    return where.legend(handles=handles, title=title, **kw)


def apply_style() -> None:
    """The book's matplotlib style: figures at :data:`FIG_DPI`, fonts that read at the column's width."""
    mpl.rcParams.update(
        {
            "figure.dpi": FIG_DPI,
            "savefig.dpi": FIG_DPI,
            "figure.figsize": (FIG_WIDTH, ROW_HEIGHT),
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.25,
            "font.size": 11,
            "axes.titlesize": 11,
            "axes.labelsize": 11,
            "xtick.labelsize": 10,
            "ytick.labelsize": 10,
            "legend.fontsize": 9.5,
            "legend.title_fontsize": 9.5,
            "legend.frameon": False,
            "lines.markersize": 6,
        }
    )


def figure(nrows: int = 1, ncols: int = 1, height: float | None = None, **kw: Any) -> tuple[Any, Any]:
    """A figure made for the book's column: :data:`FIG_WIDTH` inches wide, ``height`` inches tall
    (default :data:`ROW_HEIGHT` per row), constrained layout, at most :data:`MAX_COLUMNS` panels a
    row; the other keywords go to :func:`matplotlib.pyplot.subplots`. Returns ``(fig, axes)``."""
    import matplotlib.pyplot as plt

    if not 1 <= ncols <= MAX_COLUMNS:
        raise ValueError(f"a figure of the book has 1 to {MAX_COLUMNS} panels a row, got {ncols}")
    if nrows < 1:
        raise ValueError(f"nrows must be at least 1, got {nrows}")
    size = (FIG_WIDTH, float(height) if height is not None else ROW_HEIGHT * nrows)
    return plt.subplots(nrows, ncols, figsize=size, layout="constrained", **kw)


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


def seed_lines(ax, per_seed: Any, median_label: str = "median over seeds") -> None:
    """One thin grey line per seed and a bold black line of the median over seeds, with a legend
    entry for each kind. ``per_seed``: a pandas DataFrame, one row per seed, one column per x value
    (sorted); NaN cells are skipped by the median."""
    x = list(per_seed.columns)
    for _, row in per_seed.iterrows():
        ax.plot(x, row.to_numpy(dtype=float), color="0.6", lw=1, marker="o", ms=3)
    ax.plot(x, per_seed.median().to_numpy(dtype=float), color="k", lw=2.5, marker="o", label=median_label)
    ax.plot([], [], color="0.6", lw=1, marker="o", ms=3, label="one seed")
