r"""Watch anyone's training for instabilities: :class:`Monitor`.

::

    from instab_lib import Monitor
    mon = Monitor(model, loss_fn, hessian_data, optimizer=opt, k=3, every=10)
    for step, (x, y) in enumerate(loader):
        opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
        mon.step()          # measures when due, returns the new row or None
    mon.history             # pandas DataFrame, one row per measurement
    mon.plot()              # sharpness against its threshold, rotation, loss

A measurement takes the Hessian :math:`H = \nabla^2_\theta L(\theta)` of the loss on the fixed
set ``hessian_data`` (:class:`~instab_lib.curvature.HessianOperator`: its data and mode
contract) and records

* the top-``k`` eigenvalues :math:`\lambda_1 \ge \dots \ge \lambda_k` by warm-started Lanczos
  (:class:`~instab_lib.curvature.EigTracker`: each measurement starts from the last ones'
  eigenvectors, so the wanted pairs converge in fewer restarts, and never stops on a Krylov
  basis smaller than a cold solve's, ``k + 10``, so an eigenvalue that rises from outside the
  last top-``k`` between two measurements is caught as a cold solve would catch it), each pair
  certified by its residual :math:`\|Hx - \lambda x\|_2 \le \text{tol}\cdot\max|\lambda|`;
* the optimiser's stability threshold (:mod:`instab_lib.adapters`, :mod:`instab_lib.thresholds`)
  and, for adaptive optimisers, the preconditioned sharpness
  :math:`\lambda_{\max}(P^{-1/2} H P^{-1/2})`, :math:`P = \mathrm{diag}(D)` read from the
  optimiser's state (:func:`~instab_lib.preconditioned.track_preconditioned_sharpness`);
* the rotation of the top-``k`` eigenspace since the latest measurement of the same step
  parity (:func:`~instab_lib.rotation.rotation_update`).

The book's training harness (``instab_lib.experiments.hooks``) measures through the same
functions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from .adapters import OptimizerReading, adapt
from .curvature import DEFAULT_TOL, DiagonalOperator, EigTracker, HessianOperator, relative_residual
from .preconditioned import PreconditionedState, track_preconditioned_sharpness
from .rotation import RotationState, rotation_update

__all__ = ["Monitor", "MonitorState", "COLUMNS"]

#: The columns of :attr:`Monitor.history`, in order, and what each holds.
COLUMNS: dict[str, str] = {
    "step": "optimiser steps taken when measured (calls of step())",
    "lr": "η of the last step, read from the optimiser (NaN without one)",
    "loss": "L(θ) on hessian_data, in the Hessian's mode (bn_mode; dropout off)",
    "grad_norm": "‖∇L(θ)‖₂ on hessian_data",
    "sharpness": "λ₁ of the loss Hessian on hessian_data",
    "eigenvalues": "the top k eigenvalues, descending (a tuple)",
    "threshold": "the optimiser's stability threshold: for SGD against sharpness, for adaptive "
                 "optimisers against preconditioned_sharpness (NaN without an optimiser)",
    "preconditioned_sharpness": "λ₁(P^{-1/2} H P^{-1/2}) of an adaptive optimiser (NaN for SGD and before "
                                "its first step)",
    "ratio": "the quantity compared with the threshold, divided by it (≥ 1: at or past the edge of stability)",
    "rotation": "subspace similarity of the top-k eigenspace to the latest earlier measurement an even "
                "number of steps back (1: unchanged, 0: orthogonal; NaN for the first)",
    "rotation_lag": "the steps between the two measurements compared by rotation",
    "residual": "the largest relative residual ‖Hx − λx‖/max|λ| of the returned pairs",
    "converged": "every pair met tol",
    "hvps": "Hessian-vector products spent by this measurement",
    "warm": "the top-k solve started from earlier eigenvectors",
    "seconds": "wall time of the measurement",
}


class MonitorState(NamedTuple):
    """What a :class:`Monitor` carries between measurements besides its tracker and rows."""

    step: int = 0  #: optimiser steps seen (calls of :meth:`Monitor.step`)
    rotation: RotationState = RotationState()
    preconditioned: PreconditionedState = PreconditionedState()


def _check_int(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer ≥ {least}, got {value!r}")
    return value


class Monitor:
    """Measures the sharpness, the stability threshold, the preconditioned sharpness and the
    eigenspace rotation of a model during anyone's training loop.

    Args:
        model: the ``nn.Module`` being trained (or a functional model ``model(params, inputs)``
            with ``params``, as :class:`~instab_lib.curvature.HessianOperator` accepts).
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, a mean or a sum over the samples.
        hessian_data: the fixed set on which the Hessian is taken: a pair ``(inputs, targets)``,
            a list of such batches (kept on the model's device), or a ``DataLoader`` (streamed:
            one pass per Hessian-vector product; it must give the same batches every pass,
            i.e. ``shuffle=False`` and no random augmentation). Batches are moved to the
            parameters' device and floating-point tensors to their dtype.
        optimizer: ``torch.optim.SGD``, ``Adam``, ``AdamW``, ``RMSprop``, an
            :mod:`instab_lib.optim` optimiser (pure: pass its state to :meth:`step`) or ``None``
            (no threshold). Read at every measurement (:mod:`instab_lib.adapters`): η, momentum,
            β's and :math:`P` for adaptive ones.
        k: eigenvalues measured (``1 ≤ k <`` number of parameters).
        every: measure at every ``every``-th call of :meth:`step` (after step ``every``,
            ``2·every``, …); :meth:`measure` measures now.
        tol: relative residual tolerance of every eigenpair (default 1e-3, which float32
            Hessians reach).
        seed: seed of the solvers' random starts.
        bn_mode: ``"eval"`` (BatchNorm with its running statistics; the model at test time) or
            ``"train"`` (BatchNorm with the statistics of each batch of ``hessian_data``: the
            function a training step sees; the model's running statistics and modes are left
            as they were). **Dropout is off in both**: the Hessian of the deterministic network.
        batch_fn: ``batch -> (inputs, targets, n)`` for batches that are not pairs (dicts,
            nested tuples); ``n`` counts the samples the loss averages over.
        loss_reduction: ``"mean"``, ``"sum"`` or ``None`` (found from ``loss_fn``).
        chunk_size: split every batch into pieces of at most this many samples (a BatchNorm
            model in ``"train"`` mode then normalises each piece with its own statistics).
        params: the parameters measured (default: the model's with ``requires_grad``); with a
            ``torch.optim`` optimiser each must be one it optimises.
        preconditioned: measure the preconditioned sharpness of adaptive optimisers.
        hessian_kwargs: further arguments of :class:`~instab_lib.curvature.HessianOperator`
            (``method``, ``materialize``, ``graph_budget_bytes``, ``batched``).

    The operator is built once (one pass over ``hessian_data``: sample counts, the loss's
    reduction, bad input refused with a one-line ``ValueError`` before any training step is
    measured); its cached gradient graphs are released after every measurement.

    Attributes:
        history: a ``pandas.DataFrame``, one row per measurement, columns :data:`COLUMNS`;
            ``history.attrs`` records ``bn_mode``, ``dropout`` ("off"), ``optimizer``, ``k``,
            ``tol``, ``every``, ``n_samples``, ``loss_reduction``, ``method``.
        rows: the same rows as dicts; op: the Hessian operator; tracker: the
            :class:`~instab_lib.curvature.EigTracker`; state: :class:`MonitorState`.
    """

    def __init__(
        self,
        model: nn.Module | Callable[..., Any],
        loss_fn: Callable[[Any, Any], Tensor],
        hessian_data: Any,
        optimizer: Any = None,
        *,
        k: int = 3,
        every: int = 10,
        tol: float = DEFAULT_TOL,
        seed: int = 0,
        bn_mode: str = "eval",
        batch_fn: Callable[[Any], tuple[Any, Any, int]] | None = None,
        loss_reduction: str | None = None,
        chunk_size: int | None = None,
        params: Sequence[Tensor] | dict[str, Tensor] | None = None,
        preconditioned: bool = True,
        hessian_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.k = _check_int("k", k, 1)
        self.every = _check_int("every", every, 1)
        self.seed = _check_int("seed", seed, 0)
        if not (isinstance(tol, (int, float)) and 0 < tol < 1):
            raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
        if not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable (outputs, targets) -> scalar, got {type(loss_fn).__name__}")
        self.tol = float(tol)
        self.adapter = adapt(optimizer) if optimizer is not None else None
        self.preconditioned = bool(preconditioned)
        self.op = HessianOperator(model, loss_fn, hessian_data, params=params, chunk_size=chunk_size,
                                  batch_fn=batch_fn, loss_reduction=loss_reduction, bn_mode=bn_mode,
                                  **(hessian_kwargs or {}))
        if self.k >= self.op.dim:
            raise ValueError(f"k={self.k} must be smaller than the number of parameters ({self.op.dim})")
        if self.adapter is not None:
            self.adapter.validate(self.op.params)
        self.tracker = EigTracker(self.k, "LA", tol=self.tol, seed=self.seed)
        self.state = MonitorState()
        self.rows: list[dict[str, Any]] = []
        self.attrs = {"bn_mode": bn_mode, "dropout": "off", "k": self.k, "tol": self.tol, "every": self.every,
                      "optimizer": self.adapter.name if self.adapter is not None else None,
                      "n_samples": self.op.n_samples, "loss_reduction": self.op.loss_reduction}

    # ------------------------------------------------------------------ the loop
    def step(self, state: Any = None) -> dict[str, Any] | None:
        """Count one optimiser step; measure if it is the ``every``-th. Call it right after
        ``opt.step()`` (and before a learning-rate scheduler's ``step()``, so that ``lr`` is the
        η of the step just taken). ``state``: the state of an :mod:`instab_lib.optim`
        optimiser (pure), ignored for ``torch.optim`` ones. Returns the new row or ``None``."""
        self.state = self.state._replace(step=self.state.step + 1)
        if self.state.step % self.every:
            return None
        return self.measure(state)

    def measure(self, state: Any = None) -> dict[str, Any]:
        """Measure now (e.g. before training: step 0) and return the new row (see :data:`COLUMNS`)."""
        t0 = time.perf_counter()
        op, start = self.op, self.op.n_matvec
        reading = self.adapter.read(op.params, state) if self.adapter is not None else None
        top = self.tracker.update(op)
        rot, rot_state = rotation_update(self.state.rotation, self.state.step, top)
        residual, converged = relative_residual(top), top.converged
        p_sharp, p_state = math.nan, self.state.preconditioned
        if reading is not None and reading.adaptive and reading.preconditioner is not None and self.preconditioned:
            pr, p_state = track_preconditioned_sharpness(p_state, self._objective(reading), reading.preconditioner,
                                                         tol=self.tol, seed=self.seed + 1)
            p_sharp = float(pr.eigenvalues[0])
            residual, converged = max(residual, relative_residual(pr)), converged and pr.converged
        loss, grad = op.loss_and_gradient()
        op.release()
        self.state = MonitorState(self.state.step, rot_state, p_state)
        row = self._row(reading, top, rot, p_sharp, loss, float(grad.double().norm()), residual, converged,
                        op.n_matvec - start, time.perf_counter() - t0)
        self.rows.append(row)
        return row

    def _objective(self, reading: OptimizerReading) -> Any:
        """``H``, or ``H + ℓI`` for an adaptive optimiser with coupled L2 weight decay ``ℓ``."""
        if not reading.l2:
            return self.op
        return self.op + DiagonalOperator(torch.full((self.op.dim,), reading.l2, dtype=self.op.dtype,
                                                     device=self.op.device))

    def _row(self, reading: OptimizerReading | None, top: Any, rot: Any, p_sharp: float, loss: float,
             grad_norm: float, residual: float, converged: bool, hvps: int, seconds: float) -> dict[str, Any]:
        eig = tuple(float(v) for v in top.eigenvalues.double().cpu())
        nan = math.nan
        thr = reading.threshold if reading is not None else nan
        compared = (p_sharp if reading.adaptive else eig[0]) if reading is not None else nan
        return {
            "step": self.state.step, "lr": reading.lr if reading is not None else nan, "loss": loss,
            "grad_norm": grad_norm, "sharpness": eig[0], "eigenvalues": eig, "threshold": thr,
            "preconditioned_sharpness": p_sharp, "ratio": compared / thr if thr > 0 else nan,
            "rotation": rot.same_parity.subspace if rot.same_parity is not None else nan,
            "rotation_lag": rot.lag if rot.lag is not None else nan,
            "residual": residual, "converged": bool(converged), "hvps": int(hvps),
            "warm": bool(top.extra.get("warm", False)), "seconds": seconds,
        }

    # ------------------------------------------------------------------ results
    @property
    def history(self) -> Any:
        """One row per measurement (:data:`COLUMNS`), a ``pandas.DataFrame``."""
        import pandas as pd

        df = pd.DataFrame(self.rows, columns=list(COLUMNS))
        df.attrs.update(self.attrs, method=self.op.method_used or None)
        return df

    def plot(self, title: str | None = None) -> Any:
        """The edge-of-stability figure (matplotlib, imported here): the quantity the threshold
        applies to (sharpness for SGD, preconditioned sharpness for adaptive optimisers) against
        the threshold; the rotation; the loss — three panels over the step. Returns the figure."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as err:  # pragma: no cover - matplotlib is optional for the library
            raise ImportError("Monitor.plot needs matplotlib (pip install matplotlib)") from err
        df = self.history
        adaptive = bool(df["preconditioned_sharpness"].notna().any())
        fig, axes = plt.subplots(3, 1, figsize=(7, 6.5), sharex=True, layout="constrained")
        name = "preconditioned sharpness" if adaptive else "sharpness λ₁"
        axes[0].plot(df["step"], df["preconditioned_sharpness" if adaptive else "sharpness"], "o-", ms=3, label=name)
        if df["threshold"].notna().any():
            axes[0].plot(df["step"], df["threshold"], "k--", lw=1, label="stability threshold")
        axes[0].set_ylabel(name)
        axes[0].legend(frameon=False)
        axes[1].plot(df["step"], df["rotation"], "o-", ms=3, color="tab:purple")
        axes[1].set_ylabel(f"top-{self.k} similarity\n(same parity)")
        axes[1].set_ylim(-0.02, 1.02)
        axes[2].plot(df["step"], df["loss"], "o-", ms=3, color="tab:gray")
        axes[2].set_ylabel("loss (Hessian set)")
        axes[2].set_xlabel("step")
        if title:
            fig.suptitle(title)
        return fig

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs: the tracker, the :class:`MonitorState` and the rows (picklable)."""
        return {"tracker": self.tracker, "state": self.state, "rows": list(self.rows)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.tracker, self.state, self.rows = d["tracker"], d["state"], list(d["rows"])
