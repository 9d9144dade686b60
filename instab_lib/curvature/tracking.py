"""Warm-started tracking of eigenpairs across training steps (:class:`EigTracker`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .krylov import DEFAULT_TOL, MIN_EXTRA_BASIS, _default_ncv, _thick_restart_lanczos, _warn_if_stagnated, lanczos
from .operators import LinearOperator
from .results import _WHICH, EigResult, _check_common, _finish, _generator, _inner
from .subspace import lobpcg

_WARM = ("krylov", "residual", "lobpcg")
_LAGS = (1, 2, "auto")

#: The ``warm_extra`` of trackers pickled before it was a parameter (their behaviour then).
LEGACY_WARM_EXTRA = 3


def _similarity(A: Tensor, B: Tensor) -> float:
    """``‖AᵀB‖_F² / k`` for orthonormal ``(dim, k)`` blocks: the mean squared cosine of the
    principal angles between the two subspaces (1: the same subspace, 0: orthogonal)."""
    return float(_inner(A, B).pow(2).sum()) / A.shape[1]


class EigTracker:
    """Warm-started tracking of ``k`` eigenpairs across training steps.

    The first :meth:`update` is a cold :func:`lanczos`. Each later one starts from
    previous eigenvectors ``X_prev``:

    * ``warm="krylov"`` (default): thick-restart Lanczos from the single vector
      ``v₀ = Σ_i x_i`` (the sum of the ``X_prev`` columns). A Krylov space is the best
      polynomial filter for a given number of products, and ``v₀`` holds every tracked
      direction, so no product is spent on ``H X_prev`` as a block; the stop is the same
      explicit-residual test as a cold solve, with at least ``k + warm_extra`` basis
      vectors (default: a cold solve's ``MIN_EXTRA_BASIS`` = 10). On the fMNIST MLP at the
      edge of stability (top-10, tol 1e-3) this costs a median of 16 products against 21
      for a cold Lanczos and 33 for ``"residual"`` with ``warm_extra = 3`` (measured:
      ``benchmarks/RESULTS.md``). ``block_size = b > 1`` starts block Lanczos
      from ``b`` vectors instead (the sums of the columns ``i ≡ j mod b``): more products
      (18 for ``b = 2`` there) in fewer passes, each a ``b``-column ``matmat``, which pays
      where the operator's block products are cheaper per column (the ``"mlp"`` method).
    * ``warm="residual"``: pays ``k + guard`` products for ``H X_prev``, then runs
      Rayleigh–Ritz on the growing basis, appending one vector per product: the residual
      ``H x − θ x`` of the worst unconverged wanted Ritz pair
      (``lanczos(..., V0=X_prev, expand="residual")``).
    * ``warm="lobpcg"``: :func:`lobpcg` (block, soft locking) from ``X_prev``.

    ``lag`` chooses ``X_prev``: ``1`` the last update's vectors, ``2`` those of the update
    before (at the edge of stability GD flips between two states, so the Hessian of step
    ``t`` resembles that of ``t − 2`` far more than that of ``t − 1``: relative residuals
    2e-2 against 2e-1 on the fMNIST MLP), ``"auto"`` (default) decides after every update
    which of the two previous blocks the new eigenvectors resemble more (the subspace
    similarity ``‖X_newᵀ X_old‖_F² / k``, no products) and starts the next update from the
    block of that parity. ``guard`` extra vectors (``residual``/``lobpcg``) absorb
    eigenvalues entering from the bulk.

    If the warm solve does not converge within its budget (``krylov``: that of a cold
    solve; the others: ``k + guard + 2·max_warm_iter`` products), or every
    ``refresh_every`` updates when set, a cold Lanczos solve is run (the failed warm
    products are added to ``n_matvec``). A warm solve that stops on stagnating residuals
    (``tol`` below the rounding level, see :func:`lanczos`) is returned as it is, with
    ``converged=False``. Only the ``k`` wanted pairs must converge, each certified by its
    explicit residual ``‖H x − θ x‖ ≤ tol · max|θ|``. The floor of any warm start that
    certifies ``k`` pairs is ``k`` products.

    **What a warm start cannot see.** A residual certifies that ``(θ, x)`` is an eigenpair, not
    that no larger eigenvalue exists. A warm start lies (almost) in the previous top-``k``
    eigenspace; if an eigenvalue enters from a direction orthogonal to it between two updates,
    the Krylov space reaches that direction only through rounding noise, i.e. like a cold solve
    from a random vector, and needs as many vectors as a cold solve to catch it. ``warm_extra``
    is that number of vectors beyond ``k``: with 3, a synthetic float32 operator (dimension
    2,000, bulk N(0, 300²), the old top-``k`` still eigenvectors at 5,000–4,000 while a new
    orthogonal direction rises to 5,100–6,500) returned the old value in 80 of 96 crossings
    (k = 1, 2, 5), with 6 in 11, with 8 and 10 in none. Along full-batch GD on the fMNIST MLP
    at η = 0.1 and 0.05 (k = 1 and 3, every epoch or every 5) ``warm_extra = 3`` agreed with a
    cold solve's λ₁ at all 724 evaluations (largest relative gap 1.6e-5), which is why the book's
    harness keeps 3 (``instab_lib.experiments.hooks``); the default 10 costs 90–97 % of a cold
    solve's products there (k = 1–3): it buys fewer restarts, not fewer products. ``refresh_every``
    bounds how long a missed eigenvalue can stay missed. ``warm="residual"``/``"lobpcg"`` are not
    protected by ``warm_extra``.

    Attributes: ``history`` — one dict per update (``n_matvec``, ``warm``, ``lag`` (0 for a
    cold solve), ``converged``). Picklable (trackers live in training checkpoints).
    """

    def __init__(
        self,
        k: int,
        which: str = "LA",
        tol: float = DEFAULT_TOL,
        seed: int = 0,
        guard: int = 0,
        max_warm_iter: int = 30,
        warm: str = "krylov",
        refresh_every: int | None = None,
        lanczos_kwargs: dict[str, Any] | None = None,
        lag: int | str = "auto",
        block_size: int = 1,
        warm_extra: int = MIN_EXTRA_BASIS,
    ) -> None:
        if which not in _WHICH:
            raise ValueError(f"unknown which={which!r}; expected one of {_WHICH}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if not (tol >= 0):
            raise ValueError(f"tol must be non-negative, got {tol}")
        if guard < 0:
            raise ValueError(f"guard must be ≥ 0, got {guard}")
        if warm not in _WARM:
            raise ValueError(f"unknown warm={warm!r}; expected one of {_WARM}")
        if lag not in _LAGS:
            raise ValueError(f"unknown lag={lag!r}; expected one of {_LAGS}")
        if not isinstance(block_size, int) or not 1 <= block_size <= k:
            raise ValueError(f"block_size must be an integer in [1, k={k}], got {block_size!r}")
        if isinstance(warm_extra, bool) or not isinstance(warm_extra, int) or warm_extra < 0:
            raise ValueError(f"warm_extra must be a non-negative integer, got {warm_extra!r}")
        self.warm, self.lag, self.block_size, self.warm_extra = warm, lag, block_size, warm_extra
        self.k, self.which, self.tol, self.seed = k, which, tol, seed
        self.guard, self.max_warm_iter, self.refresh_every = guard, max_warm_iter, refresh_every
        self.lanczos_kwargs = dict(lanczos_kwargs or {})
        self.prev: EigResult | None = None
        self._X: Tensor | None = None  # eigenvectors of the last update
        self._X_older: Tensor | None = None  # ... and of the update before it
        self._lag_next = 1
        self.history: list[dict[str, Any]] = []

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Trackers pickled before ``lag``/``warm_extra`` existed resume as they behaved then (lag 1,
        ``warm_extra`` 3)."""
        state.setdefault("lag", 1)
        state.setdefault("_X_older", None)
        state.setdefault("_lag_next", 1)
        state.setdefault("block_size", 1)
        state.setdefault("warm_extra", LEGACY_WARM_EXTRA)
        self.__dict__.update(state)

    def reset(self) -> None:
        """Forget the previous eigenvectors (next update is cold)."""
        self.prev, self._X, self._X_older, self._lag_next = None, None, None, 1

    def _start(self, dim: int) -> tuple[Tensor | None, int]:
        """The block to start from and its lag (``None, 0``: no usable history)."""
        if self._X is None or self._X.shape[0] != dim:
            return None, 0
        lag = self._lag_next if self.lag == "auto" else self.lag
        if lag == 2 and self._X_older is not None and self._X_older.shape[0] == dim:
            return self._X_older, 2
        return self._X, 1

    def update(self, op: LinearOperator) -> EigResult:
        """Eigenpairs of ``op`` (``which``, ``k``), warm-started from the last calls."""
        op = _check_common(op, self.k, self.which, self.tol, strict=True)
        n = len(self.history)
        kk = min(self.k + self.guard, op.dim - 1)
        refresh = self.refresh_every is not None and n % self.refresh_every == 0
        spent = 0
        start, lag = self._start(op.dim)
        if start is not None and not refresh and (self.warm == "krylov" or 3 * kk <= op.dim):
            if self.warm == "krylov":
                w = self._warm_krylov(op, start, n)
            elif self.warm == "lobpcg":
                sc = self.prev.scale if self.prev is not None else None
                w = lobpcg(op, start, which=self.which, tol=self.tol, max_iter=self.max_warm_iter,
                           scale=sc, n_wanted=self.k)
            else:
                w = self._warm_residual(op, kk, self.prev.scale if self.prev is not None else None, start)
            if w.converged or w.extra.get("stagnated", False):
                return self._record(w, warm=True, lag=lag)
            spent = w.n_matvec
        r = lanczos(op, kk, which=self.which, tol=self.tol, seed=self.seed + n, **self.lanczos_kwargs)
        return self._record(r, warm=False, lag=0, spent=spent)

    def _warm_krylov(self, op: LinearOperator, start: Tensor, n: int) -> EigResult:
        """(Block) Lanczos from ``v_j = Σ_{i ≡ j mod b} x_i`` over the columns of ``start``."""
        S = start.to(dtype=op.dtype, device=op.device)
        b = min(self.block_size, S.shape[1])
        group = torch.arange(S.shape[1], device=S.device) % b
        v0 = torch.stack([S[:, group == j].sum(dim=1) for j in range(b)], dim=1)
        budget = self.lanczos_kwargs.get("max_iter") or max(50 * self.k, 300)
        ncv = self.lanczos_kwargs.get("ncv") or _default_ncv(self.k, op.dim, b)
        with torch.no_grad():
            run = _thick_restart_lanczos(
                op, [(self.which, self.k)], self.tol, budget, min(op.dim, max(ncv, self.k + 2 * b)), v0,
                _generator(self.seed + n), min_extra=self.warm_extra,
            )
        _warn_if_stagnated("EigTracker.update", run, self.tol, op.dtype, budget)
        theta, X, rn = run.best[0]
        return _finish(X, theta, rn, self.which, run.n_matvec, run.converged, run.iterations, self.tol,
                       run.scale, attained=run.attained, stagnated=run.stagnated)

    def _warm_residual(self, op: LinearOperator, kk: int, scale: float | None, start: Tensor) -> EigResult:
        """Rayleigh–Ritz on the previous vectors, expanded by worst Ritz residuals."""
        ncv = min(op.dim, _default_ncv(kk, op.dim, 1))
        budget = kk + self.max_warm_iter * 2
        with torch.no_grad():
            run = _thick_restart_lanczos(
                op, [(self.which, self.k)], self.tol, budget, max(ncv, kk + 2), start,
                _generator(self.seed), expand="residual", scale0=scale or 0.0,
            )
        _warn_if_stagnated("EigTracker.update", run, self.tol, op.dtype, budget)
        theta, X, rn = run.best[0]
        return _finish(X, theta, rn, self.which, run.n_matvec, run.converged, run.iterations, self.tol,
                       run.scale, attained=run.attained, stagnated=run.stagnated)

    def _record(self, r: EigResult, warm: bool, lag: int, spent: int = 0) -> EigResult:
        k = self.k
        res = EigResult(
            eigenvalues=r.eigenvalues[:k], eigenvectors=r.eigenvectors[:, :k],
            residuals=r.residuals[:k], n_matvec=r.n_matvec + spent,
            converged=bool((r.residuals[:k] <= self.tol * r.scale).all()),
            which=self.which, iterations=r.iterations, tol=self.tol, scale=r.scale,
            extra={"warm": warm, "lag": lag, "failed_warm_matvecs": spent,
                   "attained": float(r.residuals[:k].max()) / r.scale if r.scale > 0 else float("nan"),
                   "stagnated": bool(r.extra.get("stagnated", False))},
        )
        X_new = r.eigenvectors
        if self._X is not None and self._X_older is not None and self._X.shape[0] == self._X_older.shape[0] == X_new.shape[0]:
            # the new vectors resemble the block two updates back more than the last one: period 2
            older, last = _similarity(self._X_older[:, :k], X_new[:, :k]), _similarity(self._X[:, :k], X_new[:, :k])
            self._lag_next = 2 if older > last else 1
        self._X_older, self._X = self._X, X_new
        self.prev = res
        self.history.append({"n_matvec": res.n_matvec, "warm": warm, "lag": lag, "converged": res.converged})
        return res
