"""Benchmark: the papers' training runs with spectra every epoch, before and after.

Problems (real data, full-batch GD at the pages' η, nothing cached: ``use_cache=False``):
  mlp: the fMNIST MLP of REFERENCE §8.2 (784-32-32-32-10 ReLU, first 1,000 Fashion-MNIST
       training images, cross-entropy), η = 0.1 (edge of stability from epoch ~30 on),
       top-10 Hessian eigenpairs every epoch at relative residual tol 1e-3.
  vgg: VGG10_base8_BN (the CIFAR page's architecture) on the first --n-train balanced
       CIFAR-10 training images (JPEG copy offline), η = 0.2 (a point of the page's grid),
       top-k every epoch, Hessian chunks of 250 (BatchNorm in eval mode, as ``train`` does).

Variants (``--variants``), each a full run on the same trajectory (spectra do not feed back):
  before: ``EigTracker(warm="residual", lag=1)`` with double-backward products (main's defaults);
  tracker: the new tracker defaults with double-backward products;
  after: this branch's defaults (new tracker; ``HessianOperator(method="auto")``, which picks
         the closed-form ``"mlp"`` products for the MLP).

Reported: wall time, the share spent in spectra, HVPs per evaluation (median and 90th
percentile) and time per evaluation over the window ``--window`` (default: epochs 50-199 of
the MLP, the edge of stability), the largest relative residual in the window and whether
every pair was certified (``eig_converged``), and the final training loss.

    .venv/bin/python benchmarks/bench_training.py --problem mlp [--epochs 200] [--variants before after]
    .venv/bin/python benchmarks/bench_training.py --problem vgg --epochs 20 --k 5 --n-train 500
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from instab_lib import curvature  # noqa: E402
from instab_lib.experiments.train import TrainConfig, train  # noqa: E402

VARIANTS = {
    "before": ({"warm": "residual", "lag": 1}, "double_backward"),
    "tracker": ({}, "double_backward"),
    "after": ({}, None),
}


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    """Swap ``curvature.EigTracker`` / ``HessianOperator`` defaults for one run (train looks them up)."""
    tracker_kw, method = VARIANTS[name]
    Tracker, Op = curvature.EigTracker, curvature.HessianOperator

    class VTracker(Tracker):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **{**tracker_kw, **kw})

    class VOp(Op):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **kw: Any) -> None:
            if method is not None:
                kw.setdefault("method", method)
            super().__init__(*a, **kw)

    curvature.EigTracker, curvature.HessianOperator = VTracker, VOp
    try:
        yield
    finally:
        curvature.EigTracker, curvature.HessianOperator = Tracker, Op


def config(a: argparse.Namespace) -> TrainConfig:
    if a.problem == "mlp":
        return TrainConfig(dataset="fashion-mnist", n_train=a.n_train or 1000, n_test=0, model="mlp",
                           model_kwargs={"depth": 3, "width": 32}, loss="ce", optimizer="gd", lr=a.lr or 0.1,
                           epochs=a.epochs, target_train_acc=None, eval_every=1, k_top=a.k, eig_tol=a.tol, seed=0)
    return TrainConfig(dataset="cifar10", n_train=a.n_train or 500, n_test=0, balanced=True, model="vgg", loss="ce",
                       optimizer="gd", lr=a.lr or 0.2, epochs=a.epochs, target_train_acc=None, eval_every=1,
                       k_top=a.k, eig_tol=a.tol, hessian_chunk=250, seed=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problem", choices=["mlp", "vgg"], default="mlp")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--lr", type=float, default=None, help="default: 0.1 (mlp), 0.2 (vgg)")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--n-train", type=int, default=None, help="default: 1000 (mlp), 500 (vgg)")
    ap.add_argument("--window", type=int, nargs=2, default=None, help="epochs for the statistics (default: 50 199 "
                    "for the MLP's edge of stability, else 1 to the last)")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["before", "after"])
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    os.environ.setdefault("INSTAB_QUIET", "1")
    cfg = config(a)
    lo, hi = a.window or ((50, 199) if a.problem == "mlp" else (1, a.epochs))
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{a.threads} thread(s), load {os.getloadavg()[0]:.1f} at the start; {a.problem}: η = {cfg.lr:g}, "
          f"{cfg.n_train} images, top-{a.k} every epoch, tol {a.tol:g}, epochs {a.epochs}; window: epochs {lo}-{hi}")
    print("| variant | wall (s) | spectra (s) | spectra share | HVPs / eval median | HVPs / eval p90 | "
          "ms / eval median | ms / HVP | max resid_max | all certified | method | final train loss |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in a.variants:
        with variant(name):
            t0 = time.perf_counter()
            r = train(cfg, use_cache=False, progress=False, num_threads=a.threads)
            wall = time.perf_counter() - t0
            method = curvature.HessianOperator(*_probe(cfg)).method_used
        t = r.table
        w = t[(t.epoch >= lo) & (t.epoch <= hi)]
        mv, et = w["n_matvec"], w["eig_time_s"]
        print(f"| {name} | {wall:.1f} | {r.spectra_time_s:.1f} | {r.spectra_time_s / wall:.0%} | {mv.median():.0f} | "
              f"{mv.quantile(0.9, interpolation='lower'):.0f} | {1e3 * et.median():.0f} | "
              f"{1e3 * et.sum() / mv.sum():.1f} | {w['resid_max'].max():.1e} | "
              f"{'yes' if bool((w['eig_converged'] == 1).all()) else 'NO'} | {method} | "
              f"{t['train_loss'].iloc[-1]:.4f} |", flush=True)


def _probe(cfg: TrainConfig) -> tuple[Any, Any, Any]:
    """A model, loss and two samples of ``cfg``, to read which product method ``auto`` picks."""
    from instab_lib.experiments import data as data_mod
    from instab_lib.experiments import models as models_mod
    from instab_lib.experiments.train import LOSSES

    ds = data_mod.load_dataset(cfg.dataset, n_train=10, n_test=0, balanced=cfg.balanced)
    model = models_mod.build_model(cfg.model, seed=cfg.seed, **cfg.resolved_model_kwargs())
    return model, LOSSES[cfg.loss], (ds.X_train[:2], ds.y_train[:2])


if __name__ == "__main__":
    main()
