"""Progress bars: tqdm on stderr in a terminal, silent in the rendered book.

The book's runner (:func:`instab_lib.book.notebooks.execute`) sets ``INSTAB_QUIET=1`` in the
kernel, so loops that show a bar when a user runs them stay quiet in the pages.

The bar is always tqdm's plain text bar, never ``tqdm.auto``'s notebook widget: in a kernel
without ipywidgets the widget prints an ``IProgress not found`` TqdmWarning into the page,
and a widget's output cannot be rendered in the static book anyway.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable


def quiet() -> bool:
    """True when ``INSTAB_QUIET`` is set to anything but "" or "0"."""
    return os.environ.get("INSTAB_QUIET", "") not in ("", "0")


def progress(iterable: Iterable[Any] | None = None, desc: str = "", total: int | None = None,
             leave: bool = False, initial: int = 0) -> Any:
    """A tqdm bar (over ``iterable``, or manual with ``.update`` when it is None); disabled when :func:`quiet`."""
    from tqdm.std import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=leave, initial=initial, disable=quiet(), file=sys.stderr)
