r"""Small exact toys: quadratics, the descent lemma, and optimisers on 1-D / DLN problems.

Everything is float64 and closed-form where a closed form exists:

* :class:`Quadratic`: :math:`L(w) = \tfrac12 (w-w^*)^\top H (w-w^*)` with
  :math:`H = Q\,\mathrm{diag}(\lambda)\,Q^\top` (λ ≥ 0, Q orthogonal). GD is linear:
  in the eigenbasis the i-th coordinate is multiplied by :math:`1-\eta\lambda_i` each step,
  so :math:`c_{i,t} = (1-\eta\lambda_i)^t c_{i,0}` (:func:`quadratic_gd_closed_form`).
* The descent lemma (A Lemma 1): for a convex, :math:`l`-smooth :math:`L`,
  :math:`L(\theta_{t+1}) \le L(\theta_t) - \eta(1-\eta l/2)\,\|\nabla L(\theta_t)\|^2`
  (:func:`descent_lemma_bound`); on a quadratic the slack is exactly
  :math:`\tfrac{\eta^2}{2}(l\|g\|^2 - g^\top H g) \ge 0` (:func:`descent_lemma_slack_exact`).
* :func:`geometric_rate`: the measured per-step growth factor of a sequence (least squares on
  :math:`\log|x_t|`), to compare with :math:`|1-\eta\lambda|`.
* :func:`run_optimizer`: drive an :class:`instab_lib.optim.Optimizer` on a problem given by a
  gradient function on a list of 0-d tensors (the 1-D quadratic of REFERENCE §5.2(a), the DLN
  of §5.2(b)); the update rules themselves live only in :mod:`instab_lib.optim`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..validation import check_int_at_least, check_positive

__all__ = [
    "Quadratic",
    "quadratic",
    "quadratic_gd",
    "quadratic_gd_closed_form",
    "descent_lemma_bound",
    "descent_lemma_slack_exact",
    "geometric_rate",
    "run_optimizer",
    "quadratic_1d_grad",
    "dln_grad",
]


@dataclass(frozen=True)
class Quadratic:
    r"""The quadratic :math:`L(w) = \tfrac12 (w-w^*)^\top H (w-w^*)`, :math:`H = Q\,\mathrm{diag}(\lambda)\,Q^\top`.

    ``eigenvalues`` (D,) ≥ 0 (convex), ``eigenvectors`` Q (D, D) orthogonal (columns), ``minimum``
    :math:`w^*` (D,). The smoothness constant is :math:`l = \max_i \lambda_i`.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    minimum: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.eigenvalues.size)

    @property
    def hessian(self) -> np.ndarray:
        """H = Q diag(λ) Qᵀ, shape (D, D)."""
        q = self.eigenvectors
        return (q * self.eigenvalues) @ q.T

    @property
    def smoothness(self) -> float:
        """l = λ_max (the Lipschitz constant of ∇L)."""
        return float(self.eigenvalues.max())

    def loss(self, w: np.ndarray) -> np.ndarray:
        r""":math:`\tfrac12 (w-w^*)^\top H (w-w^*)`; ``w`` (..., D) → (...)."""
        d = np.asarray(w, dtype=np.float64) - self.minimum
        return 0.5 * np.einsum("...i,ij,...j->...", d, self.hessian, d)

    def grad(self, w: np.ndarray) -> np.ndarray:
        r""":math:`\nabla L = H(w-w^*)`; ``w`` (..., D) → (..., D)."""
        d = np.asarray(w, dtype=np.float64) - self.minimum
        return d @ self.hessian.T

    def coords(self, w: np.ndarray) -> np.ndarray:
        r"""Eigen-coordinates :math:`c = Q^\top (w - w^*)`; (..., D) → (..., D)."""
        return (np.asarray(w, dtype=np.float64) - self.minimum) @ self.eigenvectors


def quadratic(eigenvalues: Sequence[float], eigenvectors: np.ndarray | None = None,
              minimum: Sequence[float] | None = None) -> Quadratic:
    """Build a :class:`Quadratic`; Q defaults to the identity, w* to 0. Checks λ ≥ 0 and Qᵀ Q = I."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if lam.ndim != 1 or lam.size < 1 or not np.all(np.isfinite(lam)) or np.any(lam < 0):
        raise ValueError(f"eigenvalues must be a non-empty 1-d list of finite numbers >= 0, got {eigenvalues!r}")
    q = np.eye(lam.size) if eigenvectors is None else np.asarray(eigenvectors, dtype=np.float64)
    if q.shape != (lam.size, lam.size) or not np.allclose(q.T @ q, np.eye(lam.size), atol=1e-12):
        raise ValueError("eigenvectors must be an orthogonal (D, D) matrix")
    m = np.zeros(lam.size) if minimum is None else np.asarray(minimum, dtype=np.float64)
    if m.shape != lam.shape:
        raise ValueError(f"minimum must have shape {lam.shape}, got {m.shape}")
    return Quadratic(lam, q, m)


def quadratic_gd(q: Quadratic, w0: Sequence[float], eta: float, steps: int) -> np.ndarray:
    r"""Iterate GD :math:`w_{t+1} = w_t - \eta H (w_t - w^*)`; returns the iterates, shape (steps+1, D)."""
    check_positive("eta", eta)
    check_int_at_least("steps", steps, 1)
    w = np.asarray(w0, dtype=np.float64).copy()
    if w.shape != (q.dim,):
        raise ValueError(f"w0 must have shape ({q.dim},), got {w.shape}")
    out = np.empty((steps + 1, q.dim))
    out[0] = w
    for t in range(steps):
        with np.errstate(over="ignore", invalid="ignore"):
            w = w - eta * q.grad(w)
        out[t + 1] = w
    return out


def quadratic_gd_closed_form(q: Quadratic, w0: Sequence[float], eta: float, steps: int) -> np.ndarray:
    r"""GD on a quadratic in closed form: :math:`w_t = w^* + Q\,\mathrm{diag}((1-\eta\lambda)^t)\,Q^\top (w_0-w^*)`.

    Shape (steps+1, D). Equal to :func:`quadratic_gd` up to rounding.
    """
    check_positive("eta", eta)
    check_int_at_least("steps", steps, 1)
    c0 = q.coords(np.asarray(w0, dtype=np.float64))
    t = np.arange(steps + 1)[:, None]
    with np.errstate(over="ignore"):
        c = (1 - eta * q.eigenvalues)[None, :] ** t * c0[None, :]
    return q.minimum + c @ q.eigenvectors.T


def descent_lemma_bound(loss_t: np.ndarray, grad_sq_norm_t: np.ndarray, eta: float, smoothness: float) -> np.ndarray:
    r"""A Lemma 1's right-hand side :math:`L(\theta_t) - \eta(1 - \eta l/2)\|\nabla L(\theta_t)\|^2`.

    Element-wise over arrays of equal shape (one entry per step t); compare with
    :math:`L(\theta_{t+1})`. For η < 2/l the coefficient is positive, so the bound guarantees
    descent; for η > 2/l it still holds for an l-smooth L but allows the loss to rise.
    """
    check_positive("eta", eta)
    check_positive("smoothness", smoothness)
    return np.asarray(loss_t, dtype=np.float64) - eta * (1 - eta * smoothness / 2) * np.asarray(grad_sq_norm_t)


def descent_lemma_slack_exact(q: Quadratic, w: np.ndarray, eta: float) -> np.ndarray:
    r"""Exact slack of the descent lemma on a quadratic: :math:`\tfrac{\eta^2}{2}(l\|g\|^2 - g^\top H g)`.

    From :math:`L(w-\eta g) = L(w) - \eta\|g\|^2 + \tfrac{\eta^2}{2} g^\top H g` with :math:`g = H(w-w^*)`:
    bound − L(w_{t+1}) equals this, which is ≥ 0 because :math:`g^\top H g \le l\|g\|^2`.
    ``w`` (..., D) → (...).
    """
    g = q.grad(w)
    ghg = np.einsum("...i,ij,...j->...", g, q.hessian, g)
    return 0.5 * eta**2 * (q.smoothness * np.sum(g * g, axis=-1) - ghg)


def geometric_rate(x: Sequence[float] | np.ndarray) -> float:
    r"""Per-step growth factor of a sequence: :math:`\exp(\hat b)` with :math:`\hat b` the least-squares
    slope of :math:`\log|x_t|` against t. For :math:`x_t = x_0 \rho^t` (any sign pattern) it returns
    :math:`|\rho|`. Needs ≥ 2 non-zero finite entries.
    """
    a = np.abs(np.asarray(x, dtype=np.float64))
    if a.ndim != 1 or a.size < 2 or not np.all(np.isfinite(a)) or np.any(a == 0):
        raise ValueError("geometric_rate needs a 1-d sequence of >= 2 finite non-zero numbers")
    t = np.arange(a.size, dtype=np.float64)
    slope = np.polyfit(t, np.log(a), 1)[0]
    return float(np.exp(slope))


GradFn = Callable[[list[torch.Tensor]], list[torch.Tensor]]


def run_optimizer(opt, params0: Sequence[float], grad_fn: GradFn, steps: int) -> np.ndarray:
    r"""Run ``steps`` updates of an :class:`instab_lib.optim.Optimizer` on scalar parameters.

    ``params0`` (P,) are the initial values, each a 0-d float64 tensor; ``grad_fn(params)`` returns
    the list of P gradients. Returns the iterates as a float64 array of shape (steps+1, P) (row 0 =
    ``params0``). The update rule is the optimiser's own (``opt.update``); nothing is re-implemented.
    """
    check_int_at_least("steps", steps, 1)
    params = [torch.tensor(float(v), dtype=torch.float64) for v in params0]
    state = opt.init(params)
    out = np.empty((steps + 1, len(params)))
    out[0] = params0
    for t in range(steps):
        params, state = opt.update(grad_fn(params), state, params)
        out[t + 1] = [p.item() for p in params]
    return out


def quadratic_1d_grad(S: float) -> GradFn:
    r"""Gradient of :math:`L = \tfrac{S}{2} w^2` on one 0-d tensor: :math:`[S w]` (REFERENCE §5.2(a))."""
    check_positive("S", S)
    return lambda p: [S * p[0]]


def dln_grad(p: list[torch.Tensor]) -> list[torch.Tensor]:
    r"""Gradient of the DLN :math:`L = (\prod_i \theta_i)^2` on D 0-d tensors: :math:`2\Theta\,\prod_{k\ne i}\theta_k`.

    Matches :func:`instab_lib.experiments.dln.gradient` with the square link (REFERENCE §5.2(b)).
    """
    theta = torch.stack(p)
    big = torch.prod(theta)
    return [2 * big * torch.prod(torch.cat([theta[:i], theta[i + 1:]])) for i in range(len(p))]
