r"""What a stability measurement reads from an optimiser: η, momentum, β's and the preconditioner.

:func:`adapt` wraps an optimiser in an adapter with two methods, both checked by one-line
``ValueError`` s before any compute:

* ``validate(params)`` — every measured parameter is optimised, with one set of
  hyperparameters, and no option the adapter cannot model is on;
* ``read(params, state=None, steps=None)`` — an :class:`OptimizerReading`: the learning rate of
  the last step, the stability threshold, whether the optimiser is adaptive and its diagonal
  preconditioner :math:`D` flattened in the order of ``params`` (shape ``(dim,)``).

Supported, with the update each one takes (``g`` the gradient, element-wise; the preconditioned
sharpness is :math:`\lambda_{\max}(D^{-1/2}(H + \ell I)D^{-1/2})`, :math:`\ell` the coupled L2
weight decay, 0 unless said):

=========================  ============================================================  ===============================
optimiser                  update and :math:`D`                                          threshold
=========================  ============================================================  ===============================
``torch.optim.SGD``        :math:`b = \mu b + (1-d)(g + wθ)`, :math:`θ -= η b` (Nesterov:  :math:`(2+2\mu)/((1-d)\eta) - w`
                           :math:`θ -= η(g + wθ + \mu b)`); no :math:`D`                  (Nesterov :math:`(2+2\mu)/((1+2\mu)\eta) - w`)
``torch.optim.Adam``       :math:`D = \sqrt{v/(1-\beta_2^t)} + \varepsilon` from          :math:`(2+2\beta_1)/((1-\beta_1)\eta)`
                           ``exp_avg_sq`` (``max_exp_avg_sq`` with ``amsgrad``) and the
                           parameter's ``step``; ``weight_decay`` :math:`w`: :math:`\ell = w`
``torch.optim.AdamW``      the same :math:`D`; decoupled decay :math:`θ ← (1-\eta w)θ`      :math:`(2-\eta w)(1+\beta_1)/((1-\beta_1)\eta)`
                           first (also ``Adam(decoupled_weight_decay=True)``)
``torch.optim.RMSprop``    :math:`D = \sqrt{v} + \varepsilon` (no bias correction);        :math:`(2+2\mu)/\eta`
                           ``centered``: :math:`\sqrt{v - \bar g^2} + \varepsilon`;
                           ``momentum`` μ: heavy ball on :math:`g/D`; :math:`\ell = w`
``instab_lib.optim``       GD / SGD (heavy ball μ): no :math:`D`; RMSProp, Adam,            :math:`(2+2\mu)/\eta`, or
                           Clipped-Ada: :math:`D` = ``opt.preconditioner(state)``, the      :math:`(2+2\beta_1)/((1-\beta_1)\eta)`
                           (clipped) denominator of the last step
=========================  ============================================================  ===============================

Refused with a one-line error: any other optimiser class (subclasses too: their step may
differ), ``maximize=True``, measured parameters in several parameter groups whose
hyperparameters differ, parameters the optimiser does not hold.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor

from .thresholds import heavy_ball_threshold, stability_threshold

__all__ = ["OptimizerReading", "adapt", "TorchSGD", "TorchAdam", "TorchRMSprop", "LibraryOptimizer"]


class OptimizerReading(NamedTuple):
    """What an optimiser says at a measurement.

    Attributes:
        name: ``"SGD"``, ``"Adam"``, ``"AdamW"``, ``"RMSprop"`` or the library optimiser's name.
        lr: η of the last step (read from the parameter group, or the schedule).
        threshold: the stability threshold (:mod:`instab_lib.thresholds`), to compare with the
            sharpness (``adaptive`` False) or with the preconditioned sharpness (True).
        adaptive: whether the optimiser divides by a preconditioner.
        preconditioner: :math:`D`, shape ``(dim,)`` in the order of the measured parameters, in
            their dtype (``None`` when not adaptive or before the first step).
        l2: coupled L2 weight decay :math:`\\ell` of an adaptive optimiser: its preconditioned
            sharpness is that of :math:`H + \\ell I`, the Hessian of the objective it descends.
    """

    name: str
    lr: float
    threshold: float
    adaptive: bool
    preconditioner: Tensor | None
    l2: float = 0.0


def _float(x: Any) -> float:
    return float(x.item()) if isinstance(x, Tensor) else float(x)


def _plain(x: Any) -> Any:
    """A hyperparameter comparable with ``==``: tensors as floats, tuples element-wise."""
    if isinstance(x, Tensor):
        return float(x.item())
    if isinstance(x, (tuple, list)):
        return tuple(_plain(v) for v in x)
    return x


class _TorchAdapter:
    """Shared by the ``torch.optim`` adapters: which group holds each parameter, one set of
    hyperparameters (``keys``) over the measured ones."""

    keys: tuple[str, ...] = ()
    name = ""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            if group.get("maximize", False):
                raise ValueError(f"{self.name} with maximize=True ascends the loss: its stability is not measured")

    def group(self, params: Sequence[Tensor]) -> dict[str, Any]:
        """The hyperparameters of the group(s) holding ``params`` (one-line error if they differ)."""
        owner = {id(p): i for i, g in enumerate(self.optimizer.param_groups) for p in g["params"]}
        missing = sum(id(p) not in owner for p in params)
        if missing:
            raise ValueError(f"{missing} of the {len(params)} measured parameters are not optimised by the "
                             f"{self.name} optimizer (pass params= the ones it holds)")
        groups = [self.optimizer.param_groups[i] for i in sorted({owner[id(p)] for p in params})]
        hyper = {k: _plain(groups[0].get(k)) for k in self.keys}
        for g in groups[1:]:
            other = {k: _plain(g.get(k)) for k in self.keys}
            if other != hyper:
                raise ValueError(f"the measured parameters are in {self.name} parameter groups with different "
                                 f"hyperparameters ({hyper} vs {other}); measure one group (params=)")
        return hyper

    def validate(self, params: Sequence[Tensor]) -> None:
        self.group(params)


class TorchSGD(_TorchAdapter):
    """``torch.optim.SGD``: no preconditioner; threshold :func:`heavy_ball_threshold` minus the
    coupled weight decay ``w`` (the step sees the curvature :math:`a + w`)."""

    keys = ("lr", "momentum", "dampening", "nesterov", "weight_decay")
    name = "SGD"

    def read(self, params: Sequence[Tensor], state: Any = None, steps: int | None = None) -> OptimizerReading:
        h = self.group(params)
        lr = _float(h["lr"])
        mu, damp = float(h["momentum"]), float(h["dampening"]) if float(h["momentum"]) else 0.0
        thr = heavy_ball_threshold(lr, mu, dampening=damp, nesterov=bool(h["nesterov"]))
        return OptimizerReading(self.name, lr, thr - float(h["weight_decay"]), False, None)


class TorchAdam(_TorchAdapter):
    """``torch.optim.Adam`` and ``AdamW`` (and ``Adam(decoupled_weight_decay=True)``):
    :math:`D = \\sqrt{v/(1-\\beta_2^t)} + \\varepsilon` computed as the optimiser computes its
    denominator, per parameter with that parameter's ``step``."""

    keys = ("lr", "betas", "eps", "weight_decay", "amsgrad", "decoupled_weight_decay")

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.name = type(optimizer).__name__
        super().__init__(optimizer)

    def read(self, params: Sequence[Tensor], state: Any = None, steps: int | None = None) -> OptimizerReading:
        h = self.group(params)
        lr, (beta1, beta2), eps, wd = _float(h["lr"]), h["betas"], float(h["eps"]), float(h["weight_decay"])
        beta1, beta2 = _float(beta1), _float(beta2)
        decoupled = bool(h.get("decoupled_weight_decay")) or isinstance(self.optimizer, torch.optim.AdamW)
        thr = stability_threshold(lr, beta1, decay=lr * wd if decoupled else 0.0)
        parts = []
        for p in params:
            st = self.optimizer.state.get(p, {})
            if "exp_avg_sq" not in st or _float(st["step"]) < 1:
                return OptimizerReading(self.name, lr, thr, True, None, 0.0 if decoupled else wd)
            v = st["max_exp_avg_sq"] if h["amsgrad"] else st["exp_avg_sq"]
            bc2_sqrt = (1 - beta2 ** _float(st["step"])) ** 0.5
            parts.append((v.detach().sqrt() / bc2_sqrt + eps).reshape(-1))
        return OptimizerReading(self.name, lr, thr, True, torch.cat(parts), 0.0 if decoupled else wd)


class TorchRMSprop(_TorchAdapter):
    """``torch.optim.RMSprop``: :math:`D = \\sqrt{v} + \\varepsilon` (``centered``:
    :math:`\\sqrt{v - \\bar g^2} + \\varepsilon`), no bias correction, as its step computes it;
    ``momentum`` μ is a heavy ball on :math:`g/D`: threshold :math:`(2+2\\mu)/\\eta`."""

    keys = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")
    name = "RMSprop"

    def read(self, params: Sequence[Tensor], state: Any = None, steps: int | None = None) -> OptimizerReading:
        h = self.group(params)
        lr, eps, wd = _float(h["lr"]), float(h["eps"]), float(h["weight_decay"])
        thr = heavy_ball_threshold(lr, float(h["momentum"]))
        parts = []
        for p in params:
            st = self.optimizer.state.get(p, {})
            if "square_avg" not in st or _float(st["step"]) < 1:
                return OptimizerReading(self.name, lr, thr, True, None, wd)
            v = st["square_avg"].detach()
            if h["centered"]:
                v = v.addcmul(st["grad_avg"], st["grad_avg"], value=-1)
            parts.append((v.sqrt() + eps).reshape(-1))
        return OptimizerReading(self.name, lr, thr, True, torch.cat(parts), wd)


class LibraryOptimizer:
    """An :class:`instab_lib.optim.Optimizer` (pure: its ``state`` is passed to :meth:`read`).

    η is that of the last step, ``opt.lr_at(steps − 1)`` with ``steps`` the updates done (given,
    or the count the state's schedule keeps); :math:`D` = ``opt.preconditioner(state)`` (the
    clipped denominator for Clipped-Ada); threshold :func:`stability_threshold` for EMA
    momentum (the adaptive ones), :func:`heavy_ball_threshold` for GD's heavy ball.
    """

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer
        self.name = optimizer.name

    def validate(self, params: Sequence[Tensor]) -> None:
        pass  # the state is checked at each read (its size against the parameters)

    def read(self, params: Sequence[Tensor], state: Any = None, steps: int | None = None) -> OptimizerReading:
        opt = self.optimizer
        if state is None:
            raise ValueError(f"the instab_lib optimiser {opt.name!r} is pure: pass its state (mon.step(state=...))")
        if steps is None:
            steps = _schedule_count(state)
        lr = opt.lr_at(steps - 1)
        kind, m = opt.momentum
        thr = stability_threshold(lr, m) if kind == "ema" else heavy_ball_threshold(lr, m)
        adaptive = kind == "ema"
        d = opt.preconditioner(state) if adaptive else None
        dim = sum(p.numel() for p in params)
        if d is not None and d.numel() != dim:
            raise ValueError(f"the optimiser state holds {d.numel()} scalars, the measured parameters {dim}: "
                             "init the optimiser with the measured parameters, in their order")
        return OptimizerReading(opt.name, lr, thr, adaptive, d)


def _schedule_count(state: Any) -> int:
    """The updates done, from the ``ScheduleState`` in an ``instab_lib.optim`` chain's state."""
    from .optim import ScheduleState

    for s in state if isinstance(state, tuple) else (state,):
        if isinstance(s, ScheduleState):
            return int(s.count)
    raise ValueError("cannot find the step count in this optimiser state; pass steps=")


_TORCH = {torch.optim.SGD: TorchSGD, torch.optim.Adam: TorchAdam, torch.optim.AdamW: TorchAdam,
          torch.optim.RMSprop: TorchRMSprop}


def adapt(optimizer: Any) -> TorchSGD | TorchAdam | TorchRMSprop | LibraryOptimizer:
    """The adapter of ``optimizer`` (table in the module docstring); one-line ``ValueError`` for
    anything else."""
    from .optim import Optimizer

    if isinstance(optimizer, Optimizer):
        return LibraryOptimizer(optimizer)
    cls = _TORCH.get(type(optimizer))
    if cls is None:
        raise ValueError(f"optimizer {type(optimizer).__name__} is not supported: use torch.optim.SGD, Adam, AdamW, "
                         "RMSprop, an instab_lib.optim optimiser, or optimizer=None")
    return cls(optimizer)
