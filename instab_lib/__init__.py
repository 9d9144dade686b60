"""instab_lib: the shared library of the instability companion.

One module per idea: ``dln`` (closed-form diagonal linear network), ``curvature``
(Hessian-vector products and eigen-solvers), ``rotation`` (eigenvector and
subspace similarity), ``models``, ``data``, ``optim``, ``train``, ``sweep``,
``plotting``, ``claims`` (recorded numbers and claim checks), ``author_lanczos`` (a
transcription, for illustration, of the Lanczos step in the author's public code) and ``notebooks``
(catalogue, presets, papermill runner, book build). Import the modules you need;
nothing heavy is imported here.
"""

import os
from pathlib import Path

__version__ = "0.1.0"


def repo_root() -> Path:
    """The companion's root: ``$INSTAB_ROOT`` if set, else the folder holding ``instab_lib``."""
    env = os.environ.get("INSTAB_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parent.parent
