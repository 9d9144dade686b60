r"""Adaptive optimisers at the edge of stability, loss spikes and small run summaries.

Adam, RMSProp and Clipped-Ada (:mod:`instab_lib.optim`) take the step
:math:`\theta_t = \theta_{t-1} - \eta\,\hat m_t / D_t` with the element-wise denominator
:math:`D_t = \mathrm{clip}(\sqrt{\hat v_t + \varepsilon_\mathrm{root}}) + \varepsilon`
(no clip for Adam/RMSProp; :math:`\min(\cdot, c)` for Clipped-Ada "UB",
:math:`\max(\cdot, c)` for "LB"). Near a minimum this is GD with momentum on the
preconditioned problem, so stability is decided by the **preconditioned sharpness**
:math:`\lambda_{\max}(P^{-1}H)`, :math:`P = \mathrm{diag}(D_t)` (Cohen et al. 2022,
"Adaptive gradient methods at the edge of stability"). :math:`P^{-1}H` is not symmetric,
but it is similar to :math:`P^{-1/2} H P^{-1/2}` (same eigenvalues), which is; that is the
operator :class:`PreconditionedOperator` hands to the Lanczos solver.

The threshold depends on the momentum :math:`\beta_1`: on a quadratic with curvature
:math:`a` along an eigenvector of :math:`P^{-1}H`, the EMA-momentum update
:math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) a x_{t-1}`, :math:`x_t = x_{t-1} - \eta m_t`
is the recursion :math:`x_{t+1} = (1 + \beta_1 - \eta(1-\beta_1)a)\,x_t - \beta_1 x_{t-1}`,
stable iff :math:`a < (2 + 2\beta_1)/((1-\beta_1)\eta)` (:func:`stability_threshold`):
:math:`2/\eta` for RMSProp and GD (:math:`\beta_1 = 0`), :math:`38/\eta` for Adam with
:math:`\beta_1 = 0.9`. (Bias correction only rescales the first steps.)

Contents
--------
* :func:`stability_threshold` — the threshold above.
* :func:`denominator` — the flat vector :math:`D_t` from an optimiser and its state.
* :class:`PreconditionedOperator` — :math:`v \mapsto D^{-1/2} H D^{-1/2} v` around any
  symmetric operator (e.g. :class:`instab_lib.curvature.HessianOperator`).
* :func:`preconditioned_sharpness` — its top eigenvalue by Lanczos.
* :func:`preconditioned_summary` — the preconditioned sharpness, clip fraction and largest
  root a run recorded during training (:class:`instab_lib.hooks.Preconditioned`, with
  ``TrainConfig(precond_every=m)``; the optimiser's state is read where it lives, at each
  step, so minibatch runs are measured as well as full-batch ones).
* :func:`loss_spikes` — episodes where the loss rises above a multiple of its running
  minimum (instabilities seen in the loss).
* :func:`mean_spread`, :func:`compare_means`, :func:`best_below_above` — small summaries
  over seeds and learning-rate grids.
* :class:`TrainModeView`, :func:`snapshot_sharpness` — the sharpness of a BatchNorm
  network in *train* mode (batch statistics: the function (S)GD steps on) at a run's
  snapshots; ``train``'s own spectra use eval mode (running statistics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .curvature.operators import DiagonalOperator, ProductOperator, as_operator

__all__ = [
    "stability_threshold",
    "denominator",
    "clip_fraction",
    "PreconditionedOperator",
    "preconditioned_sharpness",
    "preconditioned_summary",
    "Spike",
    "loss_spikes",
    "mean_spread",
    "compare_means",
    "best_below_above",
    "TrainModeView",
    "snapshot_sharpness",
]


# --------------------------------------------------------------------------- threshold
def stability_threshold(lr: float, beta1: float = 0.0) -> float:
    r"""Largest stable preconditioned curvature :math:`(2 + 2\beta_1)/((1-\beta_1)\eta)`.

    ``beta1 = 0`` (GD, RMSProp, RMS-UB): :math:`2/\eta`; ``beta1 = 0.9`` (Adam, Adam-UB):
    :math:`38/\eta`. Raises ``ValueError`` for ``lr ≤ 0`` or ``beta1`` outside [0, 1).
    """
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"learning rate must be positive and finite, got {lr!r}")
    if not (0 <= beta1 < 1):
        raise ValueError(f"beta1 must lie in [0, 1), got {beta1!r}")
    return (2 + 2 * beta1) / ((1 - beta1) * lr)


# --------------------------------------------------------------------------- preconditioner
def denominator(opt: Any, state: Any) -> Tensor:
    r"""The flat vector :math:`D_t = \mathrm{clip}(\sqrt{\hat v_t + \varepsilon_\mathrm{root}}) + \varepsilon`
    of an Adam / RMSProp / Clipped-Ada optimiser (:mod:`instab_lib.optim`) after ``t ≥ 1``
    updates, i.e. the denominator of the step that produced the current parameters
    (:meth:`instab_lib.optim.Optimizer.preconditioner`, read from the typed state).

    GD has no denominator (``ValueError``: use the plain Hessian for GD), nor has an
    adaptive optimiser before its first update.
    """
    d = opt.preconditioner(state)
    if d is None:
        if "beta2" not in dict(getattr(opt, "hyper", {})):
            raise ValueError(f"optimizer {getattr(opt, 'name', opt)!r} keeps no second moment (GD?)")
        raise ValueError("the denominator is defined after the first update (count ≥ 1)")
    return d


def clip_fraction(opt: Any, state: Any) -> float:
    r"""Fraction of coordinates where a Clipped-Ada clip binds (UB: :math:`\sqrt{\hat v} > c`;
    LB: :math:`\sqrt{\hat v} < c`); 0 for Adam/RMSProp (no clip). Where it is 0 the step is
    exactly Adam's. (:meth:`instab_lib.optim.Optimizer.clip_fraction`.)"""
    return opt.clip_fraction(state)


class PreconditionedOperator(ProductOperator):
    r"""The symmetric operator :math:`D^{-1/2} H D^{-1/2}`: a product of
    :class:`~instab_lib.curvature.LinearOperator` s, ``diag(D^{-1/2}) @ H @ diag(D^{-1/2})``.

    Its eigenvalues are those of :math:`P^{-1} H` with :math:`P = \mathrm{diag}(D)`;
    an eigenvector :math:`u` of it gives the eigenvector :math:`P^{-1/2}u` of
    :math:`P^{-1}H` (:meth:`to_original`). ``n_matvec`` is that of ``H`` (the diagonal
    scalings are not counted).

    Args:
        op: a symmetric operator ``H`` (a :class:`~instab_lib.curvature.HessianOperator`, a
            :class:`~instab_lib.curvature.MatrixOperator`, any
            :class:`~instab_lib.curvature.LinearOperator`, or an object with ``matvec``
            (and optionally ``matmat``), ``dim``, ``dtype``, ``device``).
        d: the positive diagonal ``D``, shape ``(dim,)``.

    Attributes: ``op`` (``H`` as given), ``scale`` (:math:`D^{-1/2}`, shape ``(dim,)``).
    """

    def __init__(self, op: Any, d: Tensor) -> None:
        d = torch.as_tensor(d)
        if d.dim() != 1 or d.shape[0] != op.dim:
            raise ValueError(f"diagonal must have shape ({op.dim},), got {tuple(d.shape)}")
        if not bool(torch.isfinite(d).all()) or not bool((d > 0).all()):
            raise ValueError("the preconditioner's diagonal must be positive and finite")
        self.op = op
        self.scale = d.to(dtype=op.dtype, device=op.device).rsqrt()  # D^{-1/2}
        S = DiagonalOperator(self.scale)
        super().__init__(S, as_operator(op), S)

    def to_original(self, u: Tensor) -> Tensor:
        r"""Eigenvector(s) of :math:`P^{-1}H` from those of the symmetric form: :math:`D^{-1/2}u`,
        normalised (``u`` of shape ``(dim,)`` or ``(dim, k)``)."""
        w = (self.scale[:, None] * u) if u.dim() == 2 else self.scale * u
        return w / torch.linalg.vector_norm(w, dim=0)


def preconditioned_sharpness(op: Any, d: Tensor, *, tol: float = 1e-3, seed: int = 0,
                             v0: Tensor | None = None, max_iter: int | None = None) -> Any:
    r""":math:`\lambda_{\max}(P^{-1}H)` by Lanczos on :class:`PreconditionedOperator`.

    Returns the :class:`~instab_lib.curvature.EigResult` (``eigenvalues[0]`` is the
    preconditioned sharpness; ``eigenvectors`` are those of the *symmetric* form, usable
    as the next warm start ``v0``).
    """
    from . import curvature

    pop = PreconditionedOperator(op, d)
    return curvature.lanczos(pop, 1, "LA", tol=tol, seed=seed, v0=v0, max_iter=max_iter)


# --------------------------------------------------------------------------- summaries of a run
def preconditioned_summary(table: Any) -> dict[str, float]:
    r"""What a run's :class:`instab_lib.hooks.Preconditioned` columns say: ``max_ratio`` =
    max over evaluations of ``p_sharpness / p_threshold`` (≥ 1: at the adaptive edge of
    stability), ``max_clip_fraction`` (0: the clip never bound at an evaluation), ``max_root``
    = the largest unclipped :math:`\sqrt{\hat v + \varepsilon_\mathrm{root}}` over every step
    (a Clipped-Ada "UB" run with any ``c`` ≥ that of the Adam run takes exactly Adam's steps),
    and ``n_evals``. NaN (0 evaluations) for a run without those columns."""
    nan = float("nan")
    if "p_sharpness" not in table:
        return {"max_ratio": nan, "max_clip_fraction": nan, "max_root": nan, "n_evals": 0}
    ev = table[table["p_sharpness"].notna()]
    ratio = (ev["p_sharpness"] / ev["p_threshold"]).to_numpy(dtype=float)
    roots = table["root_max"].to_numpy(dtype=float) if "root_max" in table else np.array([])
    roots = roots[np.isfinite(roots)]
    return {"max_ratio": float(ratio.max()) if ratio.size else nan,
            "max_clip_fraction": float(ev["clip_fraction"].max()) if len(ev) else nan,
            "max_root": float(roots.max()) if roots.size else nan, "n_evals": int(len(ev))}


# --------------------------------------------------------------------------- spikes
@dataclass(frozen=True)
class Spike:
    """One loss spike: indices ``start`` (first point above the line), ``peak``, ``end``
    (first point back below it, or ``None`` if the series ends first), the running
    minimum ``base`` before it and ``height = loss[peak] / base`` (inf for a non-finite peak)."""

    start: int
    peak: int
    end: int | None
    base: float
    height: float


def loss_spikes(loss: Sequence[float], factor: float = 2.0, min_rise: float = 0.0) -> list[Spike]:
    r"""Episodes where the loss exceeds ``factor`` × its running minimum (and the running
    minimum by more than ``min_rise`` in absolute terms).

    The running minimum at index ``t`` is :math:`\min_{s<t} L_s`; a spike starts at the
    first ``t`` with :math:`L_t > \max(\mathrm{factor}\cdot m_t, m_t + \mathrm{min\_rise})`
    and ends at the first later index back at or below that line (the line of the start,
    so one episode is not split by its own peak). Non-finite values count as above the
    line. A monotonically decreasing loss has no spike.
    """
    if not factor > 1:
        raise ValueError(f"factor must be > 1, got {factor!r}")
    if min_rise < 0:
        raise ValueError(f"min_rise must be ≥ 0, got {min_rise!r}")
    L = np.asarray(loss, dtype=float)
    spikes: list[Spike] = []
    run_min = math.inf
    t = 0
    while t < len(L):
        v = L[t]
        if math.isfinite(run_min):
            line = max(factor * run_min, run_min + min_rise)
            if not math.isfinite(v) or v > line:
                start, peak, peak_v = t, t, v
                t += 1
                while t < len(L) and (not math.isfinite(L[t]) or L[t] > line):
                    if not math.isfinite(L[t]) or (math.isfinite(peak_v) and L[t] > peak_v):
                        if math.isfinite(peak_v):
                            peak, peak_v = t, L[t]
                    t += 1
                end = t if t < len(L) else None
                height = peak_v / run_min if math.isfinite(peak_v) and run_min > 0 else math.inf
                spikes.append(Spike(start, peak, end, float(run_min), float(height)))
                continue
        if math.isfinite(v):
            run_min = min(run_min, v)
        t += 1
    return spikes


# --------------------------------------------------------------------------- summaries
def mean_spread(values: Iterable[float]) -> dict[str, float]:
    """``{"mean", "std" (ddof=1; 0 for one value), "min", "max", "n"}`` of the finite values
    (NaN entries and an empty input give NaN statistics and ``n`` = count of finite ones)."""
    v = np.asarray([float(x) for x in values], dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        nan = float("nan")
        return {"mean": nan, "std": nan, "min": nan, "max": nan, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def compare_means(a: Iterable[float], b: Iterable[float]) -> dict[str, float]:
    r"""Difference of means ``mean(a) − mean(b)`` with its standard error
    :math:`\sqrt{s_a^2/n_a + s_b^2/n_b}` (sample standard deviations; 0 with one value each),
    and ``z`` = difference / standard error (inf/NaN when the error is 0)."""
    sa, sb = mean_spread(a), mean_spread(b)
    diff = sa["mean"] - sb["mean"]
    se = math.sqrt((sa["std"] ** 2 / sa["n"] if sa["n"] else math.nan)
                   + (sb["std"] ** 2 / sb["n"] if sb["n"] else math.nan))
    if se > 0:
        z = diff / se
    else:
        z = math.copysign(math.inf, diff) if diff != 0 else float("nan")
    return {"diff": float(diff), "se": float(se), "z": float(z), "mean_a": sa["mean"], "mean_b": sb["mean"],
            "std_a": sa["std"], "std_b": sb["std"], "n_a": sa["n"], "n_b": sb["n"]}


def best_below_above(etas: Sequence[float], scores: Sequence[float], limit: float) -> dict[str, float]:
    """Best mean score among learning rates below ``limit`` and among those at or above it.

    ``etas``/``scores``: one entry per run (repeated η over seeds are averaged first;
    NaN scores, e.g. diverged runs, are skipped in the mean, and an η whose runs are all
    NaN is left out). Returns ``{"best_below", "eta_below", "best_above", "eta_above",
    "margin" = best_above − best_below}`` (NaN where one side has no η)."""
    if len(etas) != len(scores):
        raise ValueError("need one score per learning rate")
    by: dict[float, list[float]] = {}
    for e, s in zip(etas, scores):
        by.setdefault(float(e), []).append(float(s))
    means = {e: mean_spread(v)["mean"] for e, v in by.items()}
    means = {e: m for e, m in means.items() if math.isfinite(m)}
    below = {e: m for e, m in means.items() if e < limit}
    above = {e: m for e, m in means.items() if e >= limit}
    nan = float("nan")
    eb = max(below, key=below.__getitem__) if below else None
    ea = max(above, key=above.__getitem__) if above else None
    bb = below[eb] if eb is not None else nan
    ba = above[ea] if ea is not None else nan
    return {"best_below": bb, "eta_below": eb if eb is not None else nan,
            "best_above": ba, "eta_above": ea if ea is not None else nan, "margin": ba - bb}


# --------------------------------------------------------------------------- BatchNorm, train mode
class TrainModeView(torch.nn.Module):
    """A view of ``model`` that stays in training mode when asked to switch to eval mode.

    :class:`~instab_lib.curvature.HessianOperator` puts a model in eval mode, where
    BatchNorm uses its running statistics. The function (mini)batch GD descends is the
    train-mode one (batch statistics), so its Hessian is the one that decides stability:
    wrap the model in this view to get it. With chunks of ``b`` images each chunk is
    normalised with its own statistics, i.e. the Hessian of the mean of per-chunk losses:
    the objective of minibatch SGD with batch size ``b`` (one fixed partition); use one
    chunk for full-batch GD. Forward passes in train mode update the running statistics
    of the wrapped model (momentum); use it on a copy that is not trained further.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.inner.train()

    def train(self, mode: bool = True) -> "TrainModeView":  # noqa: ARG002 - the point of the class
        self.training = True
        self.inner.train()
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner(*args, **kwargs)


def snapshot_sharpness(run: Any, epochs: Iterable[int], *, hessian_n: int | None = None,
                       chunk: int | None = None, train_mode: bool = True, tol: float = 1e-2) -> dict[int, float]:
    r"""Top Hessian eigenvalue at the saved snapshots (``config.snapshot_epochs``) of a run.

    ``train_mode=True``: BatchNorm with batch statistics (:class:`TrainModeView`), chunks
    of ``chunk`` images (default: the run's batch size, else all ``hessian_n``); the
    snapshot's trainable parameters are all that is needed. ``train_mode=False`` is
    the eval-mode Hessian, which for a BatchNorm network also needs the running
    statistics, which snapshots do not keep: it raises ``ValueError`` for such a model.
    Epochs without a snapshot (e.g. after an early stop) are skipped.
    """
    from . import curvature
    from .losses import LOSSES
    from .loop import init_run

    cfg = run.config
    built, _ = init_run(cfg)
    hn = hessian_n or cfg.hessian_n or len(built.train[1])
    X, y = built.train[0][:hn], built.train[1][:hn]
    model, device, dtype = built.model, X.device, X.dtype
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if not train_mode and has_bn:
        raise ValueError("snapshots keep no BatchNorm running statistics: the eval-mode Hessian needs them")
    params = [p for p in model.parameters() if p.requires_grad]
    net = TrainModeView(model) if train_mode else model
    size = chunk or cfg.batch_size or hn
    out: dict[int, float] = {}
    v0 = None
    for e in sorted(int(e) for e in epochs):
        try:
            snap = run.snapshot(e)
        except FileNotFoundError:
            continue
        with torch.no_grad():
            for p, q in zip(params, curvature.unflatten_like(snap["theta"].to(device, dtype), params)):
                p.copy_(q)
        op = curvature.HessianOperator(net, LOSSES[cfg.loss], (X, y), chunk_size=size)
        r = curvature.lanczos(op, 1, "LA", tol=tol, seed=cfg.seed, v0=v0)
        v0 = r.eigenvectors[:, 0]
        out[e] = float(r.eigenvalues[0])
        op.release()
    return out
