"""Grids of runs: cached runs are read back, the rest run in parallel.

``sweep(base, {"lr": [0.02, 0.1], "seed": [0, 1]}, cache_dir)`` runs the Cartesian
product of the grid over ``base`` (dotted keys set one entry of a dict field, e.g.
``"optimizer_kwargs.c"``). Runs already finished in ``cache_dir`` are loaded, not
recomputed; identical configurations are run once. Where the rest run:

* ``executor=None`` or ``"processes"``: local worker processes (``spawn``, never ``fork``: a process forked
  from one that has initialised CUDA cannot use it, and runs on one GPU share it through these workers), at most
  ``max_workers`` (default: the CPU count), each with ``cpus // max_workers`` torch threads (1 by
  default): the thread count, which can change a run's last bits, depends on the machine and the
  arguments only, never on how many of the runs were already cached (or are being computed by
  another process at the same time);
* ``"serial"``: in this process, one after the other (debugging);
* a ``dask.distributed`` scheduler address (``"tcp://host:8786"``) or a ``Client``.

A run that raises (a bug, not a divergence: divergence is a result) comes back as a
``RunResult`` with ``status="failed"`` and the error text, so a sweep is never lost.
``summary(results)`` gives one row per run.
"""

from __future__ import annotations

import itertools
import os
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import multiprocessing as mp
import pandas as pd

from .train import RunResult, TrainConfig, cached_run, config_key, default_cache_dir, load_run, train

__all__ = ["grid_configs", "sweep", "run_many", "summary"]


def grid_configs(base: TrainConfig, grid: Mapping[str, Sequence[Any]]) -> list[TrainConfig]:
    """The Cartesian product of ``grid`` applied to ``base`` (first key varies slowest).
    Each config is validated on construction, so a bad value fails here, before compute."""
    if not grid:
        return [base]
    keys = list(grid)
    for k in keys:
        if isinstance(grid[k], (str, bytes)) or not isinstance(grid[k], Iterable):
            raise ValueError(f"grid[{k!r}] must be a list of values, got {grid[k]!r}")
    values = [list(grid[k]) for k in keys]
    if any(len(v) == 0 for v in values):
        raise ValueError(f"empty value list in grid {dict(grid)}")
    return [base.replace(**dict(zip(keys, combo))) for combo in itertools.product(*values)]


def _worker(config: TrainConfig, cache_dir: str, threads: int | None) -> tuple[str, str | None]:
    """Run one config in a worker; returns (run folder, error text or None)."""
    try:
        r = train(config, cache_dir, progress=False, num_threads=threads)
        return str(r.path), None
    except Exception:  # noqa: BLE001 - reported in the RunResult
        return "", traceback.format_exc()


def _failed(config: TrainConfig, err: str) -> RunResult:
    return RunResult(config=config, key=config_key(config), status="failed", table=pd.DataFrame(), error=err)


def sweep(
    base: TrainConfig,
    grid: Mapping[str, Sequence[Any]],
    cache_dir: str | os.PathLike | None = None,
    executor: Any = None,
    max_workers: int | None = None,
    threads_per_worker: int | None = None,
) -> list[RunResult]:
    """Run (or read back) every configuration of the grid; results in grid order.

    Args:
        base: the configuration the grid varies.
        grid: field name (or ``"model_kwargs.width"``-style dotted key) → values.
        cache_dir: where runs live (default :func:`instab_lib.experiments.train.default_cache_dir`).
        executor: ``None``/``"processes"``, ``"serial"``, a Dask scheduler address or a
            ``distributed.Client``.
        max_workers: local processes (default ``os.cpu_count()``).
        threads_per_worker: torch threads per run (default ``cpus // max_workers``, ≥ 1).
    """
    return run_many(grid_configs(base, grid), cache_dir, executor, max_workers, threads_per_worker)


def run_many(
    configs: Sequence[TrainConfig],
    cache_dir: str | os.PathLike | None = None,
    executor: Any = None,
    max_workers: int | None = None,
    threads_per_worker: int | None = None,
) -> list[RunResult]:
    """Run (or read back) any list of configurations, in parallel as :func:`sweep` does;
    results in the order given (identical configurations are run once)."""
    cache = Path(cache_dir if cache_dir is not None else default_cache_dir())
    keys = [config_key(c) for c in configs]
    done: dict[str, RunResult] = {}
    todo: dict[str, TrainConfig] = {}
    for k, c in zip(keys, configs):
        if k not in todo and k not in done and (cached := cached_run(cache / k)) is not None:
            done[k] = cached  # a damaged entry is warned about here and trained again below
        elif k not in done:
            todo[k] = c
    if todo:
        done.update(_run_all(todo, cache, executor, max_workers, threads_per_worker))
    return [done[k] for k in keys]


def _run_all(todo: dict[str, TrainConfig], cache: Path, executor: Any, max_workers: int | None,
             threads: int | None) -> dict[str, RunResult]:
    cpus = os.cpu_count() or 1
    out: dict[str, RunResult] = {}

    def collect(k: str, path: str, err: str | None) -> None:
        out[k] = load_run(path) if err is None else _failed(todo[k], err)

    if executor == "serial":
        for k, c in todo.items():
            collect(k, *_worker(c, str(cache), threads))
        return out
    if executor is None or executor == "processes":
        workers = max(1, min(max_workers or cpus, len(todo)))
        thr = threads or max(1, cpus // max(1, max_workers or cpus))  # not // workers: see the module's doc
        # spawn, never fork: cuda configs share one GPU through these workers (see the module's doc)
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futs = {k: pool.submit(_worker, c, str(cache), thr) for k, c in todo.items()}
            for k, f in futs.items():
                collect(k, *f.result())
        return out
    # Dask: an address or a Client
    from distributed import Client

    client = executor if isinstance(executor, Client) else Client(executor)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or 1)
        thr = threads or max(1, cpus // n_workers)
        futs = {k: client.submit(_worker, c, str(cache), thr, pure=False, key=f"train-{k}")
                for k, c in todo.items()}
        for k, f in futs.items():
            collect(k, *f.result())
    finally:
        if client is not executor:
            client.close()
    return out


def _flatten_config(c: TrainConfig) -> dict[str, Any]:
    d = c.to_dict()
    flat: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                flat[f"{k}.{kk}"] = vv
        else:
            flat[k] = v if not isinstance(v, list) else tuple(v)
    return flat


def summary(results: Sequence[RunResult]) -> pd.DataFrame:
    """One row per run: the config fields (dict fields as ``model_kwargs.width`` etc.),
    ``key``, ``status``, ``diverged_step``, ``epochs``, final train/test loss and accuracy,
    final and max sharpness, wall and spectra time, and ``error`` for failed runs."""
    rows = []
    for r in results:
        row = _flatten_config(r.config)
        row.update({"key": r.key, "status": r.status, "diverged_step": r.diverged_step,
                    "diverged_epoch": r.diverged_epoch})
        fin = r.final()
        for k in ("epochs", "train_loss", "train_acc", "test_loss", "test_acc", "sharpness", "max_sharpness"):
            row[k] = fin.get(k, float("nan"))
        row["wall_time_s"], row["spectra_time_s"] = r.wall_time_s, r.spectra_time_s
        row["error"] = r.error
        rows.append(row)
    return pd.DataFrame(rows)
