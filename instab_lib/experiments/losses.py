"""The training losses, by name: ``loss_fn(logits (N, C), y (N,) int64) -> scalar mean``."""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor

__all__ = ["LOSSES", "mse"]


def mse(out: Tensor, y: Tensor) -> Tensor:
    """``mean_{i,c} (f_c(x_i) − onehot(y_i)_c)²`` (PyTorch's ``mse_loss`` on one-hot targets;
    for the 2-class depth-1 control this gives S₀ = λ_max(Σ x̃x̃ᵀ/N) ≈ 485 on the first 200
    images, the scale of the author's 458–473)."""
    return F.mse_loss(out, F.one_hot(y, out.shape[-1]).to(out.dtype))


#: ``name → loss_fn(logits (N, C), y (N,) int64) -> scalar mean``.
LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"ce": F.cross_entropy, "mse": mse}
