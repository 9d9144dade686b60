"""Optimisers as small pure functions on lists of tensors (optax-style).

Every optimiser is an :class:`Optimizer` with two pure functions::

    state = opt.init(params)                             # params: list[Tensor]
    new_params, state = opt.update(grads, state, params)  # nothing is modified in place

Parameters may be tensors of any shape, including 0-d scalars and 1-d vectors, so the
same code drives the toy problems (1-D quadratic, diagonal linear network) and the
networks of the training loop. The optimisers are built from *transforms*, one idea each
(``scale_by_momentum``, ``scale_by_adaptive``, ``clip_denominator`` …) with a typed
state each (a ``NamedTuple``: :class:`RmsState`, :class:`AdaptiveState`, …); a transform maps gradients to *updates*
(``u``) and the optimiser applies ``θ ← θ + u``. A transform named like one of optax's does what
optax's does (:func:`scale_by_learning_rate` multiplies by ``−η_t``); the second-moment average,
which divides nothing by itself, is :func:`track_second_moment`.

Formulas (element-wise, ``t`` = 1, 2, … counts updates, ``g_t`` = gradient at θ_{t−1},
``η_t`` = learning-rate schedule evaluated at step ``t − 1``):

=============  ==================================================================
GD / SGD       θ_t = θ_{t−1} − η_t g_t   (optionally heavy-ball momentum μ:
               b_t = μ b_{t−1} + g_t,  θ_t = θ_{t−1} − η_t b_t)
RMSProp        v_t = β₂ v_{t−1} + (1−β₂) g_t²,  v̂_t = v_t / (1−β₂ᵗ)
               θ_t = θ_{t−1} − η_t g_t / (√(v̂_t + ε_root) + ε)
Adam           m_t = β₁ m_{t−1} + (1−β₁) g_t,  m̂_t = m_t / (1−β₁ᵗ),  v̂_t as above
               θ_t = θ_{t−1} − η_t m̂_t / (√(v̂_t + ε_root) + ε)
Clipped-Ada    θ_t = θ_{t−1} − η_t m̂_t / (clip(√(v̂_t + ε_root), c) + ε)
               "UB" (upper bound, the paper's Clipped-Ada): clip = min(·, c)
               "LB" (lower bound, the control):             clip = max(·, c)
               with β₁ = 0.9 (Adam-UB/LB) or β₁ = 0 (RMS-UB/LB, m̂_t = g_t).
=============  ==================================================================

Defaults follow REFERENCE §5.2: β₂ = 0.99, ε = 1e-8, ε_root = 0, bias correction on.
The toy cells of the author's code use ``v₀ = (S w₀)²`` without bias correction: pass
``nu_init=(S*w0)**2, bias_correction=False``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import torch
from torch import Tensor

from .validation import nonnegative as _check_nonneg
from .validation import positive as _check_positive
from .validation import unit_interval as _check_unit

Params = list[Tensor]
State = Any
Schedule = Callable[[int], float]

__all__ = [
    "Optimizer",
    "Transform",
    "chain",
    "EmptyState",
    "TraceState",
    "RmsState",
    "FirstMomentState",
    "ScheduleState",
    "AdaptiveState",
    "scale_by_momentum",
    "track_second_moment",
    "scale_by_first_moment",
    "scale_by_adaptive",
    "clip_denominator",
    "scale_by_learning_rate",
    "gd",
    "sgd",
    "rmsprop",
    "adam",
    "clipped_ada",
    "make_optimizer",
    "optimizer_hyperparameters",
    "OPTIMIZERS",
    "constant",
    "step_reduction",
    "piecewise_constant",
    "linear_warmup",
    "make_schedule",
]


def _as_list(xs: Sequence[Tensor] | Tensor) -> Params:
    if isinstance(xs, Tensor):
        return [xs]
    return list(xs)


# --------------------------------------------------------------------- states
class EmptyState(NamedTuple):
    """The state of a transform that keeps nothing (momentum μ = 0)."""


class TraceState(NamedTuple):
    """Heavy-ball buffer ``b_t`` (one tensor per parameter)."""

    trace: tuple[Tensor, ...]


class RmsState(NamedTuple):
    """Second-moment EMA after ``count`` updates: ``nu = v_t`` (one tensor per parameter)."""

    count: int
    nu: tuple[Tensor, ...]


class FirstMomentState(NamedTuple):
    """First-moment EMA after ``count`` updates: ``mu = m_t`` (one tensor per parameter)."""

    count: int
    mu: tuple[Tensor, ...]


class ScheduleState(NamedTuple):
    """Steps taken so far (the index of the learning rate of the next step)."""

    count: int


class AdaptiveState(NamedTuple):
    r"""State of :func:`scale_by_adaptive`: the two moments, and of the last step the
    unclipped root ``root`` = :math:`\sqrt{\hat v_t + \varepsilon_\mathrm{root}}` and the
    denominator ``denom`` = :math:`\mathrm{clip}(\text{root}) + \varepsilon` actually divided by
    (empty tuples before the first update)."""

    first: FirstMomentState
    rms: RmsState
    root: tuple[Tensor, ...]
    denom: tuple[Tensor, ...]


# --------------------------------------------------------------------- transforms
@dataclass(frozen=True)
class Transform:
    """A gradient transformation: ``init(params) -> state``,
    ``update(updates, state, params) -> (updates, state)`` (both pure), and optionally
    ``preconditioner(state)``: the flat denominator :math:`D_t` of the last step (shape
    ``(dim,)``) for adaptive transforms, ``None`` for the others."""

    init: Callable[[Params], State]
    update: Callable[[Params, State, Params], tuple[Params, State]]
    preconditioner: Callable[[State], "Tensor | None"] = lambda state: None
    unclipped_root: Callable[[State], "Tensor | None"] = lambda state: None


def chain(*transforms: Transform) -> Transform:
    """Compose transforms left to right; the state is the tuple of their states, and the
    preconditioner (unclipped root) is that of the first transform that has one."""

    def init(params: Params) -> State:
        return tuple(t.init(params) for t in transforms)

    def update(updates: Params, state: State, params: Params) -> tuple[Params, State]:
        new_states = []
        for t, s in zip(transforms, state):
            updates, s = t.update(updates, s, params)
            new_states.append(s)
        return updates, tuple(new_states)

    def first_of(attr: str) -> Callable[[State], Tensor | None]:
        def get(state: State) -> Tensor | None:
            for t, s in zip(transforms, state):
                d = getattr(t, attr)(s)
                if d is not None:
                    return d
            return None
        return get

    return Transform(init, update, first_of("preconditioner"), first_of("unclipped_root"))


def scale_by_momentum(momentum: float) -> Transform:
    """Heavy-ball buffer ``b_t = μ b_{t−1} + g_t``; returns ``b_t``. μ = 0 is the identity."""
    mu = _check_unit("momentum", momentum)

    def init(params: Params) -> State:
        return TraceState(tuple(torch.zeros_like(p) for p in params)) if mu > 0 else EmptyState()

    def update(updates: Params, state: State, params: Params) -> tuple[Params, State]:
        if mu == 0:
            return updates, state
        trace = [mu * b + g for b, g in zip(state.trace, updates)]
        return trace, TraceState(tuple(trace))

    return Transform(init, update)


def track_second_moment(
    beta2: float = 0.99,
    *,
    nu_init: float = 0.0,
) -> Transform:
    """Second-moment EMA ``v_t = β₂ v_{t−1} + (1−β₂) g_t²`` with ``v₀ = nu_init`` (state
    :class:`RmsState`); returns ``g_t`` unchanged: the division by the root is
    :func:`scale_by_adaptive`'s, which also clips it (optax's ``scale_by_rms`` divides)."""
    b2 = _check_unit("beta2", beta2)
    nu_init = _check_nonneg("nu_init", nu_init)

    def init(params: Params) -> State:
        return RmsState(0, tuple(torch.full_like(p, nu_init) for p in params))

    def update(updates: Params, state: State, params: Params) -> tuple[Params, State]:
        nu = [b2 * v + (1 - b2) * g * g for v, g in zip(state.nu, updates)]
        return updates, RmsState(state.count + 1, tuple(nu))

    return Transform(init, update)


def scale_by_first_moment(beta1: float = 0.9, *, bias_correction: bool = True) -> Transform:
    """First-moment EMA: ``m_t = β₁ m_{t−1} + (1−β₁) g_t``; returns ``m̂_t = m_t/(1−β₁ᵗ)``.

    β₁ = 0 is the identity (RMSProp)."""
    b1 = _check_unit("beta1", beta1)

    def init(params: Params) -> State:
        return FirstMomentState(0, tuple(torch.zeros_like(p) for p in params))

    def update(updates: Params, state: State, params: Params) -> tuple[Params, State]:
        if b1 == 0:
            return updates, FirstMomentState(state.count + 1, state.mu)
        count = state.count + 1
        mu = [b1 * m + (1 - b1) * g for m, g in zip(state.mu, updates)]
        corr = 1 - b1**count if bias_correction else 1.0
        return [m / corr for m in mu], FirstMomentState(count, tuple(mu))

    return Transform(init, update)


def clip_denominator(c: float, mode: str = "UB") -> Callable[[Params], Params]:
    """The Clipped-Ada idea as a pure map on the roots ``r_t = √(v̂_t + ε_root)``.

    ``"UB"``: ``r ↦ min(r, c)`` (the step is at least ``η|m̂|/(c+ε)``: instabilities
    return); ``"LB"``: ``r ↦ max(r, c)`` (the step is at most ``η|m̂|/(c+ε)``).
    """
    c = _check_positive("c", c)
    mode = mode.upper()
    if mode not in ("UB", "LB"):
        raise ValueError(f"clip mode must be 'UB' (min(√v̂, c)) or 'LB' (max(√v̂, c)), got {mode!r}")
    op = torch.clamp_max if mode == "UB" else torch.clamp_min
    return lambda roots: [op(r, c) for r in roots]


def scale_by_learning_rate(schedule: Schedule | float) -> Transform:
    """Multiply the updates by ``−η_t`` where ``η_t = schedule(t)``, t = 0, 1, … (steps done), or
    ``η_t = η`` for a number: optax's ``scale_by_learning_rate`` (with its default ``flip_sign=True``)."""
    sched = constant(schedule) if not callable(schedule) else schedule

    def init(params: Params) -> State:
        return ScheduleState(0)

    def update(updates: Params, state: State, params: Params) -> tuple[Params, State]:
        lr = float(sched(state.count))
        return [-lr * u for u in updates], ScheduleState(state.count + 1)

    return Transform(init, update)


def _flat(ts: Sequence[Tensor]) -> Tensor | None:
    return torch.cat([t.reshape(-1) for t in ts]) if ts else None


def scale_by_adaptive(
    beta1: float,
    beta2: float,
    eps: float,
    eps_root: float,
    bias_correction: bool,
    nu_init: float,
    clip: Callable[[Params], Params] | None,
) -> Transform:
    r"""``m̂_t / D_t`` with ``D_t = clip(√(v̂_t + ε_root)) + ε``, ``v̂_t = v_t/(1−β₂ᵗ)`` (or
    ``v_t`` without bias correction): Adam (β₁ > 0), RMSProp (β₁ = 0), Clipped-Ada (``clip``).

    Its :attr:`Transform.preconditioner` is the flat ``D_t`` of the last step, its
    ``unclipped_root`` the flat ``√(v̂_t + ε_root)`` (read from the state, not re-derived)."""
    eps = _check_nonneg("eps", eps)
    eps_root = _check_nonneg("eps_root", eps_root)
    b2 = _check_unit("beta2", beta2)
    first = scale_by_first_moment(beta1, bias_correction=bias_correction)
    rms = track_second_moment(b2, nu_init=nu_init)

    def init(params: Params) -> State:
        return AdaptiveState(first.init(params), rms.init(params), (), ())

    def update(updates: Params, state: State, params: Params) -> tuple[Params, State]:
        _, rms_state = rms.update(updates, state.rms, params)
        m_hat, first_state = first.update(updates, state.first, params)
        corr = 1 - b2**rms_state.count if bias_correction else 1.0
        root = [torch.sqrt(v / corr + eps_root) for v in rms_state.nu]
        clipped = clip(root) if clip is not None else root
        denom = [r + eps for r in clipped]
        out = [m / (r + eps) for m, r in zip(m_hat, clipped)]
        return out, AdaptiveState(first_state, rms_state, tuple(root), tuple(denom))

    return Transform(init, update, lambda state: _flat(state.denom), lambda state: _flat(state.root))


# --------------------------------------------------------------------- optimisers
@dataclass(frozen=True)
class Optimizer:
    """A named optimiser: pure ``init(params)`` and ``update(grads, state, params)``.

    ``update`` returns ``(new_params, new_state)`` with ``new_params[i] = params[i] + u_i``;
    it runs under ``torch.no_grad()`` and never modifies its inputs. ``hyper`` records the
    hyperparameters (for run tables). ``lr_at(step)`` is the learning rate of a step.
    """

    name: str
    transform: Transform
    hyper: Mapping[str, Any]
    schedule: Schedule

    def init(self, params: Sequence[Tensor] | Tensor) -> State:
        with torch.no_grad():
            return self.transform.init([p.detach() for p in _as_list(params)])

    def update(
        self, grads: Sequence[Tensor] | Tensor, state: State, params: Sequence[Tensor] | Tensor
    ) -> tuple[Params, State]:
        ps = [p.detach() for p in _as_list(params)]
        gs = [g.detach() for g in _as_list(grads)]
        if len(ps) != len(gs):
            raise ValueError(f"got {len(gs)} gradients for {len(ps)} parameters")
        with torch.no_grad():
            updates, state = self.transform.update(gs, state, ps)
            return [p + u for p, u in zip(ps, updates)], state

    def lr_at(self, step: int) -> float:
        return float(self.schedule(step))

    def preconditioner(self, state: State) -> Tensor | None:
        r"""The flat denominator :math:`D_t` (shape ``(dim,)``) that divided the last step of an
        adaptive optimiser (Adam, RMSProp, Clipped-Ada); ``None`` for GD and before the first
        update. The preconditioned sharpness is :math:`\lambda_{\max}(D^{-1/2} H D^{-1/2})`."""
        return self.transform.preconditioner(state)

    def unclipped_root(self, state: State) -> Tensor | None:
        r"""The flat :math:`\sqrt{\hat v_t + \varepsilon_\mathrm{root}}` of the last step before any
        clip (``None`` for GD): where it stays ≤ c, Clipped-Ada "UB" takes Adam's step."""
        return self.transform.unclipped_root(state)

    def clip_fraction(self, state: State) -> float:
        r"""Fraction of coordinates where the Clipped-Ada clip bound at the last step
        (UB: :math:`\sqrt{\hat v} > c`; LB: :math:`\sqrt{\hat v} < c`); 0 without a clip."""
        root = self.unclipped_root(state)
        if root is None or "c" not in self.hyper:
            return 0.0
        c = float(self.hyper["c"])
        bind = root > c if str(self.hyper.get("mode", "UB")).upper() == "UB" else root < c
        return float(bind.double().mean())

    @property
    def momentum(self) -> tuple[str, float]:
        """``("ema", β₁)`` for the adaptive optimisers, ``("heavy_ball", μ)`` for GD."""
        if "beta2" in self.hyper:
            return "ema", float(self.hyper.get("beta1", 0.0))
        return "heavy_ball", float(self.hyper.get("momentum", 0.0))


def _schedule_of(lr: float | Schedule) -> Schedule:
    if callable(lr):
        return lr
    return constant(lr)


def gd(lr: float | Schedule, *, momentum: float = 0.0) -> Optimizer:
    """(Stochastic) gradient descent: ``θ_t = θ_{t−1} − η_t b_t``, ``b_t = μ b_{t−1} + g_t``
    (μ = 0: plain GD). Full-batch vs. minibatch is decided by the caller's gradients."""
    sched = _schedule_of(lr)
    t = chain(scale_by_momentum(momentum), scale_by_learning_rate(sched))
    return Optimizer("gd", t, {"lr": _lr_repr(lr), "momentum": float(momentum)}, sched)


sgd = gd


def rmsprop(
    lr: float | Schedule,
    *,
    beta2: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    bias_correction: bool = True,
    nu_init: float = 0.0,
) -> Optimizer:
    """RMSProp with bias correction: ``θ_t = θ_{t−1} − η_t g_t / (√(v̂_t + ε_root) + ε)``."""
    sched = _schedule_of(lr)
    t = chain(scale_by_adaptive(0.0, beta2, eps, eps_root, bias_correction, nu_init, None),
              scale_by_learning_rate(sched))
    hyper = {"lr": _lr_repr(lr), "beta2": beta2, "eps": eps, "eps_root": eps_root,
             "bias_correction": bias_correction, "nu_init": nu_init}
    return Optimizer("rmsprop", t, hyper, sched)


def adam(
    lr: float | Schedule,
    *,
    beta1: float = 0.9,
    beta2: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    bias_correction: bool = True,
    nu_init: float = 0.0,
) -> Optimizer:
    """Adam: ``θ_t = θ_{t−1} − η_t m̂_t / (√(v̂_t + ε_root) + ε)`` (β₂ = 0.99 as in §5.2)."""
    sched = _schedule_of(lr)
    t = chain(scale_by_adaptive(beta1, beta2, eps, eps_root, bias_correction, nu_init, None),
              scale_by_learning_rate(sched))
    hyper = {"lr": _lr_repr(lr), "beta1": beta1, "beta2": beta2, "eps": eps,
             "eps_root": eps_root, "bias_correction": bias_correction, "nu_init": nu_init}
    return Optimizer("adam", t, hyper, sched)


def clipped_ada(
    lr: float | Schedule,
    c: float,
    *,
    mode: str = "UB",
    beta1: float = 0.9,
    beta2: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    bias_correction: bool = True,
    nu_init: float = 0.0,
) -> Optimizer:
    r"""Clipped-Ada (REFERENCE §5.2): Adam/RMSProp with a clipped denominator.

    ``θ_t = θ_{t−1} − η_t m̂_t / (D_t + ε)`` with ``D_t = min(√(v̂_t+ε_root), c)`` ("UB",
    the paper's Clipped-Ada, code name ``adam_ub``) or ``D_t = max(√(v̂_t+ε_root), c)``
    ("LB"). ``beta1=0`` gives RMS-UB / RMS-LB.

    Limits (these are what the tests check):

    * **c → ∞, UB** (c ≥ maxᵢ √v̂ᵢ at every step): ``min(√v̂, c) = √v̂``, so every step is
      exactly Adam's. The same holds for **LB with c → 0** (c ≤ minᵢ √v̂ᵢ).
    * **c → 0, UB** (c ≤ minᵢ √v̂ᵢ): ``D_t = c``, so ``θ_t = θ_{t−1} − (η/(c+ε)) m̂_t``:
      momentum-GD (EMA of gradients, bias-corrected) with the *large* learning rate
      η/(c+ε); for β₁ = 0 it is exactly GD with learning rate η/(c+ε). The same holds
      for **LB with c → ∞**. This is why UB "restores instabilities": the effective
      step never shrinks below η/c per unit gradient, so the preconditioned sharpness
      can pass 2 as in GD.
    * **Sign-like steps** come from the unclipped side, not from tiny c: at t = 1,
      ``m̂₁ = g₁`` and ``v̂₁ = g₁²``, so Adam's (and UB's with c > |g₁|) first step is
      ``−η g₁/(|g₁| + ε) = −η sign(g₁)`` up to O(ε/|g₁|); for RMSProp with β₂ → 0 every
      step is ``−η sign(g_t)``. With UB, coordinates with √v̂ < c take these sign-like
      (Adam) steps and coordinates with √v̂ > c take GD steps of size η|m̂|/c ≥ η|m̂|/√v̂:
      a per-coordinate step ``η·min(1, |m̂|/c)``-or-larger, never smaller than GD at η/c.
    """
    sched = _schedule_of(lr)
    t = chain(scale_by_adaptive(beta1, beta2, eps, eps_root, bias_correction, nu_init,
                                clip_denominator(c, mode)),
              scale_by_learning_rate(sched))
    hyper = {"lr": _lr_repr(lr), "c": float(c), "mode": mode.upper(), "beta1": beta1,
             "beta2": beta2, "eps": eps, "eps_root": eps_root,
             "bias_correction": bias_correction, "nu_init": nu_init}
    return Optimizer(f"clipped_ada_{mode.lower()}", t, hyper, sched)


def _lr_repr(lr: float | Schedule) -> float | str:
    if callable(lr):
        return getattr(lr, "description", repr(lr))
    return _check_positive("learning rate", lr)


#: Optimiser names accepted by :func:`make_optimizer` (and ``TrainConfig.optimizer``):
#: name → builder ``fn(lr, **hyper)``. The UB/LB shorthands fix ``mode`` (and β₁ = 0 for
#: the RMS variants) of :func:`clipped_ada`.
OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "gd": gd,
    "sgd": gd,
    "rmsprop": rmsprop,
    "adam": adam,
    "clipped_ada": clipped_ada,
    "adam_ub": partial(clipped_ada, mode="UB"),
    "adam_lb": partial(clipped_ada, mode="LB"),
    "rms_ub": partial(clipped_ada, mode="UB", beta1=0.0),
    "rms_lb": partial(clipped_ada, mode="LB", beta1=0.0),
}


def optimizer_hyperparameters(name: str) -> tuple[list[str], list[str]]:
    """``(accepted, required)`` hyperparameter names of optimiser ``name`` (besides lr)."""
    key = name.lower().replace("-", "_")
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {sorted(OPTIMIZERS)}")
    fn = OPTIMIZERS[key]
    fixed = set(fn.keywords) if isinstance(fn, partial) else set()
    params = inspect.signature(fn.func if isinstance(fn, partial) else fn).parameters
    accepted = [n for n in params if n != "lr" and n not in fixed]
    required = [n for n in accepted if params[n].default is inspect.Parameter.empty]
    return accepted, required


def make_optimizer(name: str, lr: float | Schedule, **hyper: Any) -> Optimizer:
    """Build an optimiser by name (see :data:`OPTIMIZERS`); unknown names or
    hyperparameters, missing ones (``c`` for Clipped-Ada) or a non-positive learning rate
    raise ``ValueError`` saying what is accepted."""
    accepted, required = optimizer_hyperparameters(name)
    bad = sorted(set(hyper) - set(accepted))
    if bad:
        raise ValueError(f"optimizer {name!r} does not take {bad}; it takes {accepted}")
    missing = [n for n in required if n not in hyper]
    if missing:
        raise ValueError(f"optimizer {name!r} needs {missing}")
    if not callable(lr):
        _check_positive("learning rate", lr)
    return OPTIMIZERS[name.lower().replace("-", "_")](lr, **hyper)


# ---------------------------------------------------------------------- schedules
def _described(fn: Schedule, description: str) -> Schedule:
    fn.description = description  # type: ignore[attr-defined]
    return fn


def constant(lr: float) -> Schedule:
    """η_t = η for every step t."""
    lr = _check_positive("learning rate", lr)
    return _described(lambda step: lr, f"constant({lr})")


def piecewise_constant(lr0: float, boundaries: Mapping[int, float]) -> Schedule:
    """η_t = η₀ for t < s₁, then ``boundaries[s_i]`` from step s_i on (steps sorted)."""
    lr0 = _check_positive("learning rate", lr0)
    pts = sorted((int(s), _check_positive("learning rate", v)) for s, v in boundaries.items())
    if any(s < 0 for s, _ in pts):
        raise ValueError(f"schedule boundaries must be non-negative steps, got {dict(boundaries)}")

    def sched(step: int) -> float:
        lr = lr0
        for s, v in pts:
            if step >= s:
                lr = v
        return lr

    return _described(sched, f"piecewise({lr0}, {dict(pts)})")


def step_reduction(lr0: float, lr_small: float, at_epoch: int, steps_per_epoch: int = 1) -> Schedule:
    """η₀ for the first ``at_epoch`` epochs, then η_small (A Fig 4): η_t = η₀ if
    t < at_epoch·steps_per_epoch else η_small."""
    if int(at_epoch) < 0:
        raise ValueError(f"reduction epoch must be ≥ 0, got {at_epoch}")
    if int(steps_per_epoch) < 1:
        raise ValueError(f"steps_per_epoch must be ≥ 1, got {steps_per_epoch}")
    return piecewise_constant(lr0, {int(at_epoch) * int(steps_per_epoch): lr_small})


def linear_warmup(schedule: Schedule | float, warmup_steps: int) -> Schedule:
    """η_t = schedule(t) · min(1, (t+1)/w): a linear ramp reaching the full rate at step
    w−1 (w = 0 or 1: no warm-up). Unlike optax the first step is η/w, not 0."""
    base = _schedule_of(schedule)
    w = int(warmup_steps)
    if w < 0:
        raise ValueError(f"warmup_steps must be ≥ 0, got {warmup_steps}")
    if w <= 1:
        return base
    return _described(lambda step: base(step) * min(1.0, (step + 1) / w),
                      f"warmup({getattr(base, 'description', base)}, {w})")


def make_schedule(
    lr: float,
    spec: Mapping[str, Any] | None = None,
    *,
    steps_per_epoch: int = 1,
) -> Schedule:
    """Schedule from a JSON-able spec (what ``TrainConfig.lr_schedule`` holds).

    * ``None`` or ``{"kind": "constant"}``: η_t = lr.
    * ``{"kind": "step", "epochs": [e₁, …], "values": [η₁, …]}``: lr until epoch e₁, then
      η₁ until e₂, … (epochs converted to steps with ``steps_per_epoch``).
    * any of them with ``"warmup_steps": w``: :func:`linear_warmup` on top.
    """
    spec = dict(spec or {})
    kind = spec.pop("kind", "constant")
    warm = int(spec.pop("warmup_steps", 0))
    if kind == "constant":
        if spec:
            raise ValueError(f"constant schedule takes only 'warmup_steps', got {sorted(spec)}")
        base = constant(lr)
    elif kind == "step":
        epochs = list(spec.pop("epochs", []))
        values = list(spec.pop("values", []))
        if spec:
            raise ValueError(f"step schedule takes 'epochs', 'values', 'warmup_steps'; got {sorted(spec)}")
        if len(epochs) != len(values) or not epochs:
            raise ValueError("step schedule needs equally long, non-empty 'epochs' and 'values'")
        if any(int(e) < 0 for e in epochs):
            raise ValueError(f"step schedule epochs must be ≥ 0, got {epochs}")
        base = piecewise_constant(lr, {int(e) * steps_per_epoch: v for e, v in zip(epochs, values)})
    else:
        raise ValueError(f"unknown schedule kind {kind!r}; known: 'constant', 'step'")
    return linear_warmup(base, warm)
