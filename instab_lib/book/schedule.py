"""Which notebooks may execute side by side (:func:`instab_lib.book.notebooks.execute_many`).

Two notebooks that read the same shared runs (:mod:`instab_lib.experiments.shared_runs`) gain
nothing from running at once: the second one's workers wait on the run cache's entry locks while
the first computes those runs, and its core sits idle. So a notebook is started next to another
only when the runs they read are disjoint; when every notebook left shares runs with one already
running, the free core waits for it (the shared runs are then cached, and the waiting notebook reads
them back). What a notebook reads is found in its source: the experiments it names through
``shared_runs.get("<name>", …)`` or ``shared_runs.<name>(…)``, expanded at its ``scale`` parameter (``"ci"``
when it has none) to the cache keys of their runs, so experiments that share runs (the Goldilocks
grid and the SGD experiment's full-batch runs) are seen to conflict.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Mapping, Sequence

from .cards import notebooks_dir

__all__ = ["shared_experiments", "shared_run_keys", "next_notebook"]

_NAMED = re.compile(r"shared_runs\.(?:get\(\s*[\"'](\w+)[\"']|(fmnist_\w+)\()")


def shared_experiments(notebook_id: str) -> frozenset[str]:
    """The shared experiments the notebook's source names (``notebooks/<id>.py``)."""
    from ..experiments import shared_runs

    src = (notebooks_dir() / f"{notebook_id}.py").read_text()
    names = {m.group(1) or m.group(2) for m in _NAMED.finditer(src)}
    return frozenset(n for n in names if n in shared_runs.EXPERIMENTS or n in shared_runs.EXPERIMENT_FAMILIES)


@functools.lru_cache(maxsize=None)
def _run_ids(name: str, scale: str) -> frozenset[str]:
    """The configurations of one shared experiment, each as its canonical JSON (equal JSON, equal
    cache key: the key hashes the same dict with the library's fingerprint, the same for all)."""
    from ..experiments import shared_runs

    return frozenset(json.dumps(c.to_dict(), sort_keys=True, default=str)
                     for e in shared_runs.experiments(name, scale) for c in e.configs())


def shared_run_keys(notebook_id: str, params: Mapping[str, object]) -> frozenset[str]:
    """Every run of the notebook's shared experiments at its ``scale`` parameter (as canonical config JSON)."""
    from ..experiments import shared_runs

    scale = str(params.get("scale") or "ci")
    if scale not in shared_runs.SCALES:
        return frozenset()
    return frozenset().union(*(_run_ids(name, scale) for name in sorted(shared_experiments(notebook_id))))


def next_notebook(pending: Sequence[str], running: Sequence[str], keys: Mapping[str, frozenset[str]],
                  done: frozenset[str] = frozenset()) -> str | None:
    """The first of ``pending`` none of whose shared runs a ``running`` notebook may be computing
    (its runs less ``done``, the runs of the notebooks already finished, which are cached); the
    first of ``pending`` when none is running; else None (wait for one to finish)."""
    if not pending:
        return None
    if not running:
        return pending[0]
    busy = frozenset().union(*(keys.get(n, frozenset()) for n in running)) - done
    return next((n for n in pending if not keys.get(n, frozenset()) & busy), None)
