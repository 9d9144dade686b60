"""Weight initialisations of the experiments' models, and the switch that changes the default.

Two initialisations (:data:`INITS`):

* ``"torch"`` — PyTorch's defaults (each layer's ``reset_parameters``): ``Linear``/``Conv``
  kernels and biases U(−1/√fan_in, 1/√fan_in) (kaiming-uniform with a = √5); BN weight 1, bias 0.
* ``"author"`` — Flax's defaults, those of the author's code (``lawrencewang94/jax_eigs``): every
  dense and conv kernel LeCun-normal, i.e. N(0, σ²) truncated at ±2σ with

  .. math::  σ = \\sqrt{1/\\text{fan\\_in}}\\,/\\,0.87962566…

  (``jax.nn.initializers.variance_scaling(1, "fan_in", "truncated_normal")``: the divisor is the
  standard deviation of a standard normal truncated to [−2, 2], so the kernel's variance is
  1/fan_in; fan_in = k·k·c_in for a conv, the input width for a dense); biases 0; BN scale 1, bias 0.

The fMNIST models (``mlp``, ``linear`` of :mod:`instab_lib.experiments.models`) take ``init=None``
by default, which means :func:`default_init`: ``$INSTAB_INIT`` when set, else ``"torch"``. So

.. code-block:: bash

    INSTAB_INIT=author instab run goldilocks

re-runs a page with the author's initialisation (the perturbation check's ``init-author`` column,
:mod:`instab_lib.book.perturb`). The choice is resolved into every run's configuration
(:meth:`instab_lib.experiments.config.TrainConfig.resolved_model_kwargs`), so it is part of the run
key and of the run record. The CIFAR models (:mod:`instab_lib.experiments.cnn_models`) take an
explicit ``init`` (default ``"author"``) and do not read the variable. The weights are not the
author's for the same seed (JAX's generator differs); the distributions are.
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor, nn

__all__ = ["INITS", "INIT_ENV", "LECUN_TRUNC_CORRECTION", "default_init", "resolve_init", "lecun_normal_",
           "initialise_"]

#: Initialisations accepted by the builders.
INITS = ("author", "torch")
#: Environment variable holding the default initialisation of the fMNIST models.
INIT_ENV = "INSTAB_INIT"
#: std of a standard normal truncated to [−2, 2] (JAX divides the target std by it).
LECUN_TRUNC_CORRECTION = 0.87962566103423978


def default_init() -> str:
    """``$INSTAB_INIT`` (one of :data:`INITS`) when set and not empty, else ``"torch"``.

    Raises ``ValueError`` with a one-line reason for any other value.
    """
    raw = os.environ.get(INIT_ENV, "").strip()
    if not raw:
        return "torch"
    if raw not in INITS:
        raise ValueError(f"{INIT_ENV} must be one of {INITS}, got {raw!r}")
    return raw


def resolve_init(init: str | None) -> str:
    """``init`` itself when given (checked against :data:`INITS`), else :func:`default_init`."""
    if init is None:
        return default_init()
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {INITS}")
    return init


@torch.no_grad()
def lecun_normal_(w: Tensor) -> Tensor:
    """Flax's default kernel init in place: N(0, σ²) truncated at ±2σ, σ = √(1/fan_in)/0.8796…
    (``fan_in`` = ``w[0].numel()`` for PyTorch's (out, in, …) layouts). Returns ``w``."""
    fan_in = w[0].numel()
    std = math.sqrt(1.0 / fan_in) / LECUN_TRUNC_CORRECTION
    return nn.init.trunc_normal_(w, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


@torch.no_grad()
def initialise_(model: nn.Module, init: str) -> nn.Module:
    """Re-draw every parameter of ``model`` in place from the current torch generator:
    ``"author"`` (Flax: LeCun-normal kernels, zero biases, BN 1/0) or ``"torch"`` (each
    layer's ``reset_parameters``). Running BN statistics are reset to 0 / 1. Returns ``model``.
    The weights must be contiguous (random fills write in memory order, so a ``channels_last``
    weight would receive other values for the same seed)."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {INITS}")
    if any(not p.is_contiguous() for p in model.parameters()):
        raise ValueError("initialise_ needs contiguous weights: call set_channels_last(False) first")
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if init == "torch":
                m.reset_parameters()
            else:
                lecun_normal_(m.weight)
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()  # weight 1, bias 0, running mean 0, var 1 (both inits)
    return model
