"""Benchmark: the Monitor's measurement against PyHessian and curvlinops + eigsh on ResNet-18.

Run:  .venv/bin/pip install --no-deps -r benchmarks/requirements.txt   (the peers, once)
      .venv/bin/python benchmarks/bench_monitor.py                      (about 30 min on 2 cores)
      .venv/bin/python benchmarks/bench_monitor.py --crosscheck-only   (seconds: float64 agreement)

The problem (issue 22, item 5): torchvision's ResNet-18 (10 classes, BatchNorm in eval mode, float32)
with a Hessian set of the first ``--n`` (256) CIFAR-10 training images (the JPEG copy
``../shared/data/cifar10-jpeg`` offline, standardised as ``instab_lib.experiments.data`` does),
trained by ``torch.optim.SGD`` (η = ``--lr``, minibatches of 64 of the same images) for ``--steps``
steps between ``--points`` measurement points. At every point each tool computes the top-1 and
the top-5 eigenpairs of the loss Hessian on the Hessian set:

* **Monitor** (``instab_lib.Monitor``, k = 1 and k = 5, one monitor each, kept across the points:
  from the second point on its solve is warm-started from the last eigenvectors);
* **curvlinops + eigsh** (``HessianLinearOperator`` → ``scipy.sparse.linalg.eigsh(which="LA")``,
  seeded ``v0``, the loosest ``tol`` of 1e-2, 1e-3 that certifies; cold at every point);
* **PyHessian** (``hessian.eigenvalues``: power iteration with deflation, ``tol`` 1e-3 on the
  eigenvalue's relative change, ``maxIter`` ``--pyhessian-max-iter``; cold at every point).

*Certified*: every returned pair has the explicit residual ‖Hx − θx‖ ≤ 1e-3 · λ₁ (the Monitor's
own criterion) and the top value is within 1e-3 of the best λ₁ any tool found at that point.
Residuals are checked with one extra product per vector, not counted. HVPs are counted with
wrappers around each tool's product. Every measurement is timed on one process with ``--threads``
torch threads; read ratios measured in the same run.

``--crosscheck-only``: a 604-parameter MLP in float64, top-5 of each tool against
``torch.linalg.eigvalsh`` of the dense Hessian (``torch.autograd.functional.hessian``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from instab_lib import Monitor  # noqa: E402
from instab_lib.curvature import HessianOperator, flatten  # noqa: E402

from _peers import counting_pyhessian, counting_scipy_operator, true_residuals  # noqa: E402

TOL = 1e-3


def curvlinops_topk(model: nn.Module, loss: nn.Module, data: list, k: int, tols=(1e-2, 1e-3),
                    dtype: Any = np.float32) -> list[dict]:
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import eigsh

    params = [p for p in model.parameters() if p.requires_grad]
    H = HessianLinearOperator(model, loss, params, data, check_deterministic=False).to_scipy()
    out = []
    for tol in tols:
        L, cnt = counting_scipy_operator(H, dtype)
        v0 = np.random.default_rng(0).standard_normal(H.shape[0]).astype(dtype)
        t0 = time.perf_counter()
        w, U = eigsh(L, k=k, which="LA", v0=v0, tol=tol)
        order = np.argsort(w)[::-1]
        out.append({"tool": f"curvlinops + eigsh(tol={tol:g})", "hvps": cnt[0], "seconds": time.perf_counter() - t0,
                    "vals": torch.from_numpy(w[order].copy()), "vecs": torch.from_numpy(U[:, order].copy())})
    return out


def pyhessian_topk(model: nn.Module, loss: nn.Module, X: Tensor, y: Tensor, k: int, max_iter: int,
                   tol: float = TOL) -> dict:
    from pyhessian import hessian as PH

    with counting_pyhessian() as cnt:
        h = PH(model, loss, data=(X, y), cuda=False)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        vals, vecs = h.eigenvalues(maxIter=max_iter, tol=tol, top_n=k)
        seconds = time.perf_counter() - t0
    V = torch.stack([flatten(v).detach() for v in vecs], dim=1)
    order = torch.argsort(torch.tensor(vals), descending=True)
    return {"tool": f"PyHessian eigenvalues(tol={tol:g}, maxIter={max_iter})", "hvps": cnt[0], "seconds": seconds,
            "vals": torch.tensor(vals)[order], "vecs": V[:, order]}


def crosscheck() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 24), nn.Tanh(), nn.Linear(24, 4)).double()
    X, y = torch.randn(64, 20, dtype=torch.float64), torch.randint(0, 4, (64,))
    loss = nn.CrossEntropyLoss()
    params = list(model.parameters())
    shapes = [p.shape for p in params]

    def f(flat: Tensor) -> Tensor:
        chunks, i = [], 0
        for s in shapes:
            n = int(np.prod(s))
            chunks.append(flat[i:i + n].view(s))
            i += n
        out = torch.func.functional_call(model, {n: c for (n, _), c in zip(model.named_parameters(), chunks)}, (X,))
        return loss(out, y)

    theta = torch.cat([p.detach().reshape(-1) for p in params])
    dense = torch.autograd.functional.hessian(f, theta)
    exact = torch.linalg.eigvalsh(dense).flip(0)[:5]
    print(f"cross-check: MLP {theta.numel()} parameters, float64, top-5 against eigvalsh (max |Δλ|/λ₁)")
    mon = Monitor(model, loss, (X, y), k=5, tol=1e-10)
    row = mon.measure()
    print(f"  Monitor (tol 1e-10)            "
          f"{float((torch.tensor(row['eigenvalues'], dtype=torch.float64) - exact).abs().max() / exact[0]):.1e}")
    try:
        c = curvlinops_topk(model, loss, [(X, y)], 5, tols=(1e-12,), dtype=np.float64)[0]
        print(f"  curvlinops + eigsh (tol 1e-12) {float((c['vals'].double() - exact).abs().max() / exact[0]):.1e}")
    except ImportError:
        print("  curvlinops not installed")
    try:
        p = pyhessian_topk(model, loss, X, y, 5, 1000, tol=1e-10)
        print(f"  PyHessian (tol 1e-10)          {float((p['vals'].double() - exact).abs().max() / exact[0]):.1e}")
    except ImportError:
        print("  PyHessian not installed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256, help="CIFAR-10 images in the Hessian set")
    ap.add_argument("--points", type=int, default=3, help="measurement points")
    ap.add_argument("--steps", type=int, default=20, help="SGD steps between points")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--peer-points", type=int, nargs="+", default=None,
                    help="points at which the (cold) peers are measured (default: the first and the last)")
    ap.add_argument("--pyhessian-max-iter", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--crosscheck-only", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    crosscheck()
    if a.crosscheck_only:
        return
    import torchvision

    from instab_lib.experiments.data import load_dataset

    ds = load_dataset("cifar10", n_train=a.n, n_test=0)
    X, y = ds.X_train, ds.y_train
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()  # BatchNorm with running statistics throughout
    loss = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=a.lr)
    dim = sum(p.numel() for p in model.parameters())
    print(f"\nResNet-18 ({dim:,} parameters), Hessian set: first {a.n} CIFAR-10 training images ({ds.source}), "
          f"float32, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f} at the start")
    monitors = {k: Monitor(model, loss, [(X, y)], optimizer=opt, k=k, every=10 ** 9, tol=TOL) for k in a.ks}
    check = HessianOperator(model, loss, [(X, y)])
    peer_points = set(a.peer_points if a.peer_points is not None else [0, a.points - 1])
    rows = []
    g = torch.Generator().manual_seed(0)
    for point in range(a.points):
        if point:
            model.train()
            for _ in range(a.steps):
                idx = torch.randint(0, a.n, (64,), generator=g)
                opt.zero_grad()
                loss(model(X[idx]), y[idx]).backward()
                opt.step()
            model.eval()
        found = []
        for k, mon in monitors.items():
            t0 = time.perf_counter()
            row = mon.measure()
            V = mon.tracker.prev.eigenvectors if mon.tracker.prev is not None else None
            found.append({"tool": f"Monitor ({'warm' if row['warm'] else 'cold'})", "k": k, "hvps": row["hvps"],
                          "seconds": time.perf_counter() - t0, "vals": torch.tensor(row["eigenvalues"]), "vecs": V})
        if point in peer_points:
            for k in a.ks:
                for r in curvlinops_topk(model, loss, [(X, y)], k):
                    found.append({**r, "k": k})
                    if float(true_residuals(check, r["vals"], r["vecs"]).max()) <= TOL * float(r["vals"][0]):
                        break  # the loosest tolerance that certifies
                found.append({**pyhessian_topk(model, loss, X, y, k, a.pyhessian_max_iter), "k": k})
        lam1 = max(float(f["vals"][0]) for f in found)
        for f in found:
            res = true_residuals(check, f["vals"][:f["k"]], f["vecs"][:, :f["k"]])
            worst = float(res.max()) / lam1
            top_ok = abs(float(f["vals"][0]) - lam1) <= TOL * lam1
            rows.append({"point": point, "λ1": lam1, "k": f["k"], "tool": f["tool"], "hvps": f["hvps"],
                         "seconds": f["seconds"], "max ‖r‖/λ1": worst,
                         "certified": "yes" if worst <= TOL and top_ok else "no"})
            r = rows[-1]
            print(f"point {point}  λ1 {lam1:9.2f}  k={r['k']}  {r['tool']:44s} {r['hvps']:5d} HVPs "
                  f"{r['seconds']:8.1f} s  residual {worst:.1e}  certified {r['certified']}", flush=True)
    print("\n| point | λ₁ | k | tool | HVPs | seconds | max ‖r‖/λ₁ | certified |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['point']} | {r['λ1']:.1f} | {r['k']} | {r['tool']} | {r['hvps']} | {r['seconds']:.1f} | "
              f"{r['max ‖r‖/λ1']:.1e} | {r['certified']} |")


if __name__ == "__main__":
    main()
