r"""Stability thresholds of (preconditioned) gradient descent with momentum.

Each threshold is the largest curvature :math:`a` along an eigenvector of :math:`P^{-1}H`
(:mod:`instab_lib.preconditioned`; :math:`P = I` for SGD) at which the optimiser's update,
linearised on the quadratic :math:`\tfrac a2 x^2`, is still stable: the linear recursion it
becomes has both characteristic roots in the unit disc, and it loses that where a root
crosses :math:`-1`.

* **EMA momentum** (Adam, Clipped-Ada, RMSProp with β₁ = 0):
  :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) a x_{t-1}`, :math:`x_t = \rho x_{t-1} - \eta m_t` is
  :math:`x_{t+1} = (\rho + \beta_1 - \eta(1-\beta_1)a)\,x_t - \beta_1\rho\, x_{t-1}`, stable iff
  :math:`a < (1+\rho)(1+\beta_1)/((1-\beta_1)\eta)` (:func:`stability_threshold`): with no
  decoupled weight decay (:math:`\rho = 1`) :math:`(2+2\beta_1)/((1-\beta_1)\eta)` — :math:`2/\eta`
  for RMSProp, :math:`38/\eta` for Adam with β₁ = 0.9 (Cohen et al. 2022); AdamW's decay
  :math:`\lambda` shrinks first, :math:`\rho = 1 - \eta\lambda`. (Bias correction only rescales the
  first steps.)
* **Heavy-ball momentum** (``torch.optim.SGD``, RMSprop's ``momentum``):
  :math:`b_t = \mu b_{t-1} + (1-d) a x_{t-1}`, :math:`x_t = x_{t-1} - \eta b_t` is stable iff
  :math:`a < (2+2\mu)/((1-d)\eta)`; Nesterov's form :math:`x_t = x_{t-1} - \eta(a x_{t-1} + \mu b_t)`
  (:math:`d = 0`) iff :math:`a < (2+2\mu)/((1+2\mu)\eta)` (:func:`heavy_ball_threshold`).
  Plain SGD: :math:`2/\eta`.
"""

from __future__ import annotations

import math

__all__ = ["stability_threshold", "heavy_ball_threshold"]


def _check(lr: float, name: str, value: float) -> None:
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"learning rate must be positive and finite, got {lr!r}")
    if not (0 <= value < 1):
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")


def stability_threshold(lr: float, beta1: float = 0.0, *, decay: float = 0.0) -> float:
    r"""Largest stable preconditioned curvature of EMA momentum:
    :math:`(1+\rho)(1+\beta_1)/((1-\beta_1)\eta)`, :math:`\rho = 1 - \text{decay}`.

    ``beta1 = 0`` (GD, RMSProp, RMS-UB): :math:`2/\eta`; ``beta1 = 0.9`` (Adam, Adam-UB):
    :math:`38/\eta`. ``decay`` = :math:`\eta\lambda`, the fraction of the parameters a decoupled
    weight decay (AdamW) removes per step (0: :math:`(2+2\beta_1)/((1-\beta_1)\eta)`). Raises
    ``ValueError`` for ``lr ≤ 0``, ``beta1`` or ``decay`` outside [0, 1).
    """
    _check(lr, "beta1", beta1)
    if not (0 <= decay < 1):
        raise ValueError(f"decay (lr · weight_decay) must lie in [0, 1), got {decay!r}")
    if decay == 0:
        return (2 + 2 * beta1) / ((1 - beta1) * lr)
    return (2 - decay) * (1 + beta1) / ((1 - beta1) * lr)


def heavy_ball_threshold(lr: float, momentum: float = 0.0, *, dampening: float = 0.0,
                         nesterov: bool = False) -> float:
    r"""Largest stable curvature of SGD with heavy-ball momentum μ as ``torch.optim.SGD`` steps:
    :math:`(2+2\mu)/((1-d)\eta)` with dampening :math:`d`, :math:`(2+2\mu)/((1+2\mu)\eta)` with
    ``nesterov=True`` (which needs :math:`d = 0`); :math:`2/\eta` for plain SGD.

    (The library's :func:`instab_lib.optim.gd` with ``momentum`` is the case :math:`d = 0`.)
    Raises ``ValueError`` for ``lr ≤ 0``, ``momentum`` or ``dampening`` outside [0, 1), or
    Nesterov with dampening.
    """
    _check(lr, "momentum", momentum)
    if not (0 <= dampening < 1):
        raise ValueError(f"dampening must lie in [0, 1), got {dampening!r}")
    if nesterov:
        if dampening:
            raise ValueError("Nesterov momentum needs dampening = 0")
        return (2 + 2 * momentum) / ((1 + 2 * momentum) * lr)
    return (2 + 2 * momentum) / ((1 - dampening) * lr)
