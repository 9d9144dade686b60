"""What the benchmarks share to measure the peers the same way: product counters around PyHessian and
around a SciPy operator, and the explicit residuals every tool's answer is certified with.

Benchmark-only: the peers (curvlinops, PyHessian, SciPy's ``eigsh``) are imported inside the
functions, so importing this module needs none of them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from torch import Tensor

from instab_lib.curvature import HessianOperator
from instab_lib.curvature.results import _norms


def true_residuals(op: HessianOperator, vals: Tensor, vecs: Tensor) -> Tensor:
    """``‖H x_i − θ_i x_i‖₂`` for the columns ``x_i`` of ``vecs`` (``(dim, k)``, normalised here) and
    ``vals`` (``(k,)``), in ``op``'s dtype; the products are not counted (``op.n_matvec`` restored) and
    the operator's graph is released."""
    n0 = op.n_matvec
    vecs = vecs.to(op.dtype)
    vecs = vecs / _norms(vecs)  # float64 accumulation: a float32 norm over 11 M rows is off by up to 1 %
    r = _norms(op.matmat(vecs) - vecs * vals.to(op.dtype))
    op.n_matvec = n0
    op.release()
    return r


@contextmanager
def counting_pyhessian() -> Iterator[list[int]]:
    """Count PyHessian's Hessian-vector products: ``with counting_pyhessian() as cnt: …``; ``cnt[0]``
    is the number of calls of ``pyhessian.hessian.hessian_vector_product`` inside the block (the
    function every PyHessian solver calls once per product on a single batch)."""
    import pyhessian.hessian  # noqa: F401  (the module is patched, not the package)

    phm = sys.modules["pyhessian.hessian"]
    cnt = [0]
    orig = phm.hessian_vector_product

    def hvp(*a: Any, **kw: Any) -> Any:
        cnt[0] += 1
        return orig(*a, **kw)

    phm.hessian_vector_product = hvp
    try:
        yield cnt
    finally:
        phm.hessian_vector_product = orig


def counting_scipy_operator(H: Any, dtype: Any = np.float32) -> tuple[Any, list[int]]:
    """A ``scipy.sparse.linalg.LinearOperator`` that applies ``H`` (anything with ``@`` on NumPy
    arrays, e.g. curvlinops' ``to_scipy()``) and counts columns: returns ``(operator, cnt)`` with
    ``cnt[0]`` the number of products so far (a block of ``b`` columns counts ``b``)."""
    from scipy.sparse.linalg import LinearOperator

    cnt = [0]

    def mv(x: np.ndarray) -> np.ndarray:
        cnt[0] += 1 if x.ndim == 1 else x.shape[1]
        return H @ x

    return LinearOperator(H.shape, matvec=mv, matmat=mv, dtype=dtype), cnt
