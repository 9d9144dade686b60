"""Benchmark: Hessian-vector products, block products, top-10 eigenpairs and warm tracking vs peers.

Run:  .venv/bin/python benchmarks/bench_curvature.py               (real data, a few minutes on 2 cores)
      .venv/bin/python benchmarks/bench_curvature.py --data random (the earlier random-input problems)
      .venv/bin/python benchmarks/bench_curvature.py --large       (CNN on 5,120 images, CNN tracking)

Problems (``--data real``, the default: the papers' data):
  mlp: fMNIST MLP 784-32-32-32-10 ReLU (``models.build_model("mlp", seed=0)``) on the first
       1,000 Fashion-MNIST training images (standardised as ``instab_lib.experiments.data`` does), CE.
  cnn: small CNN on 32×32×3 (three conv3×3 + pool stages 3→16→32→32, linear 512→10) on the
       first --cnn-n CIFAR-10 training images (default 512; 5,120 with --large; the JPEG copy
       ``../shared/data/cifar10-jpeg`` offline), chunks of 256.
``--data random``: the same shapes with Gaussian inputs and random labels (the first tables
of benchmarks/RESULTS.md). Tracking runs full-batch GD at the papers' η (--lrs, default 0.1).
Peers: PyHessian, curvlinops (+ scipy eigsh with seeded v0), hessian-eigenthings v1.
HVPs are counted with wrappers around each peer's product; residuals of every
returned eigenpair are checked with this library's operator (not counted).
Timings are medians (block products: min and median) over --repeats runs on a shared,
noisy machine: read ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

from instab_lib.curvature import EigTracker, HessianOperator, UnattainableToleranceWarning, flatten, lanczos  # noqa: E402

from instab_lib.experiments.hooks import HARNESS_WARM_EXTRA  # noqa: E402

from _peers import counting_pyhessian, counting_scipy_operator, true_residuals  # noqa: E402


TARGET = 1e-4
K = 10


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(512, 10))


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


class Problem:
    def __init__(self, name: str, model: nn.Module, X: Tensor, y: Tensor, chunk: int | None) -> None:
        self.name, self.model, self.X, self.y, self.chunk = name, model, X, y, chunk
        self.loss = nn.CrossEntropyLoss()
        self.chunks = [(X, y)] if chunk is None else [(X[i:i + chunk], y[i:i + chunk]) for i in range(0, len(X), chunk)]

    def op(self, method: str = "auto", **kw: Any) -> HessianOperator:
        return HessianOperator(self.model, self.loss, self.chunks, method=method, **kw)


# --------------------------------------------------------------------------- #
def hvp_table(p: Problem, repeats: int) -> list[tuple[str, str, str]]:
    params = [q for q in p.model.parameters()]

    def grad() -> None:
        for X, y in p.chunks:
            torch.autograd.grad(p.loss(p.model(X), y) * len(X) / len(p.X), params)

    tg = median_time(grad, repeats)
    rows = [("gradient (reference)", f"{1e3 * tg:.1f}", "1.00")]
    dim = sum(q.numel() for q in params)
    v = torch.randn(dim)

    def add(name: str, fn: Callable[[], Any]) -> None:
        try:
            t = median_time(fn, repeats)
            rows.append((name, f"{1e3 * t:.1f}", f"{t / tg:.2f}"))
        except Exception as e:  # noqa: BLE001
            rows.append((name, "error", f"{type(e).__name__}: {str(e)[:60]}"))

    op = p.op("double_backward")
    add("instab_lib double-backward (graph reused)", lambda: op.matvec(v))
    op_fr = p.op("forward_over_reverse")
    add("instab_lib forward-over-reverse", lambda: op_fr.matvec(v))
    if p.op().method_used == "mlp":
        op_mlp = p.op("mlp")
        add("instab_lib closed-form MLP product (method='mlp')", lambda: op_mlp.matvec(v))
    try:
        from pyhessian import hessian as PH
        from pyhessian.utils import hessian_vector_product

        if p.chunk is None:
            h = PH(p.model, p.loss, data=(p.X, p.y), cuda=False)
            vs = [torch.randn_like(q) for q in h.params]
            add("PyHessian (single batch, graph reused)", lambda: hessian_vector_product(h.gradsH, h.params, vs))
        else:
            h = PH(p.model, p.loss, dataloader=p.chunks, cuda=False)
            vs = [torch.randn_like(q) for q in h.params]
            add("PyHessian (dataloader, graph rebuilt)", lambda: h.dataloader_hv_product(vs))
    except Exception as e:  # noqa: BLE001
        rows.append(("PyHessian", "error", f"{type(e).__name__}: {str(e)[:60]}"))
    try:
        from curvlinops import HessianLinearOperator

        H = HessianLinearOperator(p.model, p.loss, params, p.chunks, check_deterministic=False)
        add("curvlinops HessianLinearOperator (fwd-over-rev)", lambda: H @ v)
    except Exception as e:  # noqa: BLE001
        rows.append(("curvlinops", "error", f"{type(e).__name__}: {str(e)[:60]}"))
    try:
        import hessian_eigenthings as he

        E = he.HessianOperator(p.model, p.chunks, he.loss_fns.standard.supervised_loss(p.loss))
        add("hessian-eigenthings HessianOperator (autograd)", lambda: E.matvec(v))
    except Exception as e:  # noqa: BLE001
        rows.append(("hessian-eigenthings", "error", f"{type(e).__name__}: {str(e)[:60]}"))
    return rows


# --------------------------------------------------------------------------- #
def block_table(p: Problem, repeats: int, k: int = K) -> list[tuple[str, ...]]:
    """``H V`` for ``V`` of ``k`` columns: time per column against ``k`` single products.

    Reference: a loop of ``k`` calls ``matvec`` with double-backward (the product every
    solver used per column before). The variants run interleaved, ``repeats`` rounds;
    ratios are of the minima (and medians) over the rounds of this run.
    """
    dim = sum(q.numel() for q in p.model.parameters())
    V = torch.randn(dim, k, generator=torch.Generator().manual_seed(1))
    db = p.op("double_backward")
    variants: dict[str, Callable[[], Any]] = {
        f"loop of {k} single products (double-backward)": lambda: [db.matvec(V[:, j]) for j in range(k)],
        "matmat, double-backward, column loop inside": lambda: db.matmat(V),
    }
    db_b, fr_b = p.op("double_backward", batched=True), p.op("forward_over_reverse", batched=True)
    variants["matmat, double-backward, batched tangent (is_grads_batched)"] = lambda: db_b.matmat(V)
    variants["matmat, forward-over-reverse, torch.func.vmap"] = lambda: fr_b.matmat(V)
    if p.op().method_used == "mlp":
        mlp_op = p.op("mlp")
        variants[f"loop of {k} single products (method='mlp')"] = lambda: [mlp_op.matvec(V[:, j]) for j in range(k)]
        variants["matmat, closed-form MLP (method='mlp', one pass)"] = lambda: mlp_op.matmat(V)
    ts: dict[str, list[float]] = {n: [] for n in variants}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in variants.values():
            f()  # warm-up (graphs, kernels)
        for _ in range(repeats):
            for n, f in variants.items():
                t0 = time.perf_counter()
                f()
                ts[n].append(time.perf_counter() - t0)
    ref = next(iter(ts.values()))
    rows = []
    for n, t in ts.items():
        rows.append((n, f"{1e3 * min(t) / k:.2f}", f"{1e3 * statistics.median(t) / k:.2f}",
                     f"{min(t) / min(ref):.2f}", f"{statistics.median(t) / statistics.median(ref):.2f}"))
    return rows


# --------------------------------------------------------------------------- #
def topk_table(p: Problem, pyhessian_ok: bool) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    ref_op = p.op()
    t0 = time.perf_counter()
    ours = lanczos(ref_op, K, which="LA", tol=TARGET, seed=0)
    t_ours = time.perf_counter() - t0
    lam_max = float(ours.eigenvalues[0])
    chk = p.op()

    def verdict(vals: Tensor, vecs: Tensor) -> tuple[bool, float]:
        r = true_residuals(chk, vals.to(torch.float32), vecs.to(torch.float32))
        worst = float(r.max()) / lam_max
        top_ok = abs(float(vals.max()) - lam_max) <= 1e-3 * lam_max
        return worst <= TARGET * 1.0001 and top_ok, worst

    ok, worst = verdict(ours.eigenvalues, ours.eigenvectors)
    rows.append(("instab_lib lanczos(tol=1e-4)", str(ours.n_matvec), f"{t_ours:.2f}", f"{worst:.1e}", "yes" if ok else "NO"))
    # the honest stop: a tolerance below float32's rounding level
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnattainableToleranceWarning)
        t0 = time.perf_counter()
        low = lanczos(p.op(), K, which="LA", tol=1e-6, seed=0)
        t_low = time.perf_counter() - t0
    warned = any(issubclass(w.category, UnattainableToleranceWarning) for w in caught)
    rows.append(("instab_lib lanczos(tol=1e-6): below float32's floor", str(low.n_matvec), f"{t_low:.2f}",
                 f"{low.extra['attained']:.1e}", f"no: stopped early{' with a warning' if warned else ''}, "
                 f"budget {max(50 * K, 300)}"))

    # curvlinops + eigsh, loosest tol meeting the target
    try:
        from curvlinops import HessianLinearOperator
        from scipy.sparse.linalg import eigsh

        params = list(p.model.parameters())
        H = HessianLinearOperator(p.model, p.loss, params, p.chunks, check_deterministic=False)
        Hs = H.to_scipy()
        for tol in (1e-2, 1e-3, 1e-4, 1e-5):
            L, cnt = counting_scipy_operator(Hs, np.float32)
            v0 = np.random.default_rng(0).standard_normal(Hs.shape[0]).astype(np.float32)
            t0 = time.perf_counter()
            w, U = eigsh(L, k=K, which="LA", v0=v0, tol=tol)
            t = time.perf_counter() - t0
            ok, worst = verdict(torch.from_numpy(w.copy()), torch.from_numpy(U.copy()))
            rows.append((f"curvlinops + eigsh(LA, v0, tol={tol:g})", str(cnt[0]), f"{t:.2f}", f"{worst:.1e}", "yes" if ok else "no"))
            if ok:
                break
    except Exception as e:  # noqa: BLE001
        rows.append(("curvlinops + eigsh", "error", "", "", f"{type(e).__name__}: {str(e)[:60]}"))

    # hessian-eigenthings lanczos (no restart): Krylov size scanned
    try:
        import hessian_eigenthings as he

        E = he.HessianOperator(p.model, p.chunks, he.loss_fns.standard.supervised_loss(p.loss))
        cnt = [0]
        orig = E.matvec

        def mvE(x: Tensor) -> Tensor:
            cnt[0] += 1
            return orig(x)

        E.matvec = mvE  # type: ignore[method-assign]
        for m in (20, 30, 40, 60, 80, 120):
            cnt[0] = 0
            t0 = time.perf_counter()
            res = he.lanczos(E, k=K, max_iter=m, which="LA", seed=0, tol=TARGET)
            t = time.perf_counter() - t0
            vals = torch.as_tensor(res.eigenvalues)
            vecs = torch.as_tensor(res.eigenvectors)
            if vecs.shape[0] != chk.dim:
                vecs = vecs.T
            ok, worst = verdict(vals, vecs)
            rows.append((f"hessian-eigenthings lanczos(LA, max_iter={m})", str(cnt[0]), f"{t:.2f}", f"{worst:.1e}", "yes" if ok else "no"))
            if ok:
                break
    except Exception as e:  # noqa: BLE001
        rows.append(("hessian-eigenthings", "error", "", "", f"{type(e).__name__}: {str(e)[:60]}"))

    # PyHessian power iteration with deflation
    if pyhessian_ok:
        try:
            from pyhessian import hessian as PH

            with counting_pyhessian() as cnt:
                if p.chunk is None:
                    h = PH(p.model, p.loss, data=(p.X, p.y), cuda=False)
                else:
                    h = PH(p.model, p.loss, dataloader=p.chunks, cuda=False)
                    orig_dl = h.dataloader_hv_product

                    def dl(v: Any) -> Any:
                        cnt[0] += 1
                        return orig_dl(v)

                    h.dataloader_hv_product = dl
                for tol in (1e-3, 1e-4, 1e-5, 1e-6):
                    cnt[0] = 0
                    torch.manual_seed(0)
                    t0 = time.perf_counter()
                    vals, vecs = h.eigenvalues(maxIter=1000, tol=tol, top_n=K)
                    t = time.perf_counter() - t0
                    V = torch.stack([flatten(v) for v in vecs], dim=1)
                    ok, worst = verdict(torch.tensor(vals), V)
                    rows.append((f"PyHessian eigenvalues(top_n=10, tol={tol:g})", str(cnt[0]), f"{t:.2f}", f"{worst:.1e}", "yes" if ok else "no"))
                    if ok:
                        break
        except Exception as e:  # noqa: BLE001
            rows.append(("PyHessian", "error", "", "", f"{type(e).__name__}: {str(e)[:60]}"))
    else:
        rows.append(("PyHessian", "skipped (too slow at this size without --large)", "", "", ""))
    return rows


# --------------------------------------------------------------------------- #
def tracking(p: Problem, steps: int, lrs: list[float], cold_every: int, k: int = K,
             tol: float = TARGET) -> list[tuple[str, ...]]:
    """Warm vs cold HVP counts along ``steps`` full-batch GD steps, for each learning rate.

    Warm: :class:`EigTracker` as ``train`` builds it (first update cold, then a Krylov start
    from the summed previous eigenvectors of the matching parity), and the former default
    (``warm="residual", lag=1``: Rayleigh–Ritz on the previous k vectors, expanded by worst
    residuals), both on the same operators. Cold: a fresh seeded :func:`lanczos` every
    ``cold_every`` steps (its cost does not depend on history, so sampling it is enough).
    """
    rows: list[tuple[str, ...]] = []
    state = {n: q.detach().clone() for n, q in p.model.state_dict().items()}
    for lr in lrs:
        p.model.load_state_dict(state)
        opt = torch.optim.SGD(p.model.parameters(), lr=lr)
        trackers = {"new": EigTracker(k=k, tol=tol, seed=0, warm_extra=HARNESS_WARM_EXTRA),
                    "old": EigTracker(k=k, tol=tol, seed=0, warm="residual", lag=1)}
        mv: dict[str, list[int]] = {n: [] for n in trackers}
        tt: dict[str, float] = {n: 0.0 for n in trackers}
        cold, t_cold = [], 0.0
        lam0 = lam1 = float("nan")
        for s in range(steps):
            for name, tr in trackers.items():
                t0 = time.perf_counter()
                r = tr.update(p.op())
                dt = time.perf_counter() - t0
                assert r.converged
                if s > 0:
                    mv[name].append(r.n_matvec)
                    tt[name] += dt
                if name == "new":
                    lam0 = float(r.eigenvalues[0]) if s == 0 else lam0
                    lam1 = float(r.eigenvalues[0])
            if s % cold_every == 1 or cold_every == 1:
                t0 = time.perf_counter()
                c = lanczos(p.op(), k, tol=tol, seed=s)
                t_cold += time.perf_counter() - t0
                assert c.converged
                cold.append(c.n_matvec)
            opt.zero_grad()
            loss = sum(p.loss(p.model(X), y) * len(X) / len(p.X) for X, y in p.chunks)
            loss.backward()
            opt.step()
        n = len(mv["new"])
        new, old = sorted(mv["new"]), sorted(mv["old"])
        c_mean = sum(cold) / len(cold)
        fb = sum(1 for h in trackers["new"].history[1:] if not h["warm"])
        rows.append((f"{lr:g}", f"{statistics.median(new):.0f} / {new[int(0.9 * (n - 1))]}", f"{1e3 * tt['new'] / n:.0f}",
                     f"{statistics.median(old):.0f} / {old[int(0.9 * (n - 1))]}", f"{1e3 * tt['old'] / n:.0f}",
                     f"{c_mean:.1f} (n={len(cold)})", f"{1e3 * t_cold / len(cold):.0f}",
                     f"{c_mean / (sum(new) / n):.2f}", str(fb), f"{lam0:.4f} → {lam1:.4f}"))
    p.model.load_state_dict(state)
    return rows


def show(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--large", action="store_true", help="CNN on 5,120 images, PyHessian and tracking on the CNN too")
    ap.add_argument("--cnn-n", type=int, default=None, help="CNN inputs (default 512, 5120 with --large)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--steps", type=int, default=100, help="GD steps for tracking")
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.1],
                    help="GD learning rates for tracking (default: the papers' η = 0.1 for the fMNIST MLP)")
    ap.add_argument("--parts", nargs="+", choices=["hvp", "block", "topk", "tracking"],
                    default=["hvp", "block", "topk", "tracking"], help="tables to produce")
    ap.add_argument("--problems", nargs="+", choices=["mlp", "cnn"], default=["mlp", "cnn"])
    ap.add_argument("--data", choices=["real", "random"], default="real",
                    help="real: first Fashion-MNIST / CIFAR-10 training images; random: Gaussian inputs")
    ap.add_argument("--cold-every", type=int, default=10, help="sample the cold solve every N steps")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 by default: on a shared, oversubscribed CPU, 2 OpenMP threads "
                         "made small-op HVPs 10-60x slower through barrier waits)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, float32, CPU, data: {a.data}, "
          f"load {os.getloadavg()[0]:.1f} at the start")
    n_cnn = a.cnn_n or (5120 if a.large else 512)
    g = torch.Generator().manual_seed(0)
    if a.data == "random":
        probs = [
            Problem("fMNIST MLP 784-32-32-32-10, 1,000 random inputs", mlp(),
                    torch.randn(1000, 784, generator=g), torch.randint(0, 10, (1000,), generator=g), None),
            Problem(f"small CNN, {n_cnn} random 32×32×3 inputs, chunks of 256", cnn(),
                    torch.randn(n_cnn, 3, 32, 32, generator=g), torch.randint(0, 10, (n_cnn,), generator=g), 256),
        ]
    else:
        from instab_lib.experiments.data import load_dataset
        from instab_lib.experiments.models import build_model

        fm = load_dataset("fashion-mnist", n_train=1000, n_test=0)
        cf = load_dataset("cifar10", n_train=n_cnn, n_test=0)
        probs = [
            Problem("fMNIST MLP 784-32-32-32-10, first 1,000 Fashion-MNIST training images",
                    build_model("mlp", seed=0, depth=3, width=32), fm.X_train, fm.y_train, None),
            Problem(f"small CNN, first {n_cnn} CIFAR-10 training images ({cf.source.split(' (')[0]}), chunks of 256",
                    cnn(), cf.X_train, cf.y_train, 256),
        ]
    for i, p in enumerate(probs):
        if ["mlp", "cnn"][i] not in a.problems:
            continue
        dim = sum(q.numel() for q in p.model.parameters())
        print(f"\n## {p.name} ({dim} parameters); load {os.getloadavg()[0]:.1f}")
        reps = a.repeats if i == 0 else max(3, a.repeats // 5)
        if "hvp" in a.parts:
            show("Time per HVP / time per gradient", ("tool", "ms", "× gradient"), hvp_table(p, reps))
        if "block" in a.parts:
            show(f"Block products H V, V of {K} columns (interleaved, {reps} rounds)",
                 ("product", "ms/column (min)", "ms/column (median)", "× loop (min)", "× loop (median)"),
                 block_table(p, reps))
        if "topk" in a.parts:
            show(f"Top-{K} eigenpairs, residual ≤ 1e-4·λ_max", ("tool / setting", "HVPs", "wall s", "max ‖r‖/λ_max",
                 "meets target"), topk_table(p, pyhessian_ok=(i == 0 or a.large)))
        if "tracking" in a.parts and (i == 0 or a.large):
            steps = a.steps if i == 0 else max(10, a.steps // 10)
            show(f"Tracking top-{K} over {steps} GD steps, tol 1e-4 (HVPs per step, steps 2..{steps})", (
                "lr", "warm HVPs/step median / p90", "warm ms/step", "old warm (residual, lag 1) median / p90",
                "old ms/step", "cold HVPs/step (mean)", "cold ms/step", "cold/warm (means)", "warm→cold fallbacks",
                "λ_max first → last"), tracking(p, steps, a.lrs, a.cold_every))


if __name__ == "__main__":
    main()
