r"""The loss landscape around a training run: slices and directional derivatives.

Used by the mechanism pages on Fashion-MNIST (``instability_slices``, ``curvature_moments``,
``spectral_density``, ``effective_parameters``).

Everything works on a **loss as a function of one flat parameter vector**
``f(θ) -> scalar`` (shape ``(dim,)``), so closed forms (quadratics, the DLN) and
networks are handled alike; :func:`network_loss` makes such a function from a
model, a loss and data (``torch.func.functional_call``).

Contents
--------
* :func:`network_loss` — ``θ ↦ L(θ)`` for a model on fixed data (eval mode).
* :class:`PointHessian` — the operator ``v ↦ ∇²f(θ) v`` at one point (double
  backward, graph built once), usable by :func:`instab_lib.curvature.lanczos` and
  :func:`instab_lib.curvature.hutchinson_trace`.
* :func:`directional_derivatives` — ``D^k f(θ)[d,…,d]`` for k = 1…4: k ≤ 2 exact,
  k = 3, 4 by central finite differences of Hessian-vector products (the
  companion's reading of B's *higher-order curvature moments*, REFERENCE §10).
* :func:`slice_along` — loss, directional curvature, Lanczos ``λ_max`` and
  Hutchinson estimates on ``θ + s·d`` for a grid of offsets ``s`` (A Fig 3, B Fig 2).
* :func:`run_loss` — ``θ ↦ L(θ)`` on a run's own model, loss and training data.
* :func:`unit` — a unit vector.

N_eff is :mod:`instab_lib.experiments.effective_parameters`, the instability episodes and
loss spikes :mod:`instab_lib.experiments.episodes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..curvature.operators import LinearOperator
from .seeding import shifted

__all__ = [
    "network_loss", "PointHessian", "directional_derivatives",
    "SliceResult", "slice_along", "run_loss", "unit",
]

LossOfTheta = Callable[[Tensor], Tensor]


def unit(v: Tensor) -> Tensor:
    """``v/‖v‖₂``; raises ``ValueError`` for a zero or non-finite vector."""
    n = float(torch.linalg.vector_norm(v))
    if not (n > 0 and math.isfinite(n)):
        raise ValueError(f"cannot normalise a vector of norm {n}")
    return v / n


def network_loss(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], X: Tensor, y: Tensor,
                 chunk: int | None = None) -> LossOfTheta:
    """``θ ↦ loss_fn(model_θ(X), y)`` with ``θ`` flat, ordered like ``model.parameters()``.

    The model is evaluated through :func:`torch.func.functional_call` (its own
    parameters are not touched) in eval mode. With ``chunk`` the mean over the data
    is accumulated over pieces of that many samples (weights ``n_c/N``).
    """
    from torch.func import functional_call

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    shapes = [p.shape for n, p in model.named_parameters() if p.requires_grad]
    sizes = [int(np.prod(s)) for s in shapes]
    N = len(y)
    step = chunk or N

    def f(theta: Tensor) -> Tensor:
        if theta.dim() != 1 or theta.numel() != sum(sizes):
            raise ValueError(f"θ must have shape ({sum(sizes)},), got {tuple(theta.shape)}")
        parts = torch.split(theta, sizes)
        params = {n: t.reshape(s) for n, t, s in zip(names, parts, shapes)}
        was = model.training
        model.eval()
        try:
            total = theta.new_zeros(())
            for i in range(0, N, step):
                xb, yb = X[i:i + step], y[i:i + step]
                total = total + (len(yb) / N) * loss_fn(functional_call(model, params, (xb,)), yb)
        finally:
            model.train(was)
        return total

    f.dim = sum(sizes)  # type: ignore[attr-defined]
    return f


class PointHessian(LinearOperator):
    """``v ↦ ∇²f(θ)v`` at a fixed point ``θ`` by double backward (the gradient graph is
    built once and reused), a :class:`~instab_lib.curvature.LinearOperator` (so
    :mod:`instab_lib.curvature`'s solvers accept it); ``loss`` and ``grad`` hold ``f(θ)``
    and ``∇f(θ)`` (detached)."""

    def __init__(self, f: LossOfTheta, theta: Tensor) -> None:
        self.theta = theta.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            val = f(self.theta)
            (g,) = torch.autograd.grad(val, self.theta, create_graph=True)
        self._g = g
        self.loss = float(val.detach())
        self.grad = g.detach()
        super().__init__(theta.numel(), theta.dtype, theta.device)

    def _matmat(self, V: Tensor) -> Tensor:
        """``∇²f(θ) V``, one backward pass through the stored gradient graph per column."""
        with torch.enable_grad():
            cols = [torch.autograd.grad(self._g, self.theta, grad_outputs=V[:, j], retain_graph=True)[0]
                    for j in range(V.shape[1])]
        return torch.stack([c.detach() for c in cols], dim=1)


def _hvp(f: LossOfTheta, theta: Tensor, d: Tensor) -> Tensor:
    return PointHessian(f, theta).matvec(d)


def directional_derivatives(f: LossOfTheta, theta: Tensor, d: Tensor, h: float | None = None) -> dict[str, float]:
    r"""Directional derivatives of ``f`` at ``θ`` along the unit vector ``u = d/‖d‖``.

    ``D1 = ∇f·u`` and ``D2 = uᵀHu`` are exact (autograd); the higher orders are central
    differences of the directional curvature ``c(s) = uᵀH(θ+su)u``:

    * ``D3 = f'''(0) ≈ (c(h) − c(−h)) / 2h``        (error O(h²)),
    * ``D4 = f''''(0) ≈ (c(h) − 2c(0) + c(−h)) / h²`` (error O(h²)),

    where ``f(s) = f(θ + s u)``. Default ``h``: ``1e-3`` in float64, ``3e-2`` in float32
    (round-off of ``c`` grows as ``ε/h²`` for D4). Returns ``{"D1", "D2", "D3", "D4", "h"}``.
    """
    u = unit(d)
    if h is None:
        h = 1e-3 if theta.dtype == torch.float64 else 3e-2
    if not h > 0:
        raise ValueError(f"finite-difference step h must be positive, got {h}")
    op0 = PointHessian(f, theta)
    c0 = float(u @ op0.matvec(u))
    cp = float(u @ _hvp(f, theta + h * u, u))
    cm = float(u @ _hvp(f, theta - h * u, u))
    return {"D1": float(op0.grad @ u), "D2": c0, "D3": (cp - cm) / (2 * h), "D4": (cp - 2 * c0 + cm) / h ** 2,
            "h": float(h)}


@dataclass
class SliceResult:
    """A 1-D slice ``θ + s·u`` (``u`` a unit vector): ``offsets`` s, ``loss``,
    ``curvature`` (``uᵀH u``), ``lanczos`` (``λ_max`` of ``H``, NaN when not asked),
    ``hutch`` (Hutchinson ``tr(H^p)^{1/p}``, NaN when not asked), ``hutch_se`` (the
    standard error propagated through the root)."""

    offsets: np.ndarray
    loss: np.ndarray
    curvature: np.ndarray
    lanczos: np.ndarray
    hutch: np.ndarray
    hutch_se: np.ndarray


def slice_along(
    f: LossOfTheta,
    theta: Tensor,
    direction: Tensor,
    offsets: Sequence[float],
    *,
    lanczos: bool = True,
    hutchinson_samples: int = 0,
    hutchinson_power: int = 1,
    tol: float = 1e-3,
    seed: int = 0,
) -> SliceResult:
    r"""Loss and curvature on the line ``θ + s·u``, ``u = direction/‖direction‖``.

    At each offset: the loss, the directional curvature ``uᵀHu``, and optionally the
    sharpness ``λ_max(H)`` by :func:`instab_lib.curvature.lanczos` (relative residual
    ``tol``; warm-started from the previous offset's eigenvector) and Hutchinson's
    ``tr(H^p)^{1/p}`` (``p = hutchinson_power``, ``hutchinson_samples`` Rademacher
    probes, the same probes at every offset). ``tr(H^p)^{1/p}`` is ``≥ λ_max`` for even
    ``p`` and tends to it as ``p`` grows (REFERENCE §10). The solvers' start and probes are
    seeded with ``seed`` shifted by the seed offset (:func:`instab_lib.experiments.seeding.shifted`).
    """
    from .. import curvature

    u = unit(direction)
    offs = np.asarray(offsets, dtype=float)
    n = len(offs)
    loss, curv = np.empty(n), np.empty(n)
    lam, hut, hse = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    v0 = None
    for i, s in enumerate(offs):
        op = PointHessian(f, theta + float(s) * u)
        loss[i] = op.loss
        curv[i] = float(u @ op.matvec(u))
        if lanczos:
            r = curvature.lanczos(op, 1, which="LA", tol=tol, seed=shifted(int(seed)), v0=v0)
            lam[i] = float(r.eigenvalues[0])
            v0 = r.eigenvectors[:, 0]
        if hutchinson_samples:
            est, se = curvature.hutchinson_trace(op, hutchinson_samples, seed=shifted(int(seed)), power=hutchinson_power)
            p = hutchinson_power
            if est > 0:
                hut[i] = est ** (1 / p)
                hse[i] = se * est ** (1 / p - 1) / p  # delta method
    return SliceResult(offs, loss, curv, lam, hut, hse)


def run_loss(run_or_config: Any) -> LossOfTheta:
    """``θ ↦ L(θ)`` (:func:`network_loss`) for a run (or its :class:`TrainConfig`): its
    model architecture, loss and training data (loaded as :func:`instab_lib.experiments.train.train`
    loads them; all ``n_train`` images, not ``hessian_n``), on the CPU in the default
    dtype, so snapshots ``run.snapshot(t)["theta"]`` can be evaluated, sliced and
    differentiated."""
    from .loop import init_run

    cfg = getattr(run_or_config, "config", run_or_config)
    run, _ = init_run(cfg.replace(device="cpu", dtype="float32"))
    return network_loss(run.model, run.loss_fn, *run.train)
