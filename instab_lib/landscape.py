r"""The loss landscape around a training run: slices, directional derivatives, N_eff, episodes.

Used by the mechanism pages on Fashion-MNIST (``phases_of_training``,
``eigenvector_rotation``, ``instability_slices``, ``progressive_flattening``,
``curvature_moments``, ``spectral_density``, ``effective_parameters``).

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
* :func:`directional_curvature` — ``dᵀ∇²f(θ)d`` for a unit ``d``.
* :func:`directional_derivatives` — ``D^k f(θ)[d,…,d]`` for k = 1…4: k ≤ 2 exact,
  k = 3, 4 by central finite differences of Hessian-vector products (the
  companion's reading of B's *higher-order curvature moments*, REFERENCE §10).
* :func:`slice_along` — loss, directional curvature, Lanczos ``λ_max`` and
  Hutchinson estimates on ``θ + s·d`` for a grid of offsets ``s`` (A Fig 3, B Fig 2).
* :func:`n_eff` and :func:`n_eff_from_slq` — MacKay's effective number of
  parameters ``N_eff(α) = Σ_i λ_i/(λ_i + α)`` (SANE, arXiv:2305.18490).
* :func:`unstable_mask`, :func:`find_episodes` — the edge-of-stability episodes of a
  run's table: maximal runs of evaluated epochs with ``η_t·S_t ≥ 2``;
  :func:`find_spikes` — the loss spikes (the separate instabilities within them).
* :func:`resolved_spikes` — the loss spikes of at least some length that resolve;
  :func:`run_loss` — ``θ ↦ L(θ)`` on a run's own model, loss and training data.

The shared fMNIST runs the mechanism pages read are defined once in
:mod:`instab_lib.experiments`; the per-run measurements in :mod:`instab_lib.mechanism`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .curvature.operators import LinearOperator

__all__ = [
    "network_loss", "PointHessian", "directional_curvature", "directional_derivatives",
    "SliceResult", "slice_along", "n_eff", "n_eff_from_slq", "Episode", "unstable_mask",
    "find_episodes", "find_spikes", "resolved_spikes", "run_loss", "round_sig", "unit",
]

LossOfTheta = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------- basics
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


def directional_curvature(f: LossOfTheta, theta: Tensor, d: Tensor) -> float:
    """``dᵀ ∇²f(θ) d`` for the unit vector ``d/‖d‖`` (the curvature of the 1-D slice)."""
    u = unit(d)
    return float(u @ _hvp(f, theta, u))


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


# --------------------------------------------------------------------------- slices
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

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"s": self.offsets, "loss": self.loss, "curvature": self.curvature,
                             "lanczos": self.lanczos, "hutch": self.hutch, "hutch_se": self.hutch_se})


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
    ``p`` and tends to it as ``p`` grows (REFERENCE §10).
    """
    from . import curvature

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
            r = curvature.lanczos(op, 1, which="LA", tol=tol, seed=seed, v0=v0)
            lam[i] = float(r.eigenvalues[0])
            v0 = r.eigenvectors[:, 0]
        if hutchinson_samples:
            est, se = curvature.hutchinson_trace(op, hutchinson_samples, seed=seed, power=hutchinson_power)
            p = hutchinson_power
            if est > 0:
                hut[i] = est ** (1 / p)
                hse[i] = se * est ** (1 / p - 1) / p  # delta method
    return SliceResult(offs, loss, curv, lam, hut, hse)


# --------------------------------------------------------------------------- N_eff
def n_eff(eigenvalues: Sequence[float] | np.ndarray | Tensor, alpha: float, absolute: bool = False) -> float:
    r"""MacKay's effective number of parameters ``N_eff(α) = Σ_i λ_i / (λ_i + α)``.

    Each term lies in [0, 1) for ``λ_i ≥ 0``: well-determined directions (``λ ≫ α``)
    count 1, flat ones 0. Negative eigenvalues are dropped (``absolute=False``, the
    formula is only meaningful for ``λ ≥ 0``) or replaced by ``|λ_i|``
    (``absolute=True``, the author's ``compute_neff``). ``α > 0`` is required.
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    lam = np.asarray(eigenvalues.detach().cpu() if isinstance(eigenvalues, Tensor) else eigenvalues, dtype=float)
    lam = np.abs(lam) if absolute else np.clip(lam, 0.0, None)
    return float(np.sum(lam / (lam + alpha)))


def n_eff_from_slq(nodes: Tensor | np.ndarray, weights: Tensor | np.ndarray, dim: int, alpha: float,
                   absolute: bool = False) -> tuple[float, float]:
    r"""``N_eff(α)`` of a ``dim``-parameter Hessian from stochastic Lanczos quadrature
    (:func:`instab_lib.curvature.slq_density`): ``dim · mean_p Σ_j w_pj g(θ_pj)`` with
    ``g(λ) = λ/(λ+α)`` on ``λ ≥ 0`` (0 below, or ``|λ|`` with ``absolute``).

    Returns ``(estimate, standard error over probes)``. Exact for any Hessian with at
    most ``order`` distinct eigenvalues (Gauss quadrature is exact there); otherwise an
    unbiased-in-expectation quadrature estimate of ``tr g(H)``.
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    nd = np.asarray(nodes, dtype=float)
    w = np.asarray(weights, dtype=float)
    if nd.shape != w.shape or nd.ndim != 2:
        raise ValueError("nodes and weights must both have shape (n_probes, order)")
    lam = np.abs(nd) if absolute else np.clip(nd, 0.0, None)
    per = dim * np.sum(w * lam / (lam + alpha), axis=1)
    se = float(per.std(ddof=1) / math.sqrt(len(per))) if len(per) > 1 else float("nan")
    return float(per.mean()), se


# --------------------------------------------------------------------------- episodes
@dataclass(frozen=True)
class Episode:
    """An instability episode: evaluated epochs ``start … end`` (inclusive) with
    ``η_t S_t ≥ threshold``; ``peak`` is the epoch of the largest ``S`` within it,
    ``peak_value`` that ``S`` (for :func:`find_spikes`: the largest loss), ``last_stable`` the last evaluated epoch before
    ``start`` (None at the start of the run), ``resolved`` the first evaluated epoch
    after ``end`` (None when the run ends unstable)."""

    start: int
    end: int
    peak: int
    peak_value: float
    last_stable: int | None
    resolved: int | None

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def unstable_mask(table: pd.DataFrame, threshold: float = 2.0) -> pd.Series:
    """Per evaluated row of a run table (rows with a finite ``sharpness``): True where
    ``lr · sharpness ≥ threshold`` (the learning rate of the step leaving that point)."""
    sp = table[table["sharpness"].notna()]
    return pd.Series((sp["lr"].to_numpy() * sp["sharpness"].to_numpy()) >= threshold, index=sp["epoch"].to_numpy())


def find_spikes(table: pd.DataFrame, column: str = "train_loss", rel: float = 0.02, window: int = 10,
                min_length: int = 1) -> list[Episode]:
    """Loss-spike episodes (B Fig 1's "valley jumping"): maximal runs of epochs where
    ``table[column]`` exceeds ``(1 + rel)`` × its minimum over the previous ``window``
    epochs (the spike's own epochs excluded from that minimum once it has started).

    ``peak`` is the epoch of the largest value inside the episode and ``peak_value`` that
    value; ``last_stable``/``resolved`` the epochs just before/after it. At the edge of
    stability a network's sharpness stays near 2/η for long stretches (one long
    :func:`find_episodes` episode); the spikes are the separate instabilities within it.
    """
    if not rel > 0 or window < 1 or min_length < 1:
        raise ValueError("rel must be > 0, window ≥ 1 and min_length ≥ 1")
    ep = table["epoch"].to_numpy().astype(int)
    v = table[column].to_numpy(dtype=float)
    out, i, n = [], 1, len(v)
    while i < n:
        ref = np.nanmin(v[max(0, i - window):i])
        if v[i] > (1 + rel) * ref:
            j = i
            while j + 1 < n and v[j + 1] > (1 + rel) * ref:
                j += 1
            if j - i + 1 >= min_length:
                k = i + int(np.nanargmax(v[i:j + 1]))
                out.append(Episode(start=int(ep[i]), end=int(ep[j]), peak=int(ep[k]), peak_value=float(v[k]),
                                   last_stable=int(ep[i - 1]), resolved=int(ep[j + 1]) if j + 1 < n else None))
            i = j + 1
        else:
            i += 1
    return out


def resolved_spikes(table: pd.DataFrame, column: str = "train_loss", rel: float = 0.02, window: int = 10,
                    min_length: int = 1) -> list[Episode]:
    """The :func:`find_spikes` episodes of at least ``min_length`` epochs that resolve
    before the run ends (``resolved`` not None): the instabilities a page can follow
    from the epoch before to the epoch after."""
    return [s for s in find_spikes(table, column, rel=rel, window=window, min_length=min_length)
            if s.resolved is not None]


def find_episodes(table: pd.DataFrame, threshold: float = 2.0, merge_gap: int = 0,
                  min_length: int = 1) -> list[Episode]:
    """Instability episodes of a run table (see :class:`Episode`).

    Episodes separated by at most ``merge_gap`` stable evaluations are merged (a
    single stable epoch inside an oscillating phase does not end it); episodes with
    fewer than ``min_length`` evaluated epochs are dropped.
    """
    if merge_gap < 0 or min_length < 1:
        raise ValueError("merge_gap must be ≥ 0 and min_length ≥ 1")
    mask = unstable_mask(table, threshold)
    sp = table[table["sharpness"].notna()]
    epochs = sp["epoch"].to_numpy().astype(int)
    S = sp["sharpness"].to_numpy(dtype=float)
    flags = mask.to_numpy()
    runs: list[list[int]] = []  # [i_start, i_end] in evaluation index
    for i, u in enumerate(flags):
        if not u:
            continue
        if runs and i - runs[-1][1] - 1 <= merge_gap:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    out = []
    for i0, i1 in runs:
        if i1 - i0 + 1 < min_length:
            continue
        j = i0 + int(np.argmax(S[i0:i1 + 1]))
        out.append(Episode(start=int(epochs[i0]), end=int(epochs[i1]), peak=int(epochs[j]),
                           peak_value=float(S[j]),
                           last_stable=int(epochs[i0 - 1]) if i0 > 0 else None,
                           resolved=int(epochs[i1 + 1]) if i1 + 1 < len(epochs) else None))
    return out


def run_loss(run_or_config: Any) -> LossOfTheta:
    """``θ ↦ L(θ)`` (:func:`network_loss`) for a run (or its :class:`TrainConfig`): its
    model architecture, loss and training data (loaded as :func:`instab_lib.train.train`
    loads them; all ``n_train`` images, not ``hessian_n``), on the CPU in the default
    dtype, so snapshots ``run.snapshot(t)["theta"]`` can be evaluated, sliced and
    differentiated."""
    from .loop import init_run

    cfg = getattr(run_or_config, "config", run_or_config)
    run, _ = init_run(cfg.replace(device="cpu", dtype="float32"))
    return network_loss(run.model, run.loss_fn, *run.train)


def round_sig(x: float, digits: int = 2) -> float:
    """``x`` rounded to ``digits`` significant digits (learning rates chosen relative to a
    measured limit stay readable)."""
    if not (x > 0 and math.isfinite(x)):
        raise ValueError(f"need a positive finite number, got {x!r}")
    return float(f"{x:.{digits}g}")
