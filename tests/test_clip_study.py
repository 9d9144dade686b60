"""clip_study: binding traces, validation metrics, spike-conditioned fractions, threshold ratios, the clip rule."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from instab_lib import optim, thresholds
from instab_lib.experiments import clip_study, shared_runs as experiments, train
from instab_lib.experiments.hooks import RowContext


def _row(ctx_hook, epoch):
    row = {"epoch": epoch}
    ctx_hook.on_row(RowContext(None, None, epoch, row, [], torch.zeros(1)))
    return row


def test_clip_trace_counts_binding_coordinates_per_step_exactly():
    # RMS-UB on fixed gradients: after step t the root is |g| (bias-corrected EMA of a constant g²)
    g = torch.tensor([0.01, 0.05, 0.2, 3.0], dtype=torch.float64)
    opt = optim.clipped_ada(1e-3, 0.1, beta1=0.0)
    params = [torch.zeros(4, dtype=torch.float64)]
    state = opt.init(params)
    hook = clip_study.ClipTrace([0.04, 0.1, 1.0])
    run = SimpleNamespace(optimizer=opt)
    for _ in range(3):
        params, state = opt.update([g], state, params)
        hook.on_step(run, SimpleNamespace(opt_state=state))
    row = _row(hook, 1)
    assert row["clip_mean"] == pytest.approx(0.5)  # 0.2 and 3.0 exceed c = 0.1
    assert row["clip_max"] == pytest.approx(0.5)
    assert row["bind_0.04"] == pytest.approx(0.75)
    assert row["bind_0.1"] == pytest.approx(0.5)
    assert row["bind_1"] == pytest.approx(0.25)
    # the epoch resets: a row without steps is NaN, not the last epoch's value
    row2 = _row(hook, 2)
    assert math.isnan(row2["clip_mean"]) and math.isnan(row2["bind_1"])


def test_clip_trace_mean_and_max_differ_over_a_burst():
    opt = optim.clipped_ada(1e-3, 1.0, beta1=0.0, beta2=0.0)  # β₂ = 0: the root is |g| of the step
    params = [torch.zeros(2, dtype=torch.float64)]
    state = opt.init(params)
    hook = clip_study.ClipTrace()
    run = SimpleNamespace(optimizer=opt)
    for g in ([0.1, 0.1], [5.0, 5.0], [0.1, 0.1], [0.1, 0.1]):
        params, state = opt.update([torch.tensor(g, dtype=torch.float64)], state, params)
        hook.on_step(run, SimpleNamespace(opt_state=state))
    row = _row(hook, 1)
    assert row["clip_max"] == 1.0 and row["clip_mean"] == pytest.approx(0.25)


def test_clip_trace_is_zero_for_the_unclipped_base_and_rejects_bad_clips():
    opt = optim.rmsprop(1e-3)
    params = [torch.zeros(3)]
    state = opt.init(params)
    params, state = opt.update([torch.ones(3)], state, params)
    hook = clip_study.ClipTrace([0.5, 2.0])
    hook.on_step(SimpleNamespace(optimizer=opt), SimpleNamespace(opt_state=state))
    row = _row(hook, 1)
    assert row["clip_mean"] == 0.0 and row["bind_0.5"] == 1.0 and row["bind_2"] == 0.0
    with pytest.raises(ValueError, match="positive"):
        clip_study.ClipTrace([0.1, 0.0])


def test_trace_and_validation_hooks_in_a_real_run(tmp_path):
    Xv, yv, src = clip_study.validation_split(500, n_train=200)
    assert Xv.shape == (500, 1, 28, 28) and yv.shape == (500,) and src
    cfg = experiments.fmnist_base(optimizer="rms_ub", optimizer_kwargs={"c": 0.05}, lr=5e-3, batch_size=50,
                                  n_train=200, n_test=100, epochs=3, eval_every=0, precond_every=1,
                                  target_train_acc=None)
    hooks = {"clip": clip_study.ClipTrace([0.05, 10.0]), "val": clip_study.ValidationMetrics(Xv, yv, every=2)}
    res = train.train(cfg, use_cache=False, progress=False, num_threads=1, hooks=hooks)
    t = res.table
    assert len(t) == 4 and math.isnan(t["clip_mean"].iloc[0])
    # the per-step mean agrees with the library's last-step clip fraction in scale, and the would-bind column of
    # the run's own clip is the run's own binding fraction
    np.testing.assert_allclose(t["clip_mean"].iloc[1:], t["bind_0.05"].iloc[1:])
    assert (t["bind_10"].iloc[1:] == 0).all()
    assert t["val_acc"].notna().tolist() == [True, False, True, True]  # epochs 0, 2 and the last
    assert 0.0 <= t["val_acc"].iloc[-1] <= 1.0


def test_validation_split_is_disjoint_from_the_training_images():
    Xv, yv, _ = clip_study.validation_split(100, n_train=1000)
    from instab_lib.experiments import data
    ds = data.load_dataset("fashion-mnist", n_train=1000, n_test=0)
    # the last 100 training images, none of them among the first 1,000
    flat_tr = ds.X_train.reshape(1000, -1)
    d = torch.cdist(Xv.reshape(100, -1), flat_tr).min(dim=1).values
    assert bool((d > 0).all())
    with pytest.raises(ValueError, match="needs"):
        clip_study.validation_split(59_500, n_train=1000)


def test_spike_mask_marks_the_epochs_of_each_spike():
    loss = [2.3, 1.0, 0.5, 0.2, 0.1, 0.5, 0.9, 0.15, 0.09, 0.08, 0.6]
    m = clip_study.spike_mask(loss, factor=2.0, min_rise=0.1)
    assert m.tolist() == [False] * 5 + [True, True] + [False] * 3 + [True]
    # a jitter that doubles a tiny loss is no spike when min_rise asks for more
    assert not clip_study.spike_mask([1.0, 0.01, 0.02, 0.005], factor=2.0, min_rise=0.1).any()
    assert clip_study.spike_mask([1.0, 0.01, 0.03, 0.005], factor=2.0, min_rise=0.0).tolist() == [False, False, True,
                                                                                                   False]
    # spikes that start before skip are ignored
    assert not clip_study.spike_mask(loss, skip=6)[5:7].any() and clip_study.spike_mask(loss, skip=6)[-1]


def test_clip_binding_fraction_inside_and_outside():
    f = [np.nan, 0.0, 0.01, 0.5, 0.7, 0.02]
    m = [False, False, False, True, True, False]
    out = clip_study.clip_binding_fraction(f, m)
    assert out["inside"] == pytest.approx(0.6) and out["outside"] == pytest.approx(0.01)
    assert out["n_inside"] == 2 and out["n_outside"] == 3
    out = clip_study.clip_binding_fraction(f, [False] * 6, skip=2)
    assert math.isnan(out["inside"]) and out["n_inside"] == 0 and out["outside"] == pytest.approx((0.01 + 1.22) / 4)
    with pytest.raises(ValueError):
        clip_study.clip_binding_fraction(f, m[:-1])


def test_base_threshold_ratio_uses_live_evaluations_after_skip():
    t = pd.DataFrame({"epoch": [0, 2, 4, 6, 8, 10], "train_acc": [0.1, 0.5, 0.9, 0.95, 0.1, 0.99],
                      "p_sharpness": [1.0, 50.0, 300.0, 400.0, 9000.0, np.nan],
                      "p_threshold": [400.0] * 6})
    assert clip_study.base_threshold_ratio(t, skip=4) == pytest.approx(np.median([0.75, 1.0]))
    assert math.isnan(clip_study.base_threshold_ratio(t.drop(columns=["p_sharpness"])))


def test_predicted_critical_clip_matches_the_linear_threshold():
    # RMS-UB: c* = ηS/2; Adam-UB: c* = ηS/38
    assert clip_study.predicted_critical_clip(5e-3, 100.0) == pytest.approx(0.25)
    assert clip_study.predicted_critical_clip(5e-3, 100.0, 0.9) == pytest.approx(5e-3 * 100 / 38)
    # on a quadratic, RMS-UB with a clip that binds is GD at η/c: stable just above c*, unstable just below
    S, eta = 100.0, 5e-3
    c_star = clip_study.predicted_critical_clip(eta, S)
    for c, grows in ((1.02 * c_star, False), (0.98 * c_star, True)):
        opt = optim.clipped_ada(eta, c, beta1=0.0, beta2=0.99, eps=0.0)
        w = [torch.tensor([1.0], dtype=torch.float64)]
        st = opt.init(w)
        for _ in range(3000):
            w, st = opt.update([S * w[0]], st, w)
        assert (abs(float(w[0])) > 1.0) == grows
    assert thresholds.stability_threshold(eta) == pytest.approx(S / c_star)
    with pytest.raises(ValueError):
        clip_study.predicted_critical_clip(5e-3, 0.0)


def test_choose_clip_follows_the_preregistered_rule():
    val = {0.05: [0.80, 0.81], 0.1: [0.84, 0.85], 0.25: [0.845, 0.845], 1.0: [0.83, 0.83]}
    base = [0.83, 0.83]
    ch = clip_study.choose_clip(val, base)
    assert ch.c == 0.25 and ch.val_mean == pytest.approx(0.845) and ch.base_val_mean == pytest.approx(0.83)
    # the binding precondition removes a clip that binds all the time
    ch = clip_study.choose_clip(val, base, outside_binding={0.05: 0.01, 0.1: 0.02, 0.25: 0.2, 1.0: 0.0})
    assert ch.c == 0.1 and ch.eligible == (0.05, 0.1, 1.0)
    # runs that mostly fail to train are not eligible; NaN accuracies count as chance
    ch = clip_study.choose_clip({0.1: [np.nan, 0.99], 1.0: [0.5, 0.5]}, base, min_trained={0.1: 0.5, 1.0: 0.0})
    assert ch.c == 0.1 and ch.val_mean == pytest.approx((0.1 + 0.99) / 2)
    # ties go to the larger clip; no eligible clip gives None
    assert clip_study.choose_clip({0.1: [0.8], 0.25: [0.8]}, base).c == 0.25
    assert clip_study.choose_clip(val, base, outside_binding={}).c is None
    with pytest.raises(ValueError):
        clip_study.choose_clip({}, base)


def test_clips_that_bind_and_the_identity_of_a_clip_that_never_binds():
    assert clip_study.clips_that_bind([0.05, 1.0, 10.0], [0.8, 1.2, 0.9]) == ([0.05, 1.0], [10.0])
    assert clip_study.clips_that_bind([1.0], [1.0]) == ([], [1.0])  # √v̂ ≤ c: min(√v̂, c) = √v̂ exactly
    with pytest.raises(ValueError):
        clip_study.clips_that_bind([1.0], [np.nan])
    # the identity itself: RMS-UB with c above every root of the RMSProp run reproduces it bit for bit
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(5, generator=g) * 0.1 for _ in range(20)]
    runs = {}
    for name, opt in (("base", optim.rmsprop(1e-2)), ("ub", optim.clipped_ada(1e-2, 10.0, beta1=0.0))):
        p = [torch.zeros(5)]
        st = opt.init(p)
        roots = []
        for gr in grads:
            p, st = opt.update([gr], st, p)
            roots.append(float(opt.unclipped_root(st).max()))
        runs[name] = (p[0], max(roots))
    assert torch.equal(runs["base"][0], runs["ub"][0])
    assert clip_study.clips_that_bind([10.0], [runs["base"][1]]) == ([], [10.0])
