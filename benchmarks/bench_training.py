"""Benchmark (not a test): the fMNIST MLP run of REFERENCE §8.2 at full scale.

784-32-32-32-10 ReLU, first 1,000 training images, 2,000 test images, full-batch GD,
400 epochs, top-10 Hessian eigenpairs (EigTracker, warm-started) every epoch. Prints
wall time, the share spent in spectra, Hessian-vector products per evaluation, and
the final numbers. Nothing is cached (``use_cache=False``).

    .venv/bin/python benchmarks/bench_training.py [--epochs 400] [--k 10] [--lr 0.1]
        [--threads 1 2] [--tol 1e-3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from instab_lib.train import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    args = ap.parse_args()
    os.environ.setdefault("INSTAB_QUIET", "1")
    cfg = TrainConfig(dataset="fashion-mnist", n_train=1000, n_test=2000, model="mlp",
                      model_kwargs={"depth": 3, "width": 32}, lr=args.lr, epochs=args.epochs,
                      target_train_acc=None, eval_every=1, k_top=args.k, eig_tol=args.tol, seed=0)
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print("| threads | epochs | wall (s) | spectra (s) | spectra share | HVPs / eval (median) "
          "| ms / HVP | max S | final train acc | final test acc |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for th in args.threads:
        t0 = time.perf_counter()
        r = train(cfg, use_cache=False, progress=False, num_threads=th)
        wall = time.perf_counter() - t0
        sp = r.spectra
        mv = sp["n_matvec"]
        ms_hvp = 1e3 * r.spectra_time_s / max(1.0, float(mv.sum()))
        fin = r.final()
        print(f"| {th} | {r.epochs_run} | {wall:.1f} | {r.spectra_time_s:.1f} | "
              f"{r.spectra_time_s / wall:.0%} | {mv.median():.0f} | {ms_hvp:.1f} | {fin['max_sharpness']:.1f} | "
              f"{fin['train_acc']:.3f} | {fin['test_acc']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
