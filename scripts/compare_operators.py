#!/usr/bin/env python
"""Bit-for-bit check of the curvature operators and solvers across a refactor.

A refactor changes no number. Run this on the code before the change and save the outputs,
then on the code after it and compare:

    PYTHONPATH=. python scripts/compare_operators.py --save /tmp/ops_before.pt
    PYTHONPATH=. python scripts/compare_operators.py --compare /tmp/ops_before.pt

On fixed seeds it records the outputs of ``HessianOperator.matmat`` / ``matvec`` for every
method (double backward, forward-over-reverse, both batched, the closed-form MLP product,
``auto``, chunked) on a small MLP with Fashion-MNIST-shaped inputs in float32 and float64;
``lanczos`` top-10 / bottom-3, ``extreme_eigenpairs``, ``lobpcg``, ``power_iteration``,
``EigTracker`` (each warm start) over a few gradient-descent steps, ``hutchinson_trace``,
``slq_density``, ``preconditioned.preconditioned_sharpness`` and ``landscape.PointHessian``
products and solves — with every ``n_matvec`` count. ``--compare`` asserts ``torch.equal``
for every tensor and ``==`` for everything else, prints the differences and exits 1 on any.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
from torch import nn

from instab_lib import curvature, preconditioned
from instab_lib.experiments import landscape


def _mlp(dtype: torch.dtype, seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(48, 1, 28, 28, generator=g, dtype=dtype)
    y = torch.randint(0, 10, (48,), generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 6), nn.Tanh(), nn.Linear(6, 10)).to(dtype)
    return model, (X, y)


def _eig(r: Any) -> dict[str, Any]:
    return {"values": r.eigenvalues, "vectors": r.eigenvectors, "residuals": r.residuals,
            "n_matvec": r.n_matvec, "converged": r.converged, "iterations": r.iterations,
            "scale": r.scale, "extra": dict(r.extra)}


def _products(out: dict[str, Any], dtype: torch.dtype) -> None:
    CE = nn.CrossEntropyLoss()
    model, data = _mlp(dtype)
    chunks = [(data[0][:20], data[1][:20]), (data[0][20:], data[1][20:])]
    dim = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(1)
    V = torch.randn(dim, 5, generator=g, dtype=dtype)
    v = torch.randn(dim, generator=g, dtype=dtype)
    configs = {
        "db": dict(method="double_backward"), "fr": dict(method="forward_over_reverse"),
        "db_batched": dict(method="double_backward", batched=True),
        "fr_batched": dict(method="forward_over_reverse", batched=True),
        "mlp": dict(method="mlp"), "auto": dict(method="auto"),
        "db_chunked": dict(method="double_backward", chunk_size=16),
        "db_rebuild": dict(method="double_backward", graph_budget_bytes=0),
    }
    for name, kw in configs.items():
        for split in ("one", "chunks"):
            op = curvature.HessianOperator(model, CE, data if split == "one" else chunks, **kw)
            key = f"{dtype}/{name}/{split}"
            out[key + "/matmat"] = op.matmat(V)
            out[key + "/matvec"] = op.matvec(v)
            out[key + "/matmul"] = op @ V
            out[key + "/k0"] = op.matmat(V[:, :0])
            out[key + "/n_matvec"] = op.n_matvec
            out[key + "/method_used"] = op.method_used
    op = curvature.HessianOperator(model, CE, data, method="double_backward")
    loss, grad = op.loss_and_gradient()
    out[f"{dtype}/loss_and_gradient"] = (loss, grad)


def _solvers(out: dict[str, Any], dtype: torch.dtype) -> None:
    CE = nn.CrossEntropyLoss()
    model, data = _mlp(dtype, seed=2)
    tol = 1e-3 if dtype == torch.float32 else 1e-8
    for method in ("double_backward", "mlp"):
        key = f"{dtype}/{method}"
        op = curvature.HessianOperator(model, CE, data, method=method)
        out[key + "/lanczos_top10"] = _eig(curvature.lanczos(op, 10, tol=tol, seed=3))
        out[key + "/lanczos_bottom3"] = _eig(curvature.lanczos(op, 3, which="SA", tol=tol, seed=4))
        out[key + "/lanczos_block"] = _eig(curvature.lanczos(op, 4, tol=tol, seed=5, block_size=2))
        top, bot = curvature.extreme_eigenpairs(op, 3, 2, tol=tol, seed=6)
        out[key + "/extreme"] = (_eig(top), _eig(bot))
        X0 = torch.randn(op.dim, 4, generator=torch.Generator().manual_seed(7), dtype=dtype)
        out[key + "/lobpcg"] = _eig(curvature.lobpcg(op, X0, tol=tol, max_iter=40))
        out[key + "/power"] = _eig(curvature.power_iteration(op, tol=tol, max_iter=200, seed=8))
        out[key + "/hutchinson"] = curvature.hutchinson_trace(op, 6, seed=9)
        out[key + "/hutchinson_p2"] = curvature.hutchinson_trace(op, 4, seed=9, power=2, batch=3)
        out[key + "/slq"] = curvature.slq_density(op, 2, 12, seed=10)
        out[key + "/n_matvec"] = op.n_matvec
        d = torch.linspace(0.5, 2.0, op.dim, dtype=dtype)
        out[key + "/precond"] = _eig(preconditioned.preconditioned_sharpness(op, d, tol=tol, seed=11))
        pop = preconditioned.PreconditionedOperator(op, d)
        Vp = torch.randn(op.dim, 3, generator=torch.Generator().manual_seed(12), dtype=dtype)
        out[key + "/precond_matmat"] = (pop.matmat(Vp), pop.matvec(Vp[:, 0]), pop.to_original(Vp), pop.n_matvec)


def _tracking(out: dict[str, Any], dtype: torch.dtype) -> None:
    CE = nn.CrossEntropyLoss()
    for warm in ("krylov", "residual", "lobpcg"):
        model, data = _mlp(dtype, seed=13)
        tracker = curvature.EigTracker(k=3, tol=1e-3 if dtype == torch.float32 else 1e-7, warm=warm,
                                       guard=1 if warm != "krylov" else 0)
        res = []
        for _ in range(4):
            op = curvature.HessianOperator(model, CE, data, method="double_backward")
            res.append(_eig(tracker.update(op)))
            _, g = op.loss_and_gradient()
            with torch.no_grad():
                for p, gp in zip(model.parameters(), curvature.unflatten_like(g, list(model.parameters()))):
                    p -= 0.5 * gp
        out[f"{dtype}/tracker/{warm}"] = (res, tracker.history)


def _matrix(out: dict[str, Any]) -> None:
    g = torch.Generator().manual_seed(14)
    Q, _ = torch.linalg.qr(torch.randn(80, 80, generator=g, dtype=torch.float64))
    lam = torch.cat([torch.tensor([9.0, 7.0, 5.0, -4.0]), torch.linspace(-1, 1, 76)]).double()
    A = (Q * lam) @ Q.T
    A = 0.5 * (A + A.T)
    op = curvature.MatrixOperator(A)
    out["matrix/lanczos"] = _eig(curvature.lanczos(op, 3, tol=1e-10))
    out["matrix/lanczos_lm"] = _eig(curvature.lanczos(op, 4, which="LM", tol=1e-10))
    out["matrix/power"] = _eig(curvature.power_iteration(op, tol=1e-8, max_iter=2000))
    out["matrix/lobpcg"] = _eig(curvature.lobpcg(op, Q[:, :3] + 0.1, tol=1e-9))
    out["matrix/slq"] = curvature.slq_density(op, 3, 20, seed=1)
    out["matrix/matvec"] = (op.matvec(Q[:, 0]), op.matmat(Q[:, :4]), op.n_matvec)


def _point_hessian(out: dict[str, Any]) -> None:
    model, (X, y) = _mlp(torch.float64, seed=15)
    f = landscape.network_loss(model, nn.CrossEntropyLoss(), X, y, chunk=20)
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    op = landscape.PointHessian(f, theta)
    g = torch.Generator().manual_seed(16)
    V = torch.randn(op.dim, 3, generator=g, dtype=torch.float64)
    out["point/products"] = (op.matvec(V[:, 0]), op.matmat(V), op @ V[:, 1], op.loss, op.grad)
    out["point/lanczos"] = _eig(curvature.lanczos(op, 2, tol=1e-6))
    out["point/n_matvec"] = op.n_matvec
    u = landscape.unit(V[:, 2])
    out["point/derivatives"] = landscape.directional_derivatives(f, theta, u)


def collect() -> dict[str, Any]:
    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    for dtype in (torch.float32, torch.float64):
        _products(out, dtype)
        _solvers(out, dtype)
        _tracking(out, dtype)
    _matrix(out)
    _point_hessian(out)
    return out


def _diff(a: Any, b: Any, path: str, bad: list[str]) -> None:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b))
        if not same:
            bad.append(path)
    elif isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            bad.append(f"{path} (keys {sorted(set(a) ^ set(b))})")
        for k in a.keys() & b.keys():
            _diff(a[k], b[k], f"{path}/{k}", bad)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            bad.append(f"{path} (lengths {len(a)} != {len(b)})")
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}[{i}]", bad)
    elif not (a == b or (a != a and b != b)):  # NaN equals NaN
        bad.append(f"{path}: {a!r} != {b!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--save", help="write the outputs to this file (torch.save)")
    ap.add_argument("--compare", help="compare the outputs with those saved in this file")
    args = ap.parse_args(argv)
    out = collect()
    if args.save:
        torch.save(out, args.save)
        print(f"saved {len(out)} entries to {args.save}")
    if args.compare:
        before = torch.load(args.compare, weights_only=False)
        bad: list[str] = []
        _diff(before, out, "", bad)
        n_mv = sum(1 for k in out if k.endswith("n_matvec"))
        if bad:
            print(f"{len(bad)} differences:\n  " + "\n  ".join(sorted(bad)))
            return 1
        print(f"all {len(out)} entries bit-identical (torch.equal; {n_mv} n_matvec counts equal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
