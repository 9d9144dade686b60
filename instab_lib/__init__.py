"""instab_lib: curvature of a training loss, measured inside anyone's training loop.

Three layers, dependencies one way (book → experiments → library):

* **the library** (this package's own modules): ``monitor`` (:class:`Monitor`: sharpness,
  stability threshold, preconditioned sharpness and eigenspace rotation measured inside any
  training loop), ``adapters`` (what it reads from ``torch.optim`` and the library's
  optimisers), ``curvature`` (Hessian-vector products, one
  ``LinearOperator`` base, Lanczos, LOBPCG, warm-started tracking, Hutchinson, SLQ),
  ``rotation`` (eigenvector and subspace similarity), ``preconditioned`` (the preconditioned
  Hessian of an adaptive optimiser and its sharpness), ``thresholds`` (stability thresholds
  of GD, momentum and adaptive methods), ``optim`` (GD/SGD/RMSProp/Adam/Clipped-Ada as pure
  transforms), ``validation`` (one-line errors before compute). It imports only torch,
  numpy, scipy and pandas, and reads no setting of the book;
* **the experiments** (:mod:`instab_lib.experiments`): models, data, the training harness,
  the shared runs and the page analyses;
* **the book machinery** (:mod:`instab_lib.book`): the notebook runner, cards and claims,
  pages, archive, CLI.

The library's public API is available here by attribute, imported on first access (PEP 562),
so ``import instab_lib`` itself imports nothing heavy::

    from instab_lib import Monitor
    mon = Monitor(model, loss_fn, (X, y), optimizer=opt, k=3, every=10)   # then mon.step() after opt.step()

    import instab_lib
    op = instab_lib.HessianOperator(model, loss_fn, (X, y))
    top = instab_lib.lanczos(op, k=3)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the library module that defines it
_API = {
    "HessianOperator": "curvature",
    "LinearOperator": "curvature",
    "MatrixOperator": "curvature",
    "lanczos": "curvature",
    "lobpcg": "curvature",
    "EigTracker": "curvature",
    "EigResult": "curvature",
    "hutchinson_trace": "curvature",
    "slq_density": "curvature",
    "abs_cosine": "rotation",
    "principal_angles": "rotation",
    "subspace_similarity": "rotation",
    "eigenvector_similarity": "rotation",
    "PreconditionedOperator": "preconditioned",
    "preconditioned_sharpness": "preconditioned",
    "stability_threshold": "thresholds",
    "heavy_ball_threshold": "thresholds",
    "rotation_update": "rotation",
    "track_preconditioned_sharpness": "preconditioned",
    "Monitor": "monitor",
}
#: the library's modules, also importable by attribute (``instab_lib.optim``)
_MODULES = ("curvature", "rotation", "preconditioned", "thresholds", "optim", "validation", "adapters", "monitor")

__all__ = [*_API, "optim", "adapters"]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API, *_MODULES])
