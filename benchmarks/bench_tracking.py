"""Benchmark: eigen-tracking strategies replayed on the papers' edge-of-stability run.

The run (fMNIST MLP 784-32-32-32-10 ReLU, first 1,000 Fashion-MNIST images, CE, full-batch GD
η = 0.1, 200 epochs) is trained once without spectra, saving θ at every epoch; since the
spectra never feed back into training, every strategy then sees exactly the operators
``train(TrainConfig(..., eval_every=1, k_top=10, eig_tol=1e-3))`` would hand its tracker.
HVP counts are deterministic (seeded) and load-independent.

Strategies (each one tracker over epochs 0-199; statistics over --window, default 50-199):
  cold lanczos: a fresh seeded random-start :func:`lanczos` every epoch;
  EigTracker(warm, lag, block_size) for warm ∈ {residual, krylov}, lag ∈ {1, auto}, ….
``--diagnose`` (every 3rd epoch of the window, from the exact top-10 eigenvectors ``X_{t−1}``,
``X_{t−2}``, ``X_{t−4}`` of earlier steps, computed to tol 1e-5):
  Rayleigh–Ritz residuals ``max_i ‖H_t x_i − θ_i x_i‖ / θ_1`` of ``X_{t−1}`` and ``X_{t−2}``
  under ``H_t`` (why the period-2 start pays), the singular values of the ``X_{t−2}`` residual
  block (why a few extra directions cannot fix all ten pairs), Rayleigh–Ritz on ``X_{t−2}``
  enlarged by its 5 leading residual directions (an oracle: 10 + 5 products after the 10 for
  the residuals) and on the block Krylov space ``[X_{t−2}, R, R₂]`` (30 products, a degree-2
  filter of the previous vectors), and the HVPs a warm Krylov solve needs from other start
  vectors (weights, extrapolation ``2X_{t−2} − X_{t−4}``, guard vectors).

``--honest-stop TOL …``: ``lanczos(k=10, tol=TOL)`` on the last epoch's Hessian (float32's
rounding level there is ≈ 1e-6 of λ_max): products spent, time, the warning and the attained
residual (main spent its whole 500-product budget whenever TOL was not attained).

    .venv/bin/python benchmarks/bench_tracking.py [--epochs 200] [--window 50 199] [--diagnose] [--honest-stop]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from instab_lib import curvature  # noqa: E402
from instab_lib.experiments.hooks import HARNESS_WARM_EXTRA  # noqa: E402
from instab_lib.experiments.models import build_model  # noqa: E402
from instab_lib.experiments.train import LOSSES, TrainConfig, train  # noqa: E402

STRATEGIES = [
    ("before: EigTracker(warm='residual', lag=1)", {"warm": "residual", "lag": 1}),
    ("EigTracker(warm='residual', lag='auto')", {"warm": "residual", "lag": "auto"}),
    ("EigTracker(warm='krylov', lag=1)", {"warm": "krylov", "lag": 1}),
    ("after: EigTracker() = warm='krylov', lag='auto'", {}),
    ("EigTracker(block_size=2)", {"block_size": 2}),
    ("EigTracker(block_size=3)", {"block_size": 3}),
]


def trajectory(epochs: int) -> tuple[list[torch.Tensor], tuple[torch.Tensor, torch.Tensor], TrainConfig]:
    """θ at epochs 0..epochs of the run (trained without spectra) and the Hessian data."""
    cfg = TrainConfig(dataset="fashion-mnist", n_train=1000, n_test=0, model="mlp",
                      model_kwargs={"depth": 3, "width": 32}, loss="ce", optimizer="gd", lr=0.1, epochs=epochs,
                      target_train_acc=None, eval_every=0, k_top=0, snapshot_epochs=tuple(range(epochs + 1)), seed=0)
    with tempfile.TemporaryDirectory() as d:
        r = train(cfg, cache_dir=d, progress=False, num_threads=1)
        thetas = [r.snapshot(e)["theta"] for e in range(epochs + 1)]
    from instab_lib.experiments.data import load_dataset

    ds = load_dataset("fashion-mnist", n_train=1000, n_test=0)
    return thetas, (ds.X_train, ds.y_train), cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--window", type=int, nargs=2, default=[50, 199])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--diagnose", action="store_true")
    ap.add_argument("--no-strategies", action="store_true", help="skip the strategy table")
    ap.add_argument("--honest-stop", type=float, nargs="*", default=None, metavar="TOL")
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("INSTAB_QUIET", "1")
    thetas, data, cfg = trajectory(a.epochs - 1)
    model = build_model("mlp", seed=0, depth=3, width=32)
    params = list(model.parameters())

    def op_at(e: int) -> curvature.HessianOperator:
        with torch.no_grad():
            for p, q in zip(params, curvature.unflatten_like(thetas[e], params)):
                p.copy_(q)
        return curvature.HessianOperator(model, LOSSES["ce"], data)

    lo, hi = a.window
    print(f"# torch {torch.__version__}, load {os.getloadavg()[0]:.1f}; top-{a.k}, tol {a.tol:g}, "
          f"epochs 0-{a.epochs - 1}, statistics over epochs {lo}-{hi}")
    print("| strategy | HVPs / eval median | p90 | mean | max | max ‖r‖/θ₁ | all certified | start from t−2 | s (this run) |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = [] if a.no_strategies else [("cold lanczos (random start, new seed each epoch)", None)] + STRATEGIES
    for name, kw in rows:
        # the harness's floor (HARNESS_WARM_EXTRA), with which RESULTS.md's rows were measured
        tr = (curvature.EigTracker(a.k, "LA", tol=a.tol, seed=0, **{"warm_extra": HARNESS_WARM_EXTRA, **kw})
              if kw is not None else None)
        mv, res, conv, lag2 = [], [], True, 0
        t0 = time.perf_counter()
        for e in range(a.epochs):
            r = tr.update(op_at(e)) if tr is not None else curvature.lanczos(op_at(e), a.k, tol=a.tol, seed=e)
            if lo <= e <= hi:
                mv.append(r.n_matvec)
                res.append(float(r.residuals.max()) / r.scale)
                conv = conv and r.converged
                lag2 += int(r.extra.get("lag", 0) == 2)
        s = sorted(mv)
        print(f"| {name} | {statistics.median(s):.0f} | {s[int(0.9 * (len(s) - 1))]} | {sum(s) / len(s):.1f} | {s[-1]} | "
              f"{max(res):.1e} | {'yes' if conv else 'NO'} | {lag2}/{len(s)} | {time.perf_counter() - t0:.0f} |",
              flush=True)
    if a.diagnose:
        diagnose(op_at, a.k, lo, hi, a.tol)
    for tol in a.honest_stop or []:
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            r = curvature.lanczos(op_at(a.epochs - 1), a.k, tol=tol, seed=0)
            dt = time.perf_counter() - t0
        msgs = [str(w.message) for w in caught if issubclass(w.category, curvature.UnattainableToleranceWarning)]
        print(f"\nlanczos(k={a.k}, tol={tol:g}) at epoch {a.epochs - 1} (load {os.getloadavg()[0]:.1f}): "
              f"{r.n_matvec} products, {dt:.2f} s, converged={r.converged}, attained {r.extra['attained']:.2e}, "
              f"stagnated={r.extra['stagnated']}\nwarning: {msgs[0] if msgs else None}")


def diagnose(op_at, k: int, lo: int, hi: int, tol: float) -> None:  # type: ignore[no-untyped-def]
    """Rayleigh–Ritz residuals of exact previous eigenvectors, and warm Krylov starts built from them."""
    from instab_lib.curvature.krylov import _thick_restart_lanczos
    from instab_lib.curvature.results import _generator

    epochs = list(range(lo, hi + 1, 3))
    need = sorted({e - d for e in epochs for d in (1, 2, 4)})
    ref = {e: curvature.lanczos(op_at(e), k + 2, tol=1e-5, seed=e) for e in need}

    def rr(op: curvature.HessianOperator, B: torch.Tensor, full: bool = False) -> Any:
        """Rayleigh–Ritz on span(B): top-k relative residuals, singular values of their block."""
        B = torch.linalg.qr(B)[0]
        W = op.matmat(B)
        th, Y = torch.linalg.eigh(0.5 * (B.T @ W + W.T @ B))
        o = th.argsort(descending=True)[:k]
        R = W @ Y[:, o] - (B @ Y[:, o]) * th[o]
        rel, sv = R.norm(dim=0) / th.abs().max(), torch.linalg.svdvals(R) / th.abs().max()
        return (rel, sv, B @ Y[:, o], R) if full else (rel, sv)

    def krylov(op: curvature.HessianOperator, v0: torch.Tensor) -> int:
        run = _thick_restart_lanczos(op, [("LA", k)], tol, 300, 30, v0[:, None], _generator(0), min_extra=3)
        return run.n_matvec

    def align(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:  # rotate B's columns onto A's (Procrustes)
        U, _, Vh = torch.linalg.svd(B.T @ A)
        return B @ (U @ Vh)

    r1, r2, sv, oracle, cheb = [], [], [], [], []
    starts: dict[str, list[int]] = {}
    for e in epochs:
        op = op_at(e)
        X1, X2, X4 = (ref[e - d].eigenvectors[:, :k] for d in (1, 2, 4))
        th2, X2g = ref[e - 2].eigenvalues[:k], ref[e - 2].eigenvectors
        r1.append(float(rr(op, X1)[0].max()))
        a2, s2, Xr, R = rr(op, X2, full=True)
        r2.append(float(a2.max()))
        sv.append(s2)
        U = torch.linalg.svd(R, full_matrices=False)[0]
        oracle.append(float(rr(op, torch.cat([X2, U[:, :5]], dim=1))[0].max()))
        R2 = rr(op, torch.cat([Xr, R], dim=1), full=True)[3]
        cheb.append(float(rr(op, torch.cat([Xr, R, R2], dim=1))[0].max()))
        for name, v0 in (("Σ columns of X_{t−1}", X1.sum(1)), ("Σ columns of X_{t−2} (the tracker's start)", X2.sum(1)),
                         ("X_{t−2} weighted by 1/θ", X2 @ (1 / th2)),
                         ("Σ columns of 2X_{t−2} − X_{t−4} (extrapolated)", (2 * X2 - align(X2, X4)).sum(1)),
                         ("Σ columns of X_{t−2} and 2 guard vectors", X2g.sum(1))):
            starts.setdefault(name, []).append(krylov(op, v0))
    S = torch.stack(sv).median(dim=0).values
    print(f"\nRayleigh–Ritz on the exact top-{k} of step t−1 under H_t: median max ‖r‖/θ₁ {statistics.median(r1):.1e}; "
          f"of step t−2: {statistics.median(r2):.1e} ({len(epochs)} epochs of {lo}-{hi})")
    print("median singular values of the t−2 residual block / θ₁: " + ", ".join(f"{x:.0e}" for x in S.tolist()))
    for name, v in (("[X_{t−2}, 5 leading residual directions] (oracle)", oracle), ("[X_{t−2}, R, R₂] (30 products)", cheb)):
        v = sorted(v)
        print(f"Rayleigh–Ritz on {name}: max ‖r‖/θ₁ median {statistics.median(v):.1e}, p90 {v[int(0.9 * (len(v) - 1))]:.1e}, "
              f"≤ tol in {sum(x <= tol for x in v)}/{len(v)}")
    print("\n| warm Krylov start v₀ (exact earlier eigenvectors) | HVPs median | p90 | mean |\n|---|---|---|---|")
    for name, v in starts.items():
        v = sorted(v)
        print(f"| {name} | {statistics.median(v):.0f} | {v[int(0.9 * (len(v) - 1))]} | {sum(v) / len(v):.1f} |")


if __name__ == "__main__":
    main()
