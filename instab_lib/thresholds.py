r"""Stability thresholds of (preconditioned) gradient descent with momentum.

On a quadratic with curvature :math:`a` along an eigenvector of :math:`P^{-1}H`
(:mod:`instab_lib.preconditioned`; :math:`P = I` for GD), the EMA-momentum update
:math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) a x_{t-1}`, :math:`x_t = x_{t-1} - \eta m_t`
is the recursion :math:`x_{t+1} = (1 + \beta_1 - \eta(1-\beta_1)a)\,x_t - \beta_1 x_{t-1}`,
stable iff :math:`a < (2 + 2\beta_1)/((1-\beta_1)\eta)` (:func:`stability_threshold`):
:math:`2/\eta` for RMSProp and GD (:math:`\beta_1 = 0`), :math:`38/\eta` for Adam with
:math:`\beta_1 = 0.9`. (Bias correction only rescales the first steps.)
"""

from __future__ import annotations

import math

__all__ = ["stability_threshold"]


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
