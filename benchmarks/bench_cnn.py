"""Benchmark: the author's CIFAR-5k networks on this CPU (issue 21, item 4).

Networks: ``instab_lib.experiments.cnn_models`` VGG10_base8_BN (32,782 parameters) and ResNet20_base8_Identity_BN
(68,050), the author's initialisation. Data: CIFAR-5k, the first 512 training images of each class
of the JPEG copy (5,120), standardised as the author does; the first 2,000 test images.

Parts (``--parts``):
  epoch    one epoch of minibatch SGD (train mode: batch statistics) at each batch size, per
           thread count and memory format. Columns: ``steps`` = forward, backward and update of
           every batch; ``+metric`` = the same plus the author's per-batch accuracy (an eval-mode
           forward of each batch after its step: the author's train accuracy, which drives the
           stopping rule); ``test`` = one eval-mode pass over the 2,000 test images (the author
           evaluates it every epoch).
  hvp      one Hessian-vector product of the mean cross-entropy on all 5,120 images (the author's
           Hessian set), BatchNorm in eval mode, ``instab_lib.curvature.HessianOperator`` by double
           backward with the data in chunks; ``first`` includes building the gradient graphs, ``per
           product`` is the median of the next ``--products``. Whether the graphs of all chunks are
           kept between products (``HessianOperator``'s 2 GiB default budget) is shown, with the
           saved-tensor bytes per image.
  compile  ``torch.compile(model)`` for the training step: time of the first epoch (compilation
           included) and the steady epoch, against eager in the same format and thread count;
           and whether a double-backward product runs under ``torch.compile`` at all.
  workers  throughput of independent runs: 2 processes × 1 thread against 1 process × 2 threads
           running the same two jobs one after the other (each job: ``--worker-epochs`` epochs at a
           batch size, or ``--products`` HVPs at the best chunk).

Times are the minimum over repetitions (the machine is shared; ``cpulock`` serialises the heavy
jobs but not everything), the load average is printed with each table.

    cpulock env PYTHONPATH=. .venv/bin/python -u benchmarks/bench_cnn.py            # everything
    cpulock env PYTHONPATH=. .venv/bin/python -u benchmarks/bench_cnn.py --parts epoch --archs vgg
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from instab_lib.experiments.cnn_models import build_cnn, count_parameters  # noqa: E402
from instab_lib.curvature import HessianOperator  # noqa: E402

FORMATS = {"contiguous": False, "channels_last": True}
NAMES = {"vgg": "VGG10_base8_BN", "resnet": "ResNet20_base8"}


def load(n_train: int, n_test: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from instab_lib.experiments.data import load_dataset

    ds = load_dataset("cifar10", n_train=n_train, n_test=n_test, balanced=True, download=False)
    return ds.X_train, ds.y_train, ds.X_test, ds.y_test


def load_avg() -> str:
    return "{:.1f}".format(os.getloadavg()[0])


def _fmt(X: torch.Tensor, cl: bool) -> torch.Tensor:
    return X.contiguous(memory_format=torch.channels_last) if cl else X.contiguous()


# ----------------------------------------------------------------------------- epochs
def time_epoch(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, bs: int, metric: bool,
               gen: torch.Generator, max_batches: int | None = None) -> float:
    """Seconds for one shuffled epoch of SGD steps (lr 0.01), with the author's eval-mode accuracy
    pass per batch when ``metric``; ``max_batches`` stops early (the time is scaled to a full epoch)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    perm = torch.randperm(len(y), generator=gen)
    n_batches = (len(y) + bs - 1) // bs
    todo = n_batches if max_batches is None else min(n_batches, max_batches)
    t0 = time.perf_counter()
    for b in range(todo):
        idx = perm[b * bs:(b + 1) * bs]
        xb, yb = X[idx], y[idx]
        model.train()
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if metric:
            model.eval()
            with torch.no_grad():
                (model(xb).argmax(1) == yb).sum()
    return (time.perf_counter() - t0) * n_batches / todo


def time_test(model: torch.nn.Module, X: torch.Tensor, eval_bs: int = 2000) -> float:
    model.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(X), eval_bs):
            model(X[i:i + eval_bs])
    return time.perf_counter() - t0


def part_epoch(args: argparse.Namespace, data: tuple) -> list[dict[str, Any]]:
    Xtr, ytr, Xte, _ = data
    rows = []
    for arch in args.archs:
        for threads in args.threads:
            torch.set_num_threads(threads)
            for fmt in args.formats:
                cl = FORMATS[fmt]
                X, Xt = _fmt(Xtr, cl), _fmt(Xte, cl)
                for bs in args.batch_sizes:
                    model = build_cnn(arch, seed=0, channels_last=cl)
                    gen = torch.Generator().manual_seed(0)
                    time_epoch(model, X, ytr, bs, False, gen, max_batches=3)  # warm-up
                    steps = min(time_epoch(model, X, ytr, bs, False, gen) for _ in range(args.repeats))
                    full = min(time_epoch(model, X, ytr, bs, True, gen) for _ in range(args.repeats))
                    test = min(time_test(model, Xt) for _ in range(args.repeats))
                    row = dict(arch=arch, threads=threads, format=fmt, bs=bs, steps_s=steps, metric_s=full,
                               test_s=test, load=load_avg())
                    print(f"  epoch {arch} t{threads} {fmt} bs{bs}: steps {steps:.2f}s +metric {full:.2f}s "
                          f"test {test:.2f}s (load {row['load']})", flush=True)
                    rows.append(row)
    return rows


# -------------------------------------------------------------------------------- HVP
def saved_bytes_per_image(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Bytes autograd saves for one chunk's gradient graph (create_graph), per image."""
    nbytes = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        nbytes[0] += t.numel() * t.element_size()
        return t

    model.eval()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(X), y)
        torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
    return nbytes[0] / len(y)


def time_hvp(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, chunk: int, products: int,
             budget: int) -> tuple[float, float, bool]:
    op = HessianOperator(model, F.cross_entropy, (X, y), chunk_size=chunk, method="double_backward",
                         graph_budget_bytes=budget)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    op.matvec(v)
    first = time.perf_counter() - t0
    times = []
    for _ in range(products):
        t0 = time.perf_counter()
        op.matvec(v)
        times.append(time.perf_counter() - t0)
    kept = bool(op._keep_graphs)
    op.release()
    return first, min(times), kept


def part_hvp(args: argparse.Namespace, data: tuple) -> list[dict[str, Any]]:
    Xtr, ytr, _, _ = data
    rows = []
    for arch in args.archs:
        for threads in args.threads:
            torch.set_num_threads(threads)
            for fmt in args.formats:
                cl = FORMATS[fmt]
                X = _fmt(Xtr, cl)
                model = build_cnn(arch, seed=0, channels_last=cl)
                per_image = saved_bytes_per_image(model, X[:128], ytr[:128])
                for chunk in args.chunks:
                    first, per, kept = time_hvp(model, X, ytr, chunk, args.products, args.graph_budget)
                    row = dict(arch=arch, threads=threads, format=fmt, chunk=chunk, first_s=first, hvp_s=per,
                               graphs_kept=kept, saved_mb_per_image=per_image / 2**20, load=load_avg())
                    print(f"  hvp {arch} t{threads} {fmt} chunk {chunk}: first {first:.2f}s per product "
                          f"{per:.2f}s kept={kept} ({per_image / 2**20:.2f} MB/image; load {row['load']})", flush=True)
                    rows.append(row)
    return rows


# ---------------------------------------------------------------------------- compile
def part_compile(args: argparse.Namespace, data: tuple) -> list[dict[str, Any]]:
    Xtr, ytr, _, _ = data
    rows = []
    threads = max(args.threads) if args.compile_threads is None else args.compile_threads
    torch.set_num_threads(threads)
    fmt = "channels_last" if "channels_last" in args.formats else args.formats[0]
    cl = FORMATS[fmt]
    X = _fmt(Xtr, cl)
    for arch in args.archs:
        for bs in args.batch_sizes:
            eager = build_cnn(arch, seed=0, channels_last=cl)
            gen = torch.Generator().manual_seed(0)
            time_epoch(eager, X, ytr, bs, False, gen, max_batches=3)
            t_eager = min(time_epoch(eager, X, ytr, bs, False, gen) for _ in range(args.repeats))
            torch._dynamo.reset()
            compiled = torch.compile(build_cnn(arch, seed=0, channels_last=cl))
            t0 = time.perf_counter()
            first = time_epoch(compiled, X, ytr, bs, False, gen)  # compiles train and (if any) eval graphs
            first_wall = time.perf_counter() - t0
            steady = min(time_epoch(compiled, X, ytr, bs, False, gen) for _ in range(args.repeats))
            row = dict(arch=arch, threads=threads, format=fmt, bs=bs, eager_s=t_eager, first_epoch_s=first_wall,
                       compiled_s=steady, compile_overhead_s=first - steady, load=load_avg())
            print(f"  compile {arch} t{threads} {fmt} bs{bs}: eager {t_eager:.2f}s, compiled first epoch "
                  f"{first_wall:.1f}s, steady {steady:.2f}s (load {row['load']})", flush=True)
            rows.append(row)
        # double backward through a compiled model
        torch._dynamo.reset()
        compiled = torch.compile(build_cnn(arch, seed=0, channels_last=cl))
        try:
            compiled.eval()
            loss = F.cross_entropy(compiled(X[:64]), ytr[:64])
            g = torch.autograd.grad(loss, list(compiled.parameters()), create_graph=True)
            torch.autograd.grad(g, list(compiled.parameters()), grad_outputs=[torch.ones_like(p) for p in g])
            msg = "runs"
        except Exception as e:  # noqa: BLE001 - the benchmark reports what happens
            msg = f"fails: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
        print(f"  compile {arch}: double backward {msg}", flush=True)
        rows.append(dict(arch=arch, double_backward=msg))
    return rows


# ---------------------------------------------------------------------------- workers
def _prepare(kind: str, arch: str, size: int, threads: int, n_train: int) -> Any:
    """Data, model (channels_last) and, for an HVP job, the operator: everything outside the timing."""
    torch.set_num_threads(threads)
    Xtr, ytr, _, _ = load(n_train, 0)
    X = _fmt(Xtr, True)
    model = build_cnn(arch, seed=0, channels_last=True)
    if kind == "epoch":
        return model, X, ytr
    return HessianOperator(model, F.cross_entropy, (X, ytr), chunk_size=size, method="double_backward")


def _run(kind: str, prepared: Any, size: int, n: int) -> float:
    t0 = time.perf_counter()
    if kind == "epoch":
        model, X, y = prepared
        gen = torch.Generator().manual_seed(0)
        for _ in range(n):
            time_epoch(model, X, y, size, True, gen)
    else:
        v = torch.randn(prepared.dim, generator=torch.Generator().manual_seed(0))
        for _ in range(n):
            prepared.matvec(v)
    return time.perf_counter() - t0


def _worker(q: Any, start: Any, kind: str, arch: str, size: int, n: int, n_train: int) -> None:
    prepared = _prepare(kind, arch, size, 1, n_train)
    start.wait()
    q.put(_run(kind, prepared, size, n))


def part_workers(args: argparse.Namespace, data: tuple) -> list[dict[str, Any]]:
    rows = []
    ctx = mp.get_context("spawn")
    jobs = [("epoch", arch, bs, args.worker_epochs) for arch in args.archs for bs in args.batch_sizes]
    jobs += [("hvp", arch, args.worker_chunk, args.products) for arch in args.archs]
    for kind, arch, size, n in jobs:
        # 1 process × 2 threads: the two jobs one after the other
        t_seq = sum(_run(kind, _prepare(kind, arch, size, 2, args.n_train), size, n) for _ in range(2))
        # 2 processes × 1 thread, started together once both have loaded their data
        q, start = ctx.Queue(), ctx.Barrier(3)
        procs = [ctx.Process(target=_worker, args=(q, start, kind, arch, size, n, args.n_train)) for _ in range(2)]
        for p in procs:
            p.start()
        start.wait()
        t0 = time.perf_counter()
        inner = [q.get() for _ in procs]
        t_par = time.perf_counter() - t0
        for p in procs:
            p.join()
        row = dict(kind=kind, arch=arch, size=size, n=n, one_proc_two_threads_s=t_seq, two_procs_one_thread_s=t_par,
                   worker_s=inner, speedup=t_seq / t_par, load=load_avg())
        print(f"  workers {kind} {arch} {'bs' if kind == 'epoch' else 'chunk'} {size} ×{n}: 1×2 threads "
              f"{t_seq:.1f}s for two jobs, 2×1 thread {t_par:.1f}s → {t_seq / t_par:.2f}× (load {row['load']})",
              flush=True)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ tables
def tables(res: dict[str, Any]) -> str:
    out = []
    if res.get("epoch"):
        out += ["| network | threads | format | batch | epoch: steps (s) | epoch + author's per-batch accuracy (s) "
                "| test pass, 2,000 (s) |", "|---|---|---|---|---|---|---|"]
        out += [f"| {NAMES[r['arch']]} | {r['threads']} | {r['format']} | {r['bs']} | {r['steps_s']:.2f} | "
                f"{r['metric_s']:.2f} | {r['test_s']:.2f} |" for r in res["epoch"]]
        out.append("")
    if res.get("hvp"):
        out += ["| network | threads | format | chunk | HVP, 5,120 images (s) | first incl. graphs (s) | graphs kept "
                "| saved MB/image |", "|---|---|---|---|---|---|---|---|"]
        out += [f"| {NAMES[r['arch']]} | {r['threads']} | {r['format']} | {r['chunk']} | {r['hvp_s']:.2f} | "
                f"{r['first_s']:.2f} | {'yes' if r['graphs_kept'] else 'no'} | {r['saved_mb_per_image']:.2f} |"
                for r in res["hvp"]]
        out.append("")
    if res.get("compile"):
        out += ["| network | threads | format | batch | eager epoch (s) | compiled: first epoch (s) | compiled: steady "
                "epoch (s) |", "|---|---|---|---|---|---|---|"]
        out += [f"| {NAMES[r['arch']]} | {r['threads']} | {r['format']} | {r['bs']} | {r['eager_s']:.2f} | "
                f"{r['first_epoch_s']:.1f} | {r['compiled_s']:.2f} |" for r in res["compile"] if "bs" in r]
        out += [f"\n{NAMES[r['arch']]}: double backward under torch.compile {r['double_backward']}"
                for r in res["compile"] if "double_backward" in r]
        out.append("")
    if res.get("workers"):
        out += ["| job (channels_last) | 1 process × 2 threads, two jobs in turn (s) | 2 processes × 1 thread "
                "(s) | throughput gain |", "|---|---|---|---|"]
        out += [f"| {NAMES[r['arch']]}, {r['n']} × {'epoch at batch' if r['kind'] == 'epoch' else 'HVP, chunk'} "
                f"{r['size']} | {r['one_proc_two_threads_s']:.1f} | {r['two_procs_one_thread_s']:.1f} | "
                f"{r['speedup']:.2f}× |" for r in res["workers"]]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", default=["epoch", "hvp", "compile", "workers"],
                    choices=["epoch", "hvp", "compile", "workers"])
    ap.add_argument("--archs", nargs="+", default=["vgg", "resnet"], choices=sorted(NAMES))
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 1024])
    ap.add_argument("--chunks", nargs="+", type=int, default=[128, 256, 512, 1024])
    ap.add_argument("--n-train", type=int, default=5120)
    ap.add_argument("--repeats", type=int, default=2, help="timed repetitions per cell (minimum reported)")
    ap.add_argument("--products", type=int, default=3, help="timed HVPs per cell")
    ap.add_argument("--graph-budget", type=int, default=2 * 1024**3, help="HessianOperator graph_budget_bytes")
    ap.add_argument("--compile-threads", type=int, default=None)
    ap.add_argument("--worker-epochs", type=int, default=2)
    ap.add_argument("--worker-chunk", type=int, default=256)
    ap.add_argument("--out", default="_build/bench/cnn.json")
    args = ap.parse_args()
    for name, vals in (("threads", args.threads), ("batch sizes", args.batch_sizes), ("chunks", args.chunks)):
        if any(v < 1 for v in vals):
            sys.exit(f"{name} must be positive integers, got {vals}")
    t_load = time.perf_counter()
    data = load(args.n_train, 2000)
    print(f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{torch.backends.cpu.get_cpu_capability()}, load {load_avg()} at the start; CIFAR-5k: "
          f"{len(data[1])} train ({torch.bincount(data[1]).tolist()}), {len(data[3])} test, loaded in "
          f"{time.perf_counter() - t_load:.1f}s; parameters: "
          + ", ".join(f"{NAMES[a]} {count_parameters(build_cnn(a))}" for a in args.archs), flush=True)
    res: dict[str, Any] = {"args": vars(args), "torch": torch.__version__}
    parts = {"epoch": part_epoch, "hvp": part_hvp, "compile": part_compile, "workers": part_workers}
    for p in args.parts:
        t0 = time.perf_counter()
        res[p] = parts[p](args, data)
        print(f"[{p}: {time.perf_counter() - t0:.0f}s, load {load_avg()}]", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print()
    print(tables(res))


if __name__ == "__main__":
    main()
