"""Sweeps: grids, cache reuse, local processes, a Dask LocalCluster, summaries, failures."""

from __future__ import annotations

import pytest

from instab_lib.experiments import sweep as sweep_mod
from instab_lib.experiments.sweep import grid_configs, summary, sweep
from instab_lib.experiments.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest, like fake_fmnist


@pytest.fixture
def base(fake_fmnist) -> TrainConfig:
    return TrainConfig(data_dir=fake_fmnist, n_train=60, n_test=20, model_kwargs={"depth": 1, "width": 4},
                       lr=0.1, epochs=3, eval_every=3, k_top=1, target_train_acc=None)


def test_grid_configs_and_bad_values(base):
    cs = grid_configs(base, {"lr": [0.1, 0.2], "model_kwargs.width": [4, 6]})
    assert [(c.lr, c.model_kwargs["width"]) for c in cs] == [(0.1, 4), (0.1, 6), (0.2, 4), (0.2, 6)]
    assert cs[0].model_kwargs["depth"] == 1
    with pytest.raises(ValueError, match="learning rate"):
        grid_configs(base, {"lr": [0.1, -1.0]})
    with pytest.raises(ValueError, match="no field"):
        grid_configs(base, {"lrate": [0.1]})
    with pytest.raises(ValueError, match="list of values"):
        grid_configs(base, {"lr": 0.1})


def test_processes_then_cache_reuse(base, tmp_path, monkeypatch):
    # one spawned worker (importing torch in a fresh process costs seconds on 2 busy cores)
    res = sweep(base, {"lr": [0.05, 0.1]}, tmp_path, max_workers=1, threads_per_worker=1)
    assert [r.status for r in res] == ["finished", "finished"] and res[0].key != res[1].key
    # second sweep: both cached, a third is new and runs serially; nothing cached is rerun
    calls = []
    real = sweep_mod._run_all
    monkeypatch.setattr(sweep_mod, "_run_all", lambda todo, *a: calls.append(list(todo)) or real(todo, *a))
    res2 = sweep(base, {"lr": [0.05, 0.1, 0.2]}, tmp_path, executor="serial")
    assert len(calls) == 1 and len(calls[0]) == 1
    for a, b in zip(res, res2):
        assert a.table.equals(b.table)
    df = summary(res2)
    assert list(df["lr"]) == [0.05, 0.1, 0.2] and set(df["status"]) == {"finished"}
    assert {"model_kwargs.width", "test_acc", "max_sharpness", "diverged_step", "key"} <= set(df.columns)


def test_dask_local_cluster(base, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        res = sweep(base, {"seed": [0, 1], "lr": [1e4]}, tmp_path, executor=client)
    assert [r.status for r in res] == ["diverged", "diverged"]
    assert all(r.diverged_step is not None for r in res)


def test_failed_run_is_reported_not_lost(base, tmp_path):
    res = sweep(base.replace(data_dir=str(tmp_path / "nowhere")), {"lr": [0.1]}, tmp_path, executor="serial")
    assert res[0].status == "failed" and "FileNotFoundError" in res[0].error
    assert summary(res)["status"].tolist() == ["failed"]


def test_worker_processes_are_spawned_for_cuda_configs(base, tmp_path, monkeypatch):
    """Many small runs share one GPU through worker processes: a process forked from one that has
    initialised CUDA cannot use it, so the pool of a sweep whose configs ask for cuda (and of any
    other) starts its workers with ``spawn``. Checked without CUDA: the pool is a stub that records
    its start method and answers every run with an error."""
    from concurrent.futures import Future

    import torch

    pools = []

    class Pool:
        def __init__(self, max_workers, mp_context):
            pools.append((max_workers, mp_context.get_start_method()))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, config, cache, threads):
            f = Future()
            f.set_result(("", f"stub: {config.device}, {threads} thread(s)"))
            return f

    monkeypatch.setattr(sweep_mod, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a cuda config validates without a GPU
    cuda = grid_configs(base.replace(device="cuda"), {"lr": [0.05, 0.1, 0.2]})
    res = sweep_mod.run_many(cuda, tmp_path, max_workers=2, threads_per_worker=1)
    assert pools == [(2, "spawn")]
    assert [r.status for r in res] == ["failed"] * 3 and res[0].error == "stub: cuda, 1 thread(s)"
