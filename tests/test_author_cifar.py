"""The author's CIFAR setting (instab_lib.experiments.author_cifar): the runs it builds, the threshold measured
during training, and the best-above-minus-best-below comparison, on hand-made run tables."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from instab_lib.experiments import author_cifar as ac
from instab_lib.experiments import stats

SETTING = ac.Setting(n_train=40, n_test=100, classes=(0, 1), epochs=30, eval_every=5, hessian_n=20, n_val=20)


def test_sgd_run_is_the_authors_minibatch_setting():
    c = SETTING.sgd("vgg", 8, 0.1, 3)
    assert (c.optimizer, c.batch_size, c.lr, c.seed, c.loss, c.model) == ("sgd", 8, 0.1, 3, "ce", "vgg")
    assert c.lr_schedule == {"kind": "constant", "warmup_steps": 2} and c.target_train_acc == 0.999
    assert c.balanced and c.classes == (0, 1) and c.snapshot_epochs == (0, 5, 10, 15, 20, 25, 30) and c.snapshot_final
    assert (c.eval_every, c.k_top, c.hessian_n, c.n_val, c.precond_every) == (5, 1, 20, 20, 0)
    # the author's 5,000-epoch cap: snapshots every 250 epochs, 21 in all (a train-mode solve each, at the smallest η)
    long = ac.Setting(n_train=40, n_test=100, classes=None, epochs=5000, eval_every=20, hessian_n=20)
    assert long.snapshot_epochs == tuple(range(0, 5001, 250)) and len(long.snapshot_epochs) == ac.MAX_SNAPSHOTS + 1


def test_adaptive_runs_trace_their_own_clip_and_refuse_bad_input():
    c = SETTING.adaptive("resnet20", 8, "rms_ub", 0, c=0.5)
    assert c.optimizer == "rms_ub" and c.lr == ac.ADAPTIVE_ETA and c.optimizer_kwargs == {"beta2": 0.99, "c": 0.5}
    assert c.precond_every == 5 and c.clip_candidates == (0.1, 0.5, 1.0, 10.0)
    assert SETTING.adaptive("vgg", 8, "Adam", 1).optimizer_kwargs == {"beta2": 0.99}
    with pytest.raises(ValueError, match="needs a clip"):
        SETTING.adaptive("vgg", 8, "adam_ub", 0)
    with pytest.raises(ValueError, match="takes no clip"):
        SETTING.adaptive("vgg", 8, "rmsprop", 0, c=1.0)
    with pytest.raises(ValueError, match="not 'sgd'"):
        SETTING.adaptive("vgg", 8, "sgd", 0)
    with pytest.raises(ValueError, match="positive"):
        SETTING.adaptive("vgg", 8, "adam_ub", 0, c=-1.0)
    with pytest.raises(ValueError, match="exceeds n_train"):
        SETTING.sgd("vgg", 64, 0.1, 0)


def _run(lr, seed, sharpness, status="early_stopped", final_acc=1.0, root=None):
    """A stand-in for a RunResult: the config fields and table columns the summaries read."""
    epochs = np.arange(len(sharpness))
    table = pd.DataFrame({"epoch": epochs, "step": epochs * 4, "train_acc": np.linspace(0.5, final_acc, len(epochs)),
                          "test_acc": 0.8, "train_loss": 0.1, "sharpness": sharpness})
    if root is not None:
        table["root_max"] = root
    cfg = SimpleNamespace(lr=lr, seed=seed, n_train=40, batch_size=8, n_classes=2)
    return SimpleNamespace(config=cfg, table=table, status=status, diverged_step=None, wall_time_s=1.0,
                           data_source="test", key=f"{lr}-{seed}")


def test_seed_limits_are_two_over_the_largest_sharpness_of_trained_runs_at_that_eta():
    runs = [_run(0.01, 0, [1.0, 40.0, 20.0]), _run(0.01, 1, [1.0, 50.0, np.nan]),
            _run(0.01, 2, [1.0, 80.0], status="diverged"),  # blew up: left out
            _run(0.01, 3, [1.0, 25.0], status="stalled", final_acc=0.4),  # collapsed: left out
            _run(0.01, 4, [2.0, 10.0], status="finished"),  # capped: its sharpness counts
            _run(0.1, 0, [1.0, 400.0])]  # another η
    assert ac.seed_limits(runs, 0.01) == pytest.approx({0: 0.05, 1: 0.04, 4: 0.2})


def test_late_root_max_skips_the_first_epoch():
    r = _run(0.005, 0, [1.0, 2.0, 3.0, 4.0], root=[np.nan, 5.0, 0.3, 0.2])
    assert ac.late_root_max(r) == pytest.approx(0.3)
    assert ac.late_root_max(r, start=1) == pytest.approx(5.0)
    assert np.isnan(ac.late_root_max(_run(0.005, 0, [1.0])))


def _df(acc):
    """A summarize_runs-like table from {η: [test accuracy per seed, NaN: not at the target]}."""
    rows = [{"lr": e, "seed": s, "outcome": "target" if np.isfinite(a) else "capped", "test_acc": a}
            for e, accs in acc.items() for s, a in enumerate(accs)]
    return pd.DataFrame(rows)


def test_compare_sides_splits_the_grid_at_the_interval_and_takes_best_above_minus_best_below():
    acc = {0.01: [0.70, 0.72, 0.71], 0.02: [0.74, 0.73, np.nan], 0.1: [0.80, 0.82, 0.81], 0.4: [0.90, np.nan, 0.9]}
    limit = stats.Estimate(0.05, 0.03, 0.06, 0.01, 3)
    s = ac.compare_sides(_df(acc), limit, sorted(acc), [0, 1, 2], n_boot=200)
    assert s.below == (0.01, 0.02) and s.above == (0.1, 0.4)
    assert s.comparable_below == (0.01, 0.02) and s.comparable_above == (0.1,)  # 0.4 lost a seed: not "best"
    assert s.gain.est == pytest.approx(0.81 - 0.735)
    assert s.gain.lo > 0 and s.acc[0.4] == pytest.approx(0.9)
    # an η inside the interval is on neither side; with no η below, the difference is not defined
    none_below = ac.compare_sides(_df(acc), stats.Estimate(0.005, 0.004, 0.015, 0.001, 3), sorted(acc), [0, 1, 2],
                                  n_boot=200)
    assert none_below.below == () and 0.01 not in none_below.above and np.isnan(none_below.gain.est)
    # a threshold that was not measured splits nothing
    nan = float("nan")
    unmeasured = ac.compare_sides(_df(acc), stats.Estimate(nan, nan, nan, nan, 0), sorted(acc), [0, 1, 2], n_boot=200)
    assert unmeasured.below == () and unmeasured.above == () and np.isnan(unmeasured.gain.est)
