r"""The preconditioned Hessian of an adaptive optimiser and its top eigenvalue.

Adam, RMSProp and Clipped-Ada (:mod:`instab_lib.optim`) take the step
:math:`\theta_t = \theta_{t-1} - \eta\,\hat m_t / D_t` with the element-wise denominator
:math:`D_t = \mathrm{clip}(\sqrt{\hat v_t + \varepsilon_\mathrm{root}}) + \varepsilon`
(no clip for Adam/RMSProp; :math:`\min(\cdot, c)` for Clipped-Ada "UB",
:math:`\max(\cdot, c)` for "LB"). Near a minimum this is GD with momentum on the
preconditioned problem, so stability is decided by the **preconditioned sharpness**
:math:`\lambda_{\max}(P^{-1}H)`, :math:`P = \mathrm{diag}(D_t)` (Cohen et al. 2022,
"Adaptive gradient methods at the edge of stability"), compared with the threshold of
:mod:`instab_lib.thresholds`. :math:`P^{-1}H` is not symmetric, but it is similar to
:math:`P^{-1/2} H P^{-1/2}` (same eigenvalues), which is; that is the operator
:class:`PreconditionedOperator` hands to the Lanczos solver.

Contents
--------
* :func:`denominator` — the flat vector :math:`D_t` from an optimiser and its state.
* :func:`clip_fraction` — the fraction of coordinates where a Clipped-Ada clip binds.
* :class:`PreconditionedOperator` — :math:`v \mapsto D^{-1/2} H D^{-1/2} v` around any
  symmetric operator (e.g. :class:`instab_lib.curvature.HessianOperator`).
* :func:`preconditioned_sharpness` — its top eigenvalue by Lanczos.
* :func:`track_preconditioned_sharpness` — the same across training steps, each solve
  warm-started from the last one's eigenvector (typed state :class:`PreconditionedState`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from .curvature.operators import DiagonalOperator, ProductOperator, as_operator

__all__ = ["denominator", "clip_fraction", "PreconditionedOperator", "preconditioned_sharpness",
           "PreconditionedState", "track_preconditioned_sharpness"]


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


class PreconditionedState(NamedTuple):
    """The state of :func:`track_preconditioned_sharpness`: the last solve's top eigenvector of
    the symmetric form :math:`D^{-1/2} H D^{-1/2}` (shape ``(dim,)``; ``None`` before the first)."""

    v0: Tensor | None = None


def track_preconditioned_sharpness(state: PreconditionedState, op: Any, d: Tensor, *, tol: float = 1e-3,
                                   seed: int = 0) -> tuple[Any, PreconditionedState]:
    r""":func:`preconditioned_sharpness` of ``op`` with the diagonal ``d`` (shape ``(dim,)``),
    started from the previous solve's vector ``state.v0`` (a random start seeded by ``seed``
    for the first). Pure: returns the :class:`~instab_lib.curvature.EigResult` and the new state."""
    r = preconditioned_sharpness(op, d, tol=tol, seed=seed, v0=state.v0)
    return r, PreconditionedState(r.eigenvectors[:, 0])
