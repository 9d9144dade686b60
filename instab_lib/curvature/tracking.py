"""Warm-started tracking of eigenpairs across training steps (:class:`EigTracker`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .krylov import _default_ncv, _thick_restart_lanczos, _warn_if_stagnated, lanczos
from .results import _WHICH, EigResult, _check_common, _finish, _generator
from .subspace import lobpcg


class EigTracker:
    """Warm-started tracking of ``k`` eigenpairs across training steps.

    The first :meth:`update` is a cold :func:`lanczos`. Each later one starts from
    the previous eigenvectors ``X_prev`` (``(dim, k + guard)``), paying ``k + guard``
    products for ``H X_prev``, and then, with ``warm="residual"`` (default), runs
    Rayleigh–Ritz on the growing basis, appending one vector per product: the
    residual ``H x − θ x`` of the worst unconverged wanted Ritz pair
    (``lanczos(..., V0=X_prev, expand="residual")``); with ``warm="lobpcg"`` it runs
    :func:`lobpcg` (block, soft locking) instead. ``guard`` extra vectors absorb
    eigenvalues entering from the bulk. If the warm solve does not converge within
    its budget (``k + guard + 2·max_warm_iter`` products), or every
    ``refresh_every`` updates when set, a cold Lanczos solve is run (the failed warm
    products are added to ``n_matvec``). Only the ``k`` wanted pairs must converge.
    The saving over cold solves depends on how far ``H`` moves per step relative
    to ``tol``: the floor is ``k`` products per update.

    Attributes: ``history`` — one dict per update (``n_matvec``, ``warm``, ``converged``).
    """

    def __init__(
        self,
        k: int,
        which: str = "LA",
        tol: float = 1e-6,
        seed: int = 0,
        guard: int = 0,
        max_warm_iter: int = 30,
        warm: str = "residual",
        refresh_every: int | None = None,
        lanczos_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if which not in _WHICH:
            raise ValueError(f"unknown which={which!r}; expected one of {_WHICH}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if not (tol >= 0):
            raise ValueError(f"tol must be non-negative, got {tol}")
        if guard < 0:
            raise ValueError(f"guard must be ≥ 0, got {guard}")
        if warm not in ("residual", "lobpcg"):
            raise ValueError(f"unknown warm={warm!r}; expected 'residual' or 'lobpcg'")
        self.warm = warm
        self.k, self.which, self.tol, self.seed = k, which, tol, seed
        self.guard, self.max_warm_iter, self.refresh_every = guard, max_warm_iter, refresh_every
        self.lanczos_kwargs = dict(lanczos_kwargs or {})
        self.prev: EigResult | None = None
        self._X: Tensor | None = None
        self.history: list[dict[str, Any]] = []

    def reset(self) -> None:
        """Forget the previous eigenvectors (next update is cold)."""
        self.prev, self._X = None, None

    def update(self, op: Any) -> EigResult:
        """Eigenpairs of ``op`` (``which``, ``k``), warm-started from the last call."""
        _check_common(op, self.k, self.which, self.tol, strict=True)
        n = len(self.history)
        kk = min(self.k + self.guard, op.dim - 1)
        refresh = self.refresh_every is not None and n % self.refresh_every == 0
        spent = 0
        if self._X is not None and self._X.shape[0] == op.dim and not refresh and 3 * kk <= op.dim:
            sc = self.prev.scale if self.prev is not None else None
            if self.warm == "lobpcg":
                w = lobpcg(op, self._X, which=self.which, tol=self.tol, max_iter=self.max_warm_iter,
                           scale=sc, n_wanted=self.k)
            else:
                w = self._warm_residual(op, kk, sc)
            if w.converged or w.extra.get("stagnated", False):  # tol below the rounding level: no cold retry
                self._X = w.eigenvectors
                return self._record(w, warm=True)
            spent = w.n_matvec
        r = lanczos(op, kk, which=self.which, tol=self.tol, seed=self.seed + n, **self.lanczos_kwargs)
        self._X = r.eigenvectors
        return self._record(r, warm=False, spent=spent)

    def _warm_residual(self, op: Any, kk: int, scale: float | None) -> EigResult:
        """Rayleigh–Ritz on the previous vectors, expanded by worst Ritz residuals."""
        assert self._X is not None
        ncv = min(op.dim, _default_ncv(kk, op.dim, 1))
        budget = kk + self.max_warm_iter * 2
        with torch.no_grad():
            run = _thick_restart_lanczos(
                op, [(self.which, self.k)], self.tol, budget, max(ncv, kk + 2), self._X,
                _generator(self.seed), expand="residual", scale0=scale or 0.0,
            )
        _warn_if_stagnated("EigTracker.update", run, self.tol, op.dtype, budget)
        theta, X, rn = run.best[0]
        return _finish(X, theta, rn, self.which, run.n_matvec, run.converged, run.iterations, self.tol,
                       run.scale, attained=run.attained, stagnated=run.stagnated)

    def _record(self, r: EigResult, warm: bool, spent: int = 0) -> EigResult:
        k = self.k
        res = EigResult(
            eigenvalues=r.eigenvalues[:k], eigenvectors=r.eigenvectors[:, :k],
            residuals=r.residuals[:k], n_matvec=r.n_matvec + spent,
            converged=bool((r.residuals[:k] <= self.tol * r.scale).all()),
            which=self.which, iterations=r.iterations, tol=self.tol, scale=r.scale,
            extra={"warm": warm, "failed_warm_matvecs": spent,
                   "attained": float(r.residuals[:k].max()) / r.scale if r.scale > 0 else float("nan"),
                   "stagnated": bool(r.extra.get("stagnated", False))},
        )
        self.prev = res
        self.history.append({"n_matvec": res.n_matvec, "warm": warm, "converged": res.converged})
        return res
