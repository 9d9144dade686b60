"""The one weighted loss of the curvature package, the model's modes, and the loss's reduction.

* :func:`weighted_loss` — ``w · loss_fn(f(θ; inputs), targets)`` with the model evaluated
  functionally (``torch.func.functional_call`` for an ``nn.Module``, ``model(params, inputs)``
  for a functional model). Every Hessian product, gradient and dense ground truth of the
  package is built from it (and :mod:`instab_lib.landscape` may use it too).
* :class:`ModelMode` — the model's mode while the curvature is measured: ``"eval"``
  (``model.eval()``: BatchNorm with its running statistics, Dropout off) or ``"train"``
  (normalisation layers with batch statistics, their running statistics passed as ``None``
  so nothing of the model is updated; Dropout still off), attention on its twice-differentiable
  math kernel. Modes are restored on exit.
* :func:`resolve_reduction` — whether ``loss_fn`` averages or sums over the samples of a
  batch: read from ``loss_fn.reduction`` where it has one (PyTorch's functional losses: a mean),
  else measured by evaluating the loss on a batch and on that batch repeated twice (a mean keeps
  its value, a sum doubles); what cannot be measured must be declared.
* :func:`resolve_params` — the parameters ``θ`` (names and tensors) of a module or a functional model.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.modules.batchnorm import _NormBase

from .data import cat_twice, tree_leaves

#: ``loss_fn.reduction`` values that average over the samples (KL's ``batchmean`` too).
_MEAN_NAMES = ("mean", "batchmean")
#: PyTorch's functional losses, whose default reduction (the one a bare reference uses) is a mean.
FUNCTIONAL_MEANS = frozenset({
    F.cross_entropy, F.nll_loss, F.mse_loss, F.l1_loss, F.smooth_l1_loss, F.huber_loss,
    F.binary_cross_entropy, F.binary_cross_entropy_with_logits,
})
REDUCTIONS = ("mean", "sum")
BN_MODES = ("eval", "train")


def weighted_loss(
    model: nn.Module | Callable[[Mapping[str, Tensor], Any], Any],
    loss_fn: Callable[[Any, Any], Tensor],
    params: Mapping[str, Tensor],
    inputs: Any,
    targets: Any,
    weight: float = 1.0,
    buffers: Mapping[str, Tensor | None] | None = None,
) -> Tensor:
    """``weight · loss_fn(f(θ; inputs), targets)``, a scalar, differentiable in ``params``.

    ``f`` is ``torch.func.functional_call(model, (params, buffers), (inputs,))`` for an
    ``nn.Module`` (the parameters not named in ``params`` are the module's own; ``buffers``
    override the module's buffers, ``None`` entries included) and ``model(params, inputs)``
    for a functional model (a callable taking the parameter dict and the inputs; ``buffers``
    must then be ``None``). ``inputs`` go to the model as one argument, whatever they are
    (a tensor, a dict, a tuple). With ``weight = n_c/N`` and a mean-reduced ``loss_fn`` the
    sum over batches ``c`` is the mean loss on all ``N`` samples.
    """
    if isinstance(model, nn.Module):
        tensors: Any = dict(params) if buffers is None else (dict(params), dict(buffers))
        out = torch.func.functional_call(model, tensors, (inputs,))
    else:
        if buffers:
            raise ValueError("weighted_loss: a functional model takes no buffers")
        out = model(params, inputs)
    return weight * loss_fn(out, targets)


class ModelMode:
    """Context manager: the model's mode while the curvature is measured, restored on exit.

    ``"eval"``: ``model.eval()`` — BatchNorm uses its running statistics, Dropout is off (the
    Hessian of the deterministic network the model is at test time). ``"train"``: ``model.eval()``,
    then every normalisation layer (``torch.nn.modules.batchnorm._NormBase``: BatchNorm, and
    InstanceNorm with running statistics) in training mode, so it normalises with the statistics
    of the batch it is given; :attr:`buffers` maps those layers' ``running_mean``,
    ``running_var`` and ``num_batches_tracked`` to ``None`` for :func:`weighted_loss`, so the
    forward passes update nothing. Dropout stays off in both modes (a Hessian of a random
    function is not measured). Every module's ``training`` flag is restored on exit. A model
    that overrides ``train()`` (e.g. ``adaptive.TrainModeView``) keeps its own behaviour.
    A functional model has no modes (only ``"eval"`` is accepted). For every model,
    ``scaled_dot_product_attention`` runs on its math kernel inside the context (the fused
    flash and memory-efficient kernels have no second derivative; the function is the same).
    """

    def __init__(self, model: Any, bn_mode: str = "eval") -> None:
        if bn_mode not in BN_MODES:
            raise ValueError(f"unknown bn_mode {bn_mode!r}; expected one of {BN_MODES}")
        if bn_mode == "train" and not isinstance(model, nn.Module):
            raise ValueError("bn_mode='train' needs an nn.Module model (a functional model has no modes)")
        self.model, self.bn_mode = model, bn_mode
        self.modes: list[tuple[nn.Module, bool]] = []
        self.depth = 0  # re-entrant: only the outermost ``with`` saves and restores
        self.stack = contextlib.ExitStack()
        self.buffers: dict[str, None] | None = None
        if bn_mode == "train":
            self.buffers = {
                f"{name}.{b}" if name else b: None
                for name, m in model.named_modules() if isinstance(m, _NormBase)
                for b in ("running_mean", "running_var", "num_batches_tracked") if getattr(m, b, None) is not None
            }

    def __enter__(self) -> "ModelMode":
        self.depth += 1
        if self.depth == 1:
            self.stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
        if self.depth == 1 and isinstance(self.model, nn.Module):
            self.modes = [(m, m.training) for m in self.model.modules()]
            self.model.eval()
            if self.bn_mode == "train":
                for m in self.model.modules():
                    if isinstance(m, _NormBase):
                        m.training = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        if self.depth == 0:
            for m, mode in self.modes:
                m.training = mode
            self.modes = []
            self.stack.close()


def resolve_params(model: Any, params: Any) -> tuple[list[str], list[Tensor]]:
    """``(names, tensors)`` of the parameters ``θ`` (the order of the flat vectors).

    ``model`` an ``nn.Module``: ``params=None`` takes its parameters with ``requires_grad``
    (each tensor once: tied weights count once); a sequence of tensors must be parameters of the
    model (any order, frozen ones allowed); a dict ``{name: tensor}`` replaces those named
    parameters by the given tensors. A functional model needs the dict. One-line ``ValueError``s.
    """
    if isinstance(params, Mapping):
        names, tensors = [str(k) for k in params], list(params.values())
        if isinstance(model, nn.Module):
            own = dict(model.named_parameters(remove_duplicate=False))
            missing = [n for n in names if n not in own]
            if missing:
                raise ValueError(f"params: {missing[0]!r} is not a parameter name of the model")
    elif not isinstance(model, nn.Module):
        if not callable(model):
            raise ValueError(f"model must be an nn.Module or a callable (params, inputs), got {type(model).__name__}")
        raise ValueError("a functional model needs params={name: tensor} (the dict it is called with)")
    elif params is None:
        pairs = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not pairs:
            raise ValueError("the model has no trainable parameters (none with requires_grad=True)")
        names, tensors = [n for n, _ in pairs], [p for _, p in pairs]
    else:
        tensors = list(params)
        ids = {id(p): n for n, p in model.named_parameters()}
        if not all(isinstance(p, Tensor) for p in tensors):
            raise ValueError("params: every entry must be a tensor (a parameter of the model)")
        if any(id(p) not in ids for p in tensors):
            raise ValueError("params: every entry must be a parameter of the model (model.named_parameters())")
        names = [ids[id(p)] for p in tensors]
    if not tensors or not all(isinstance(p, Tensor) and p.is_floating_point() for p in tensors):
        raise ValueError("params: need one or more floating-point tensors")
    if len({id(p) for p in tensors}) != len(tensors):
        raise ValueError("params: a tensor appears twice")
    if len({p.dtype for p in tensors}) != 1 or len({p.device for p in tensors}) != 1:
        raise ValueError("params: all parameters must share one dtype and one device")
    return names, tensors


def _declared(loss_fn: Any) -> str | None:
    """``"mean"``/``"sum"`` from ``loss_fn.reduction``; ``None`` if it has none; ValueError otherwise."""
    red = getattr(loss_fn, "reduction", None)
    if not isinstance(red, str):
        return None
    if red in _MEAN_NAMES:
        return "mean"
    if red == "sum":
        return "sum"
    raise ValueError(f"loss_fn must return a scalar (a mean or a sum over the batch), got reduction={red!r}")


def _scalar(value: Any) -> float:
    if not isinstance(value, Tensor) or value.numel() != 1 or value.dim() > 1:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"loss_fn must return a scalar (a mean or a sum over the batch), got {shape}")
    return float(value.detach())


def _measured(once: float, twice: float, dtype: torch.dtype) -> str | None:
    """``"mean"`` if ``twice ≈ once``, ``"sum"`` if ``twice ≈ 2·once``, else ``None`` (also for a zero
    or non-finite loss, which cannot tell)."""
    rtol = 1000 * torch.finfo(dtype).eps if dtype.is_floating_point else 1e-6
    if not (math.isfinite(once) and math.isfinite(twice)) or abs(once) <= 1e3 * torch.finfo(torch.float32).tiny:
        return None
    if abs(twice - once) <= rtol * abs(once):
        return "mean"
    if abs(twice - 2 * once) <= rtol * abs(once):
        return "sum"
    return None


def _twice(evaluate: Callable[[Any, Any], Tensor], inputs: Any, targets: Any) -> tuple[float | None, str]:
    """The loss on the batch repeated twice along dim 0, or ``None`` and why it could not be evaluated."""
    doubled = cat_twice((inputs, targets))
    if doubled is None:
        return None, "a 0-d tensor in the batch cannot be repeated"
    try:
        return _scalar(evaluate(*doubled)), ""
    except (RuntimeError, ValueError, IndexError, TypeError) as err:  # dim 0 is not the samples, say
        return None, f"the batch repeated twice along dim 0 fails: {type(err).__name__}"


def resolve_reduction(loss_fn: Any, declared: str | None, evaluate: Callable[[Any, Any], Tensor],
                      inputs: Any, targets: Any, dtype: torch.dtype) -> str:
    """``"mean"`` or ``"sum"``: how ``loss_fn`` reduces over the samples of a batch.

    ``evaluate(inputs, targets)`` is the loss without gradient (it must be a scalar). The reduction is
    read from ``loss_fn.reduction`` where the loss has one (``nn.CrossEntropyLoss``, ``nn.MSELoss``,
    …; ``"batchmean"`` counts as a mean), taken as ``"mean"`` for PyTorch's functional losses
    (:data:`FUNCTIONAL_MEANS`, their default), and otherwise measured: the loss on the batch
    repeated twice along dim 0 (:func:`~.data.cat_twice`) keeps its value for a mean and doubles
    for a sum. ``declared`` (the operator's ``loss_reduction``) must agree with what is read or
    measured (else a one-line ``ValueError``) and decides where nothing can be measured (a zero
    loss, a batch whose dim 0 is not its samples, a loss that is neither); without it, such a
    loss is refused with a one-line ``ValueError``.
    """
    if declared is not None and declared not in REDUCTIONS:
        raise ValueError(f"unknown loss_reduction {declared!r}; expected one of {REDUCTIONS} or None")
    attr = _declared(loss_fn)
    once = _scalar(evaluate(inputs, targets))
    if attr is not None or loss_fn in FUNCTIONAL_MEANS:
        found = attr or "mean"
        if declared is not None and declared != found:
            what = f"has reduction={getattr(loss_fn, 'reduction')!r}" if attr else "averages over the batch"
            raise ValueError(f"loss_fn {what} but loss_reduction={declared!r}")
        return found
    twice, why = _twice(evaluate, inputs, targets)
    measured = None if twice is None else _measured(once, twice, dtype)
    if measured is not None and declared is not None and measured != declared:
        raise ValueError(
            f"loss_fn {'sums' if measured == 'sum' else 'averages'} over the batch (on the batch repeated twice "
            f"it is {twice:.6g} against {once:.6g}) but loss_reduction={declared!r}; pass loss_reduction={measured!r}"
        )
    if measured is None and declared is None:
        why = why or f"on the batch repeated twice along dim 0 it is {twice:.6g} against {once:.6g}"
        raise ValueError(f"cannot tell whether loss_fn averages or sums over the samples ({why}); "
                         "pass loss_reduction='mean' or 'sum'")
    return measured or declared or "mean"


def float_leaves(tree: Any) -> list[Tensor]:
    """The floating-point tensors in ``tree`` (for :mod:`~.hessian`'s forward-over-reverse workaround)."""
    return [t for t in tree_leaves(tree) if t.is_floating_point()]
