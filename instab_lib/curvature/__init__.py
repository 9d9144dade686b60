"""Curvature of an empirical risk: Hessian-vector products and eigen-solvers.

Everything here is matrix-free: the Hessian

.. math::  H = \\nabla^2_\\theta L(\\theta),\\qquad
           L(\\theta) = \\sum_c w_c\\,\\ell\\big(f_\\theta(X_c), y_c\\big)

(``ℓ`` = ``loss_fn``; ``w_c = n_c/N`` where ``ℓ`` is a mean over the ``n_c`` samples of chunk
``c``, ``N = Σ n_c``, and ``w_c = 1`` where it is a sum: ``L`` is ``ℓ`` on all the data at once)
is only touched through products ``v ↦ H v``. Flat vectors have shape ``(dim,)``
with ``dim`` the number of trainable scalars, blocks of vectors ``(dim, k)``.

Contents (one module per part; every name is re-exported here)
--------------------------------------------------------------
* ``operators`` — :class:`LinearOperator`, the one base of every operator: ``dim``,
  ``dtype``, ``device``, ``n_matvec`` and one override, ``_matmat(V)`` for a block ``V``
  of shape ``(dim, k)``; ``matvec``, ``@``, ``A + B``, ``A - B``, ``c * A``, ``A @ B``,
  ``.T``, ``to_dense()`` and ``to_scipy()`` (for peers such as ``scipy.sparse.linalg.eigsh``)
  are derived. :class:`SumOperator`, :class:`ScaledOperator`, :class:`ProductOperator`,
  :class:`DiagonalOperator` (the compositions), :class:`MatrixOperator` (a dense matrix),
  :func:`as_operator` (any object with ``dim``/``dtype``/``device``/``matvec`` as an
  operator); :func:`flatten`, :func:`unflatten_like` (parameter lists ↔ flat vectors),
  :func:`dense_hessian` (ground truth for small models, ``torch.func.hessian``).
  :class:`~instab_lib.landscape.PointHessian` and
  :class:`~instab_lib.adaptive.PreconditionedOperator` are operators of the same base.
* ``hessian`` — :class:`HessianOperator`: ``H v`` by double-backward (graph built once
  and reused) or forward-over-reverse (``torch.func``), ``H V`` for a block ``V`` in
  one pass where asked (``batched=True``); any ``nn.Module`` or functional model, mean- or
  sum-reduced losses, BatchNorm in eval or train mode (``bn_mode``), Dropout off.
* ``data`` — the data contract: :class:`~.data.BatchSource` (pairs, sequences of batches,
  streamed DataLoaders checked for determinism, ``batch_fn`` for dict or nested batches,
  batches moved to the parameters' device and dtype), :func:`default_batch_fn`.
* ``loss`` — :func:`weighted_loss`, the one weighted ``functional_call`` loss every product,
  gradient and dense Hessian is built from; the model's modes (``ModelMode``) and the loss's
  reduction (measured or read from ``loss_fn.reduction``).
* ``mlp`` — the closed-form R-operator of MLPs that are exactly ``nn.Sequential`` with
  cross-entropy (``HessianOperator(method="mlp")``, chosen by ``"auto"`` only where it provably
  applies): all columns of a block in one pass of folded matrix products.
* ``results`` — :class:`EigResult`, :func:`fix_signs`, :func:`relative_residual` and the solvers'
  shared helpers.
* ``krylov`` — :func:`lanczos`: thick-restart (block) Lanczos with full
  re-orthogonalisation, stopping on the *explicit* residual ``‖H x − θ x‖₂ ≤ tol · max|θ|``;
  :func:`extreme_eigenpairs`: both ends of the spectrum from one Krylov space.
* ``subspace`` — :func:`lobpcg` (block, soft locking) and :func:`power_iteration`
  (the classical sharpness estimate, residual stop).
* ``tracking`` — :class:`EigTracker`: warm-started tracking across steps.
* ``stochastic`` — :func:`hutchinson_trace`, :func:`slq_density`, :func:`density_on_grid`:
  stochastic trace and spectral-density estimates.

Residuals are exact, not estimated: the solvers keep ``W = H V`` next to the
basis ``V``, so for a Ritz vector ``x = V y`` the product ``H x = W y`` is known
without another Hessian-vector product.
"""

from __future__ import annotations

from .data import default_batch_fn
from .hessian import HessianOperator
from .krylov import DEFAULT_TOL, MIN_EXTRA_BASIS, extreme_eigenpairs, lanczos
from .loss import weighted_loss
from .operators import (
    DiagonalOperator,
    LinearOperator,
    MatrixOperator,
    ProductOperator,
    ScaledOperator,
    SumOperator,
    as_operator,
    dense_hessian,
    flatten,
    unflatten_like,
)
from .results import EigResult, UnattainableToleranceWarning, fix_signs, relative_residual
from .stochastic import density_on_grid, hutchinson_trace, slq_density
from .subspace import lobpcg, power_iteration
from .tracking import EigTracker

__all__ = [
    "flatten",
    "unflatten_like",
    "LinearOperator",
    "SumOperator",
    "ScaledOperator",
    "ProductOperator",
    "DiagonalOperator",
    "as_operator",
    "HessianOperator",
    "weighted_loss",
    "default_batch_fn",
    "MatrixOperator",
    "dense_hessian",
    "EigResult",
    "UnattainableToleranceWarning",
    "lanczos",
    "DEFAULT_TOL",
    "lobpcg",
    "extreme_eigenpairs",
    "EigTracker",
    "power_iteration",
    "hutchinson_trace",
    "slq_density",
    "density_on_grid",
    "fix_signs",
    "relative_residual",
]
