"""Benchmark: the author's public Lanczos (``spectrumCB``) against this library, on the same weights.

What it measures (issue on the curvature engine, item 5). The fMNIST MLP
(784-32-32-32-10 ReLU, first 1,000 training images standardised as
``instab_lib.experiments.data`` does, cross-entropy, full-batch GD η = 0.1, 200 epochs) is
trained in PyTorch with ``instab_lib.experiments.train`` for each seed; its weights are copied
into the author's flax model (``modules.MLPNet``) and loss
(``optax.softmax_cross_entropy_with_integer_labels`` through ``spectral.get_loss_wrap``)
and the two losses are compared. Then, on those weights:

* ``callbacks.spectrumCB(n_eigs=20, n_evecs=10, seed=seed)`` called as the author's
  notebook ``notebooks/fmnist-sgd-EOS.ipynb`` calls it (one ``forward``);
* ``spectral.lanczos_alg`` at orders 10–60 (each order its own run, as a caller would);
* the same function with its one normalisation line (``w_orthog /= unorthog_norm``)
  deleted from the source at run time ("no-norm");
* ``instab_lib.curvature.lanczos(k=10)``: float64 with tol 1e-6 (the tight reference)
  and float32 with tol 1e-4 (HVPs and time);
* a cross-check of ``instab_lib.experiments.author_lanczos`` (the page's NumPy transcription)
  against the author's function from the author's own start vector, on the MLP and on
  the diagonal example of the page.

Nothing of the author's repository is in this one: pass a folder holding the files of
``lawrencewang94/jax_eigs`` at the commit you read, or the bare git directory of a
mirror with ``--commit`` (then its ``*.py`` files are extracted to a temporary folder).
Two interpreters: this script runs under the project's environment (torch,
``instab_lib``) and starts itself under ``--jax-python`` (a separate venv built from
``benchmarks/requirements-jax.txt``) for the author's side, with XLA on one thread.

Run (from the repository root):
  .venv/bin/python benchmarks/bench_author_solver.py \\
      --jax-python .venv-jax/bin/python \\
      --jax-eigs /path/to/jax_eigs.git --commit 8db90d375feab7d15a77f55edf7d914427f82d8e
Results (JSON) go to --out (default _build/bench/author_solver.json); a Markdown table
is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NORM_LINE = "w_orthog /= unorthog_norm"
ORDERS = (10, 20, 30, 40, 50, 60)


# =============================================================================== helpers
def rel_errors(est: np.ndarray, ref: np.ndarray, k: int) -> tuple[float, float]:
    """(top-1 relative error, max relative error over the top k), index-matched, descending."""
    est = np.sort(np.asarray(est, dtype=np.float64))[::-1][:k]
    ref = np.sort(np.asarray(ref, dtype=np.float64))[::-1][:k]
    n = min(len(est), len(ref))
    rel = np.abs(est[:n] - ref[:n]) / np.abs(ref[:n])
    return float(rel[0]), float(rel.max())


def extract_repo(path: Path, commit: str | None, dest: Path) -> Path:
    """A folder with the author's ``*.py`` files: ``path`` itself, or extracted from a bare git dir."""
    if (path / "spectral.py").is_file():
        return path
    if not (path / "HEAD").is_file() or commit is None:
        raise SystemExit(f"--jax-eigs {path}: neither a folder with spectral.py nor a git dir (needs --commit)")
    names = subprocess.run(["git", "--git-dir", str(path), "ls-tree", "--name-only", commit],
                           check=True, capture_output=True, text=True).stdout.split()
    py = [n for n in names if n.endswith(".py")]
    arch = subprocess.run(["git", "--git-dir", str(path), "archive", commit, "--", *py],
                          check=True, capture_output=True).stdout
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=arch, check=True)
    return dest


# =============================================================================== torch side
def torch_side(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch
    from torch import nn

    sys.path.insert(0, str(ROOT))
    from instab_lib.curvature import HessianOperator, lanczos
    from instab_lib.experiments import data as data_mod
    from instab_lib.experiments import train as train_mod
    from instab_lib.experiments.models import build_model

    torch.set_num_threads(1)
    ds = data_mod.load_dataset("fashion-mnist", n_train=args.n_train, n_test=0)
    X, y = ds.X_train, ds.y_train
    ce = nn.CrossEntropyLoss()
    out: dict[str, Any] = {"seeds": {}, "data_source": ds.source, "torch": torch.__version__}
    arrays: dict[str, np.ndarray] = {"X": X.reshape(len(X), -1).numpy(), "y": y.numpy()}
    for seed in args.seeds:
        cfg = train_mod.TrainConfig(n_train=args.n_train, n_test=0, lr=args.lr, epochs=args.epochs,
                                    target_train_acc=None, eval_every=0, seed=seed,
                                    snapshot_epochs=(args.epochs,))
        run = train_mod.train(cfg, progress=False, num_threads=1)
        model = build_model("mlp", seed=seed)
        torch.nn.utils.vector_to_parameters(run.snapshot(args.epochs)["theta"], model.parameters())
        model.eval()
        with torch.no_grad():
            loss32 = float(ce(model(X), y))
        lin = [m for m in model if isinstance(m, nn.Linear)]
        for i, m in enumerate(lin):
            arrays[f"s{seed}_W{i}"] = m.weight.detach().numpy().T.copy()  # flax kernel = Wᵀ
            arrays[f"s{seed}_b{i}"] = m.bias.detach().numpy().copy()
        # reference: float64, tol 1e-6
        m64 = build_model("mlp", seed=seed).double()
        torch.nn.utils.vector_to_parameters(run.snapshot(args.epochs)["theta"].double(), m64.parameters())
        op64 = HessianOperator(m64, ce, (X.double(), y))
        t0 = time.perf_counter()
        ref = lanczos(op64, k=10, tol=1e-6, seed=seed)
        t_ref = time.perf_counter() - t0
        # float32, tol 1e-4
        op32 = HessianOperator(model, ce, (X, y))
        t0 = time.perf_counter()
        r32 = lanczos(op32, k=10, tol=1e-4, seed=seed)
        t32 = time.perf_counter() - t0
        v = torch.randn(op32.dim, generator=torch.Generator().manual_seed(seed))
        op32.matvec(v)
        ts = []
        for _ in range(args.hvp_repeats):
            t0 = time.perf_counter()
            op32.matvec(v)
            ts.append(time.perf_counter() - t0)
        ref_vals = ref.eigenvalues.numpy()
        out["seeds"][str(seed)] = {
            "train_loss_torch": loss32, "train_acc": float(run.final()["train_acc"]),
            "ref_eigenvalues": ref_vals.tolist(), "ref_hvps": int(ref.n_matvec), "ref_time_s": t_ref,
            "ref_max_rel_resid": float(ref.residuals.max() / ref.eigenvalues.abs().max()),
            "ref_converged": bool(ref.converged), "f32_converged": bool(r32.converged),
            "f32_eigenvalues": r32.eigenvalues.numpy().tolist(), "f32_hvps": int(r32.n_matvec),
            "f32_time_s": t32, "f32_err": rel_errors(r32.eigenvalues.numpy(), ref_vals, 10),
            "torch_ms_per_hvp": 1e3 * statistics.median(ts),
        }
        print(f"[torch] seed {seed}: loss {loss32:.6f}, λ₁ {ref_vals[0]:.4f} ({ref.n_matvec} HVPs f64), "
              f"f32 tol 1e-4 {r32.n_matvec} HVPs {t32:.2f} s", flush=True)
    np.savez(work / "weights.npz", **arrays)
    return out


# =============================================================================== JAX side (worker)
def jax_worker(args: argparse.Namespace) -> None:
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import importlib.util
    import types
    import warnings

    warnings.simplefilter("ignore")
    repo = Path(args.jax_eigs)
    sys.path.insert(0, str(repo))
    try:
        import neural_tangents  # noqa: F401  (modules.py imports it at the top; MLPNet does not use it)
        nt_stub = False
    except Exception:
        sys.modules["neural_tangents"] = types.ModuleType("neural_tangents")
        nt_stub = True
    import jax
    import jax.numpy as jnp
    import optax
    from flax.training import train_state

    import callbacks  # the author's
    import modules  # the author's
    import spectral  # the author's

    # the page's transcription, loaded from its file (numpy only; instab_lib is not installed here)
    spec = importlib.util.spec_from_file_location("author_lanczos", ROOT / "instab_lib" / "experiments" / "author_lanczos.py")
    al = importlib.util.module_from_spec(spec)
    sys.modules["author_lanczos"] = al
    spec.loader.exec_module(al)

    # the author's function with its one normalisation line removed, built at run time
    src = (repo / "spectral.py").read_text()
    if src.count(NORM_LINE) != 1:
        raise SystemExit(f"expected the line {NORM_LINE!r} once in spectral.py, found {src.count(NORM_LINE)}")
    fixed = types.ModuleType("spectral_no_norm")
    fixed.__file__ = str(repo / "spectral.py")
    exec(compile(src.replace(NORM_LINE, "pass  # removed: " + NORM_LINE), "spectral_no_norm", "exec"),
         fixed.__dict__)

    z = np.load(args.worker)
    X, y = jnp.asarray(z["X"]), jnp.asarray(z["y"].astype(np.int32))
    loss_fn = optax.softmax_cross_entropy_with_integer_labels
    res: dict[str, Any] = {"jax": jax.__version__, "neural_tangents_stub": nt_stub,
                           "devices": str(jax.devices()), "seeds": {}}
    for seed in args.seeds:
        model = modules.MLPNet(3, 32, 10, use_BN=False, use_DO=False, inputs_flatten=True)
        init = model.init(jax.random.PRNGKey(seed), X[:1])["params"]
        params = {f"Dense_{i}": {"kernel": jnp.asarray(z[f"s{seed}_W{i}"]), "bias": jnp.asarray(z[f"s{seed}_b{i}"])}
                  for i in range(4)}
        same = jax.tree_util.tree_map(lambda a, b: a.shape == b.shape and a.dtype == b.dtype, dict(init), params)
        if jax.tree_util.tree_structure(dict(init)) != jax.tree_util.tree_structure(params) or not all(
                jax.tree_util.tree_leaves(same)):
            raise SystemExit("the author's MLPNet parameters do not match the torch model's shapes")
        state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(args.lr))
        loss_wrap = spectral.get_loss_wrap(state, loss_fn, bn=False)
        loss_jax = float(loss_wrap(state.params, (X, y)))

        hvpcb = callbacks.hvpCB(loss_fn=loss_fn, batches=(X, y), save_freq=1, hess_bs=len(X), state=state, bn=False)
        count = [0]
        raw_hvp = hvpcb.hvp

        def counted(w, v, _raw=raw_hvp):
            count[0] += 1
            return _raw(w, v)

        hvpcb.hvp = counted
        dim = int(hvpcb.num_params)
        v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
        t0 = time.perf_counter()
        raw_hvp(state.params, v).block_until_ready()
        compile_s = time.perf_counter() - t0
        ts = []
        for _ in range(args.hvp_repeats):
            t0 = time.perf_counter()
            raw_hvp(state.params, v).block_until_ready()
            ts.append(time.perf_counter() - t0)

        # 1. spectrumCB as the author's notebooks call it
        spec_cb = callbacks.spectrumCB(n_eigs=20, n_evecs=10, loss_fn=loss_fn, seed=seed, hvpCB=hvpcb,
                                       save_freq=1, verbose=False)
        count[0] = 0
        t0 = time.perf_counter()
        spec_cb.forward(epoch=1, state=state)
        t_cb = time.perf_counter() - t0
        cb_vals = np.asarray(spec_cb.last_eigval, dtype=np.float64)
        cb_hvps = count[0]
        t0 = time.perf_counter()  # a second call (next random start), jitted helpers compiled
        spec_cb.forward(epoch=2, state=state)
        t_cb_warm = time.perf_counter() - t0

        # 2. lanczos_alg at each order, with and without the normalisation line
        hvp_cl = lambda vec: hvpcb.hvp(state.params, vec)  # noqa: E731  (as spectrumCB builds it)
        orders: dict[str, dict[str, Any]] = {"author": {}, "no_norm": {}}
        last_T: dict[str, np.ndarray] = {}
        for name, mod in (("author", spectral), ("no_norm", fixed)):
            for order in args.orders:
                key = jax.random.split(jax.random.PRNGKey(seed))[1]  # = spectrumCB's first split
                count[0] = 0
                t0 = time.perf_counter()
                tri, vecs = mod.lanczos_alg(hvp_cl, dim, order, key)
                dt = time.perf_counter() - t0
                ev = np.sort(np.linalg.eigvalsh(tri))[::-1]
                gram = np.asarray(vecs, dtype=np.float64) @ np.asarray(vecs, dtype=np.float64).T
                orders[name][str(order)] = {"eigenvalues": ev[:10].tolist(), "hvps": count[0], "time_s": dt,
                                            "max_offdiag": float(np.max(np.diag(tri, 1))) if order > 1 else 0.0,
                                            "orth_err": float(np.abs(gram - np.eye(order)).max())}
                last_T[name] = tri
                if order == max(args.orders):
                    last_T[name + "_v0"] = np.asarray(vecs[0], dtype=np.float64)

        # 3. the page's transcription from the author's start vector, with the author's HVP
        mv = lambda vec: np.asarray(raw_hvp(state.params, vec.astype(np.float32)), dtype=np.float64)  # noqa: E731
        cross = {}
        for step, name in (("author", "author"), ("textbook", "no_norm")):
            run = al.lanczos_tridiagonal(mv, last_T[name + "_v0"], max(args.orders), step)
            T = al.tridiagonal(run.alpha, run.beta)
            n = T.shape[0]
            cross[step] = {"max_abs_T_diff": float(np.abs(T - last_T[name][:n, :n]).max()),
                           "top1_transcription": float(al.ritz_values(run)[0]),
                           "top1_author_fn": float(np.linalg.eigvalsh(last_T[name])[-1])}
        res["seeds"][str(seed)] = {
            "train_loss_jax": loss_jax, "hvp_compile_s": compile_s, "jax_ms_per_hvp": 1e3 * statistics.median(ts),
            "spectrumCB_eigenvalues": cb_vals[:10].tolist(), "spectrumCB_hvps": cb_hvps, "spectrumCB_time_s": t_cb,
            "spectrumCB_time_warm_s": t_cb_warm,
            "orders": orders, "transcription_check": cross,
        }
        print(f"[jax] seed {seed}: loss {loss_jax:.6f}, spectrumCB λ₁ {cb_vals[0]:.4f} ({cb_hvps} HVPs, "
              f"{t_cb:.2f} s)", flush=True, file=sys.stderr)

    # 4. the diagonal example through the author's function (its own start vector) and the transcription
    eig, _ = al.diagonal_example(0)
    key = jax.random.split(jax.random.PRNGKey(0))[1]
    diag = {}
    for name, mod, step in (("author", spectral, "author"), ("no_norm", fixed, "textbook")):
        tri, vecs = mod.lanczos_alg(lambda vec: eig * np.asarray(vec), eig.size, 20, key)
        run = al.lanczos_tridiagonal(lambda vec: eig * vec, np.asarray(vecs[0], dtype=np.float64), 20, step)
        diag[name] = {"top3_author_fn": np.sort(np.linalg.eigvalsh(tri))[::-1][:3].tolist(),
                      "top3_transcription": al.ritz_values(run)[:3].tolist(),
                      "max_abs_T_diff": float(np.abs(al.tridiagonal(run.alpha, run.beta) - tri).max())}
    res["diagonal_example_order20"] = diag
    Path(args.worker_out).write_text(json.dumps(res))


# =============================================================================== report
def report(tor: dict[str, Any], jx: dict[str, Any], orders: tuple[int, ...]) -> str:
    lines = []
    seeds = list(tor["seeds"])
    lines.append("| seed | loss torch | loss jax | \\|Δloss\\| | true λ₁ | spectrumCB λ₁ | ratio | top-10 max rel. err | "
                 "no-norm order 20 λ₁ err | instab f32 tol 1e-4: HVPs, max rel. err |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    ratios = []
    for s in seeds:
        t, j = tor["seeds"][s], jx["seeds"][s]
        ref = np.asarray(t["ref_eigenvalues"])
        cb = np.asarray(j["spectrumCB_eigenvalues"])
        e1, e10 = rel_errors(cb, ref, 10)
        nn1, _ = rel_errors(j["orders"]["no_norm"]["20"]["eigenvalues"], ref, 10)
        ratios.append(cb[0] / ref[0])
        lines.append(f"| {s} | {t['train_loss_torch']:.7f} | {j['train_loss_jax']:.7f} | "
                     f"{abs(t['train_loss_torch'] - j['train_loss_jax']):.1e} | {ref[0]:.3f} | {cb[0]:.3f} | "
                     f"{cb[0] / ref[0]:.3f} | {e10:.0%} | {nn1:.1e} | {t['f32_hvps']}, {t['f32_err'][1]:.1e} |")
    lines.append("")
    lines.append(f"Median ratio spectrumCB λ₁ / true λ₁: {np.median(ratios):.3f} (range {min(ratios):.3f}–{max(ratios):.3f}).")
    lines.append("")
    lines.append("Order sweep (`lanczos_alg` at each order, own run each; median over seeds of the relative error):")
    lines.append("")
    lines.append("| order | author λ₁ err | author top-10 max err | no-norm λ₁ err | no-norm top-10 max err | max β (author) |")
    lines.append("|---|---|---|---|---|---|")
    for o in orders:
        row = {}
        for name in ("author", "no_norm"):
            e = [rel_errors(jx["seeds"][s]["orders"][name][str(o)]["eigenvalues"],
                            tor["seeds"][s]["ref_eigenvalues"], 10) for s in seeds]
            row[name] = (np.median([a for a, _ in e]), np.median([b for _, b in e]))
        mb = max(jx["seeds"][s]["orders"]["author"][str(o)]["max_offdiag"] for s in seeds)
        lines.append(f"| {o} | {row['author'][0]:.1%} | {row['author'][1]:.1%} | {row['no_norm'][0]:.1e} | "
                     f"{row['no_norm'][1]:.1e} | {mb:.4f} |")
    lines.append("")
    lines.append("Cost (medians over seeds; one thread):")
    lines.append("")
    med = lambda key, side: statistics.median(side["seeds"][s][key] for s in seeds)  # noqa: E731
    lines.append("| method | HVPs | time (s) | ms / HVP |")
    lines.append("|---|---|---|---|")
    lines.append(f"| author `spectrumCB(n_eigs=20)` (JAX, jitted HVP) | {med('spectrumCB_hvps', jx):.0f} | "
                 f"{med('spectrumCB_time_s', jx):.2f} first call, {med('spectrumCB_time_warm_s', jx):.2f} second | "
                 f"{med('jax_ms_per_hvp', jx):.2f} (compiling the HVP: {med('hvp_compile_s', jx):.2f} s) |")
    lines.append(f"| `instab_lib.lanczos(k=10, tol=1e-4)` float32 | {med('f32_hvps', tor):.0f} | "
                 f"{med('f32_time_s', tor):.2f} | {med('torch_ms_per_hvp', tor):.2f} |")
    lines.append(f"| `instab_lib.lanczos(k=10, tol=1e-6)` float64 (reference) | {med('ref_hvps', tor):.0f} | "
                 f"{med('ref_time_s', tor):.2f} | — |")
    lines.append("")
    cross = [jx["seeds"][s]["transcription_check"] for s in seeds]
    lines.append("Transcription check (`instab_lib.experiments.author_lanczos` from the author's start vector, author's HVP, order "
                 f"{max(orders)}): max |T − T_author| = "
                 f"{max(c['author']['max_abs_T_diff'] for c in cross):.1e} (author step), "
                 f"{max(c['textbook']['max_abs_T_diff'] for c in cross):.1e} (textbook step vs no-norm); "
                 f"top Ritz value, max relative difference "
                 f"{max(abs(c['author']['top1_transcription'] / c['author']['top1_author_fn'] - 1) for c in cross):.1e}"
                 f" (author step). Lanczos vectors of the author's function, max |VVᵀ − I| = "
                 f"{max(jx['seeds'][s]['orders']['author'][str(o)]['orth_err'] for s in seeds for o in orders):.1e}.")
    d = jx["diagonal_example_order20"]
    lines.append(f"Diagonal example (seed 0 spectrum, the author's start vector from PRNGKey(0)), order 20: author's "
                 f"function {np.round(d['author']['top3_author_fn'], 3).tolist()}, transcription "
                 f"{np.round(d['author']['top3_transcription'], 3).tolist()}; no-norm "
                 f"{np.round(d['no_norm']['top3_author_fn'], 3).tolist()}.")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jax-python", default=str(ROOT / ".venv-jax" / "bin" / "python"))
    p.add_argument("--jax-eigs", required=True, help="folder with the author's files, or a bare git dir (+ --commit)")
    p.add_argument("--commit", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--orders", type=int, nargs="+", default=list(ORDERS))
    p.add_argument("--hvp-repeats", type=int, default=30)
    p.add_argument("--out", default=str(ROOT / "_build" / "bench" / "author_solver.json"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        jax_worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo = extract_repo(Path(args.jax_eigs), args.commit, work / "jax_eigs")
        tor = torch_side(args, work)
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        cmd = [os.path.abspath(args.jax_python), str(Path(__file__).resolve()), "--jax-eigs", str(repo),
               "--worker", str(work / "weights.npz"), "--worker-out", str(work / "jax.json"),
               "--seeds", *map(str, args.seeds), "--orders", *map(str, args.orders),
               "--lr", str(args.lr), "--hvp-repeats", str(args.hvp_repeats)]
        subprocess.run(cmd, check=True, env=env, cwd=str(repo))
        jx = json.loads((work / "jax.json").read_text())
    out = {"args": {k: v for k, v in vars(args).items() if not k.startswith("worker")}, "torch": tor, "jax": jx}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(report(tor, jx, tuple(args.orders)))
    print(f"\n(JSON: {args.out}; jax {jx['jax']}, torch {tor['torch']}, neural_tangents stubbed: "
          f"{jx['neural_tangents_stub']})")


if __name__ == "__main__":
    main()
