"""Plot style, colour conventions and progress bars shared by the notebooks."""

from __future__ import annotations

import os
import sys
from typing import Iterable, Sequence, TypeVar

import matplotlib as mpl
import numpy as np

T = TypeVar("T")

#: Colours of the four DLN trajectories in the author's code (r, orange, green, blue),
#: in increasing learning rate: the first two stable, the last two unstable.
DLN_RUN_COLORS = ("tab:red", "tab:orange", "tab:green", "tab:blue")

#: Colour map of A Fig 5: dark purple (low η) to light yellow (high η).
LR_CMAP = "viridis"


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
            "font.size": 10,
            "legend.frameon": False,
        }
    )


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


def quiet() -> bool:
    """True when progress output should be suppressed (the book's runner sets ``INSTAB_QUIET=1``)."""
    return os.environ.get("INSTAB_QUIET", "") not in ("", "0")


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, leave: bool = False) -> Iterable[T]:
    """A tqdm progress bar on stderr in a terminal; silent when :func:`quiet` (the rendered book)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=leave, disable=quiet(), file=sys.stderr)
