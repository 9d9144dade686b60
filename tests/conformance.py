"""The one dense-matrix helper of the conformance discipline, shared by the test modules.

:func:`check_eigenpairs` holds any eigen-result (a solver's, an :class:`~instab_lib.curvature.EigTracker`'s,
a :class:`~instab_lib.Monitor`'s) to the dense matrix it claims to describe.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def expected_eigenvalues(lam: Tensor, which: str, k: int) -> Tensor:
    """The ``k`` eigenvalues a solver should return for ``which`` from the ascending spectrum ``lam``."""
    if which == "LA":
        return lam.flip(0)[:k]
    if which == "SA":
        return lam[:k]
    return lam[torch.argsort(lam.abs(), descending=True)][:k]


def check_eigenpairs(res: Any, truth: Tensor, which: str, k: int, tol: float) -> None:
    """Eigenpairs of a solver against the dense spectrum: values, orthonormal vectors, true residuals."""
    lam = torch.linalg.eigvalsh(truth)
    scale = float(lam.abs().max())
    X, theta = res.eigenvectors, res.eigenvalues
    assert res.converged and res.which == which and theta.shape == (k,) and X.shape == (truth.shape[0], k)
    torch.testing.assert_close(theta, expected_eigenvalues(lam, which, k), rtol=0, atol=10 * tol * scale)
    torch.testing.assert_close(X.T @ X, torch.eye(k, dtype=truth.dtype), rtol=0, atol=1e-9)
    true_r = (truth @ X - X * theta).norm(dim=0)
    torch.testing.assert_close(res.residuals, true_r, rtol=1e-3, atol=1e-10 * scale)
    assert bool((res.residuals <= tol * res.scale).all())
    assert res.n_matvec > 0
