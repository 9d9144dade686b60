"""The training loop as data and pure steps: ``init_run(config, theta0=None)`` and ``step``.

A run is a :class:`Run` (what does not change: the model, its trainable parameters, the
data on the run's device, the loss, the optimiser and the Hessian subset) and a
:class:`TrainState` (what does: optimiser state, steps and epochs done, the shuffling
generator). ::

    run, state = init_run(config)
    state, diverged = run_epoch(run, state)      # one epoch of optimiser steps
    loss, acc = evaluate(run.model, run.loss_fn, *run.train)

:func:`step` is one optimiser step on one batch: the gradient at the current parameters,
``opt.update`` (pure), and the new parameters copied into the model. Measurements are
hooks (:mod:`instab_lib.experiments.hooks`) that :func:`instab_lib.experiments.train.train` calls with the run and
its state at every step and every recorded epoch: a new measurement is a new hook.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from ..curvature.operators import unflatten_like
from . import data as data_mod
from .losses import LOSSES
from .seeding import torch_generator

__all__ = ["Run", "TrainState", "init_run", "step", "run_epoch", "evaluate", "flat_parameters", "mode_free",
           "forward_metrics"]


@dataclass
class Run:
    """The fixed parts of a run: ``config``, ``model`` (on the run's device and dtype, train
    mode), its trainable ``params`` (in ``model.parameters()`` order), ``train`` / ``test`` /
    ``hessian`` as ``(X, y)`` pairs, ``loss_fn``, ``optimizer``, ``batch_size`` and
    ``steps_per_epoch``, the data copy ``data_source`` and the validation pair ``val`` (the last
    ``config.n_val`` training images; ``None`` without a validation split)."""

    config: Any
    model: nn.Module
    params: list[Tensor]
    train: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    hessian: tuple[Tensor, Tensor]
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    optimizer: Any
    batch_size: int
    steps_per_epoch: int
    data_source: str
    val: tuple[Tensor, Tensor] | None = None


class TrainState(NamedTuple):
    """What a step changes: the optimiser state, ``step`` (optimiser steps done), ``epoch``
    (epochs done) and the minibatch ``generator``."""

    opt_state: Any
    step: int
    epoch: int
    generator: torch.Generator


def init_run(config: Any, theta0: Tensor | None = None) -> tuple[Run, TrainState]:
    """Load the data subset, build the model (seeded) and the optimiser of ``config`` (a
    :class:`instab_lib.experiments.config.TrainConfig`): the run at epoch 0.

    ``theta0``: the flat parameters to start from, shape ``(dim,)`` (moved to the run's device
    and dtype), instead of the seeded initialisation. A continuation (``config.init_from``)
    starts from the final parameters of the run it continues: the caller passes them
    (:func:`instab_lib.experiments.train.train` passes :func:`instab_lib.experiments.train.final_parameters`
    ``(config.init_from)``); ``init_run`` itself never trains or reads another run, so with
    ``theta0=None`` the model holds its seeded initialisation whatever ``init_from`` says."""
    device, dtype = torch.device(config.device), getattr(torch, config.dtype)
    ds = data_mod.load_dataset(config.dataset, n_train=config.n_train, n_test=config.n_test, n_val=config.n_val,
                               balanced=config.balanced, classes=config.classes, data_dir=config.data_dir)
    X, y = ds.X_train.to(device, dtype), ds.y_train.to(device)
    test = (ds.X_test.to(device, dtype), ds.y_test.to(device))
    n = len(y)
    bs = config.batch_size or n
    spe = math.ceil(n / bs)
    hn = config.hessian_n or n
    model = config.build_model().to(device, dtype)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = config.optimizer_for(spe)
    if theta0 is not None:  # e.g. continue another run: start from its final parameters
        theta = theta0.to(device, dtype)
        if theta.numel() != sum(p.numel() for p in params):
            raise ValueError(f"theta0 has {theta.numel()} parameters; this model has "
                             f"{sum(p.numel() for p in params)}")
        with torch.no_grad():
            offset = 0
            for p in params:
                p.copy_(theta[offset:offset + p.numel()].view_as(p))
                offset += p.numel()
    val = (ds.X_val.to(device, dtype), ds.y_val.to(device)) if ds.y_val is not None else None
    run = Run(config, model, params, (X, y), test, (X[:hn], y[:hn]), LOSSES[config.loss], opt, bs, spe, ds.source,
              val)
    return run, TrainState(opt.init(params), 0, 0, torch_generator(config.seed))


def flat_parameters(run: Run) -> Tensor:
    """The current parameters as one flat vector (detached copy), shape ``(dim,)``."""
    return torch.cat([p.detach().reshape(-1) for p in run.params]).clone()


@torch.no_grad()
def load_flat_parameters(params: Sequence[Tensor], theta: Tensor) -> None:
    """Copy the flat vector ``theta`` (shape ``(dim,)``, e.g. a snapshot's) into ``params`` in place, in the
    order of :func:`flat_parameters`, on their device and in their dtype."""
    for p, q in zip(params, unflatten_like(theta.to(params[0].device, params[0].dtype), params)):
        p.copy_(q)


def mode_free(model: nn.Module) -> bool:
    """True when the model has no layer that behaves differently in train and eval mode
    (no BatchNorm, no Dropout): its training forward *is* its evaluation."""
    from torch.nn.modules.batchnorm import _NormBase
    from torch.nn.modules.dropout import _DropoutNd

    return not any(isinstance(m, (_NormBase, _DropoutNd)) for m in model.modules())


def forward_metrics(run: Run, chunk: int = 4096) -> tuple[Tensor, float, float] | None:
    """For a full-batch run of a :func:`mode_free` model on at most ``chunk`` images: the
    training loss at the current parameters *with its graph* (the next step's gradient
    needs no second forward) and the (mean loss, accuracy) :func:`evaluate` would return,
    equal to the last bit (the same forward). ``None`` when that does not apply."""
    X, y = run.train
    if run.steps_per_epoch != 1 or len(y) > chunk or len(y) == 0 or not mode_free(run.model):
        return None
    out = run.model(X)
    loss = run.loss_fn(out, y)
    n = len(y)
    with torch.no_grad():
        acc = int((out.argmax(-1) == y).sum()) / n
    return loss, float(loss.detach()) * n / n, acc


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: Callable, X: Tensor, y: Tensor, chunk: int = 4096) -> tuple[float, float]:
    """(mean loss, accuracy) in eval mode, over chunks of ``chunk`` samples (NaN, NaN without data)."""
    if len(y) == 0:
        return float("nan"), float("nan")
    was = model.training
    model.eval()
    tot_loss, correct = 0.0, 0
    for i in range(0, len(y), chunk):
        out = model(X[i:i + chunk])
        tot_loss += float(loss_fn(out, y[i:i + chunk])) * len(out)
        correct += int((out.argmax(-1) == y[i:i + chunk]).sum())
    model.train(was)
    return tot_loss / len(y), correct / len(y)


def step(run: Run, state: TrainState, xb: Tensor, yb: Tensor,
         blown: Callable[[float], bool] | None = None, loss: Tensor | None = None) -> tuple[TrainState, float, bool]:
    """One optimiser step on the batch ``(xb, yb)``: ``(new state, loss before the step,
    diverged)``. When ``blown(loss)`` is true (or the loss is not finite) no step is taken
    and ``diverged`` is True. ``loss``: the batch's loss at the current parameters, with its
    graph, when already computed (:func:`forward_metrics`)."""
    if loss is None:
        loss = run.loss_fn(run.model(xb), yb)
    lv = float(loss.detach())
    if not math.isfinite(lv) or (blown is not None and blown(lv)):
        return state, lv, True
    grads = torch.autograd.grad(loss, run.params)
    new, opt_state = run.optimizer.update(list(grads), state.opt_state, run.params)
    with torch.no_grad():
        for p, q in zip(run.params, new):
            p.copy_(q)
    return state._replace(opt_state=opt_state, step=state.step + 1), lv, False


def run_epoch(run: Run, state: TrainState, blown: Callable[[float], bool] | None = None,
              on_step: Callable[[Run, TrainState], None] | None = None,
              first_loss: Tensor | None = None) -> tuple[TrainState, bool]:
    """One epoch of steps (full batch: one; minibatches in an order drawn from the state's
    generator). Returns ``(state with epoch + 1, diverged)``; stops at the first step whose
    loss is not finite or ``blown``. ``on_step(run, state)`` runs after every step taken.
    ``first_loss``: the full-batch loss at the current parameters with its graph
    (:func:`forward_metrics`), used by the epoch's single step instead of a new forward."""
    X, y = run.train
    n = len(y)
    bs = run.batch_size
    perm = torch.randperm(n, generator=state.generator).to(X.device) if bs < n else None
    for b in range(run.steps_per_epoch):
        if perm is None:
            xb, yb = X, y
        else:
            idx = perm[b * bs:(b + 1) * bs]
            xb, yb = X[idx], y[idx]
        state, _, diverged = step(run, state, xb, yb, blown, loss=first_loss if perm is None else None)
        if diverged:
            return state._replace(epoch=state.epoch + 1), True
        if on_step is not None:
            on_step(run, state)
    return state._replace(epoch=state.epoch + 1), False
