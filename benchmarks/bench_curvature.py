"""Benchmark: Hessian-vector products, top-10 eigenpairs and warm tracking vs peers.

Run:  .venv/bin/python benchmarks/bench_curvature.py            (default, a few minutes on 2 cores)
      .venv/bin/python benchmarks/bench_curvature.py --large    (CNN on 5,120 images, CNN tracking)

Problems (random inputs of the papers' shapes; real data is not wired in here):
  mlp: fMNIST MLP 784-32-32-32-10 ReLU, 1,000 inputs, cross-entropy.
  cnn: small CNN on 32×32×3 (conv 3→16, pool, conv 16→32, pool, linear 2048→10),
       --cnn-n inputs (default 512; 5,120 with --large), chunks of 256.
Peers: PyHessian, curvlinops (+ scipy eigsh with seeded v0), hessian-eigenthings v1.
HVPs are counted with wrappers around each peer's product; residuals of every
returned eigenpair are checked with this library's operator (not counted).
Timings are medians over --repeats runs on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
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

from instab_lib.curvature import EigTracker, HessianOperator, flatten, lanczos  # noqa: E402

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


def true_residuals(op: HessianOperator, vals: Tensor, vecs: Tensor) -> Tensor:
    n0 = op.n_matvec
    vecs = vecs / vecs.norm(dim=0)
    r = (op.matmat(vecs) - vecs * vals).norm(dim=0)
    op.n_matvec = n0
    return r


class Problem:
    def __init__(self, name: str, model: nn.Module, X: Tensor, y: Tensor, chunk: int | None) -> None:
        self.name, self.model, self.X, self.y, self.chunk = name, model, X, y, chunk
        self.loss = nn.CrossEntropyLoss()
        self.chunks = [(X, y)] if chunk is None else [(X[i:i + chunk], y[i:i + chunk]) for i in range(0, len(X), chunk)]

    def op(self, method: str = "auto") -> HessianOperator:
        return HessianOperator(self.model, self.loss, self.chunks, method=method)


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
    V = torch.randn(dim, 10)
    try:
        t = median_time(lambda: op.matmat(V), max(1, repeats // 3))
        rows.append(("instab_lib matmat, per column (k=10)", f"{1e3 * t / 10:.1f}", f"{t / 10 / tg:.2f}"))
    except Exception as e:  # noqa: BLE001
        rows.append(("instab_lib matmat", "error", str(e)[:60]))
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

    # curvlinops + eigsh, loosest tol meeting the target
    try:
        from curvlinops import HessianLinearOperator
        from scipy.sparse.linalg import LinearOperator, eigsh

        params = list(p.model.parameters())
        H = HessianLinearOperator(p.model, p.loss, params, p.chunks, check_deterministic=False)
        Hs = H.to_scipy()
        for tol in (1e-2, 1e-3, 1e-4, 1e-5):
            cnt = [0]

            def mv(x: np.ndarray, Hs: Any = Hs, cnt: list = cnt) -> np.ndarray:
                cnt[0] += 1 if x.ndim == 1 else x.shape[1]
                return Hs @ x

            L = LinearOperator(Hs.shape, matvec=mv, dtype=np.float32)
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

            phm = sys.modules["pyhessian.hessian"]

            cnt = [0]
            orig_hvp = phm.hessian_vector_product

            def hvp(*a: Any, **kw: Any) -> Any:
                cnt[0] += 1
                return orig_hvp(*a, **kw)

            phm.hessian_vector_product = hvp
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
            phm.hessian_vector_product = orig_hvp
        except Exception as e:  # noqa: BLE001
            rows.append(("PyHessian", "error", "", "", f"{type(e).__name__}: {str(e)[:60]}"))
    else:
        rows.append(("PyHessian", "skipped (too slow at this size without --large)", "", "", ""))
    return rows


# --------------------------------------------------------------------------- #
def tracking(p: Problem, steps: int, lrs: list[float], cold_every: int, k: int = K) -> list[tuple[str, ...]]:
    """Warm vs cold HVP counts along ``steps`` GD steps, for each learning rate.

    Warm: one :class:`EigTracker` (first update cold, then warm from the previous
    vectors). Cold: a fresh :func:`lanczos` (new seed) every ``cold_every`` steps
    (its cost does not depend on the history, so sampling it is enough).
    """
    rows: list[tuple[str, ...]] = []
    state = {n: q.detach().clone() for n, q in p.model.state_dict().items()}
    for lr in lrs:
        p.model.load_state_dict(state)
        opt = torch.optim.SGD(p.model.parameters(), lr=lr)
        tr = EigTracker(k=k, tol=TARGET, seed=0)
        warm, cold, t_warm, t_cold = [], [], 0.0, 0.0
        lam0 = lam1 = float("nan")
        for s in range(steps):
            t0 = time.perf_counter()
            r = tr.update(p.op())
            dt = time.perf_counter() - t0
            assert r.converged
            if s == 0:
                lam0 = float(r.eigenvalues[0])
            else:
                warm.append(r.n_matvec)
                t_warm += dt
            lam1 = float(r.eigenvalues[0])
            if s % cold_every == 1 or cold_every == 1:
                t0 = time.perf_counter()
                c = lanczos(p.op(), k, tol=TARGET, seed=s)
                t_cold += time.perf_counter() - t0
                assert c.converged
                cold.append(c.n_matvec)
            opt.zero_grad()
            loss = sum(p.loss(p.model(X), y) * len(X) / len(p.X) for X, y in p.chunks)
            loss.backward()
            opt.step()
        n_fb = sum(1 for h in tr.history[1:] if not h["warm"])
        w_mean, c_mean = sum(warm) / len(warm), sum(cold) / len(cold)
        rows.append((f"{lr:g}", f"{w_mean:.1f}", f"{1e3 * t_warm / len(warm):.0f}", f"{c_mean:.1f} (n={len(cold)})",
                     f"{1e3 * t_cold / len(cold):.0f}", f"{c_mean / w_mean:.2f}", str(n_fb), f"{lam0:.4f} → {lam1:.4f}"))
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
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.02, 0.002, 0.0002])
    ap.add_argument("--cold-every", type=int, default=10, help="sample the cold solve every N steps")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 by default: on a shared, oversubscribed CPU, 2 OpenMP threads "
                         "made small-op HVPs 10-60x slower through barrier waits)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, float32, CPU")
    n_cnn = a.cnn_n or (5120 if a.large else 512)
    g = torch.Generator().manual_seed(0)
    probs = [
        Problem("fMNIST MLP 784-32-32-32-10, 1,000 random inputs", mlp(),
                torch.randn(1000, 784, generator=g), torch.randint(0, 10, (1000,), generator=g), None),
        Problem(f"small CNN, {n_cnn} random 32×32×3 inputs, chunks of 256", cnn(),
                torch.randn(n_cnn, 3, 32, 32, generator=g), torch.randint(0, 10, (n_cnn,), generator=g), 256),
    ]
    for i, p in enumerate(probs):
        dim = sum(q.numel() for q in p.model.parameters())
        print(f"\n## {p.name} ({dim} parameters)")
        reps = a.repeats if i == 0 else max(3, a.repeats // 5)
        show("Time per HVP / time per gradient", ("tool", "ms", "× gradient"), hvp_table(p, reps))
        show(f"Top-{K} eigenpairs, residual ≤ 1e-4·λ_max", ("tool / setting", "HVPs", "wall s", "max ‖r‖/λ_max", "meets target"),
             topk_table(p, pyhessian_ok=(i == 0 or a.large)))
        if i == 0 or a.large:
            steps = a.steps if i == 0 else max(10, a.steps // 10)
            show(f"Tracking top-{K} over {steps} GD steps, tol 1e-4 (HVPs per step, steps 2..{steps})", (
                "lr", "warm HVPs/step", "warm ms/step", "cold HVPs/step", "cold ms/step", "cold/warm",
                "warm→cold fallbacks", "λ_max first → last"), tracking(p, steps, a.lrs, a.cold_every))


if __name__ == "__main__":
    main()
