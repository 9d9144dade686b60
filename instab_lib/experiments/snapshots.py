r"""The sharpness of a BatchNorm network in train mode at a run's saved snapshots.

:class:`~instab_lib.curvature.HessianOperator` puts a model in eval mode (BatchNorm with
its running statistics); ``train``'s own spectra are taken that way. The function
(S)GD steps on is the train-mode one (batch statistics): :class:`TrainModeView` keeps a
model in train mode for the operator, and :func:`snapshot_sharpness` takes the top
eigenvalue at the snapshots (``config.snapshot_epochs``) of a run.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from .seeding import shifted

__all__ = ["TrainModeView", "snapshot_sharpness"]


class TrainModeView(torch.nn.Module):
    """A view of ``model`` that stays in training mode when asked to switch to eval mode.

    :class:`~instab_lib.curvature.HessianOperator` puts a model in eval mode, where
    BatchNorm uses its running statistics. The function (mini)batch GD descends is the
    train-mode one (batch statistics), so its Hessian is the one that decides stability:
    wrap the model in this view to get it. With chunks of ``b`` images each chunk is
    normalised with its own statistics, i.e. the Hessian of the mean of per-chunk losses:
    the objective of minibatch SGD with batch size ``b`` (one fixed partition); use one
    chunk for full-batch GD. Forward passes in train mode update the running statistics
    of the wrapped model (momentum); use it on a copy that is not trained further.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.inner.train()

    def train(self, mode: bool = True) -> "TrainModeView":  # noqa: ARG002 - the point of the class
        self.training = True
        self.inner.train()
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner(*args, **kwargs)


def snapshot_sharpness(run: Any, epochs: Iterable[int], *, hessian_n: int | None = None,
                       chunk: int | None = None, train_mode: bool = True, tol: float = 1e-2) -> dict[int, float]:
    r"""Top Hessian eigenvalue at the saved snapshots (``config.snapshot_epochs``) of a run.

    ``train_mode=True``: BatchNorm with batch statistics (:class:`TrainModeView`), chunks
    of ``chunk`` images (default: the run's batch size, else all ``hessian_n``); the
    snapshot's trainable parameters are all that is needed. ``train_mode=False`` is
    the eval-mode Hessian, which for a BatchNorm network also needs the running
    statistics, which snapshots do not keep: it raises ``ValueError`` for such a model.
    Epochs without a snapshot (e.g. after an early stop) are skipped.
    """
    from .. import curvature
    from .losses import LOSSES
    from .loop import init_run, load_flat_parameters

    cfg = run.config
    built, _ = init_run(cfg)
    hn = hessian_n or cfg.hessian_n or len(built.train[1])
    X, y = built.train[0][:hn], built.train[1][:hn]
    model = built.model
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if not train_mode and has_bn:
        raise ValueError("snapshots keep no BatchNorm running statistics: the eval-mode Hessian needs them")
    params = [p for p in model.parameters() if p.requires_grad]
    net = TrainModeView(model) if train_mode else model
    size = chunk or cfg.batch_size or hn
    out: dict[int, float] = {}
    v0 = None
    for e in sorted(int(e) for e in epochs):
        try:
            snap = run.snapshot(e)
        except FileNotFoundError:
            continue
        load_flat_parameters(params, snap["theta"])
        op = curvature.HessianOperator(net, LOSSES[cfg.loss], (X, y), chunk_size=size)
        r = curvature.lanczos(op, 1, "LA", tol=tol, seed=shifted(cfg.seed), v0=v0)
        v0 = r.eigenvectors[:, 0]
        out[e] = float(r.eigenvalues[0])
        op.release()
    return out
