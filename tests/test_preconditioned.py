"""Preconditioned sharpness, the momentum-dependent threshold, the train-mode BatchNorm Hessian, loss spikes
and summaries (float64)."""


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from instab_lib import curvature, optim, preconditioned, thresholds
from instab_lib.experiments import episodes, models, snapshots


def _spd(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    return A @ A.T / n + 0.1 * torch.eye(n, dtype=torch.float64)


def test_preconditioned_operator_matches_dense_inverse_P_times_H():
    H = _spd(12, 1)
    H[0, 1] = H[1, 0] = -0.3  # indefinite parts are fine too
    d = torch.linspace(0.2, 3.0, 12, dtype=torch.float64)
    pop = preconditioned.PreconditionedOperator(curvature.MatrixOperator(H), d)
    S = torch.diag(d.rsqrt()) @ H @ torch.diag(d.rsqrt())
    V = torch.randn(12, 3, dtype=torch.float64)
    assert torch.allclose(pop.matmat(V), S @ V, atol=1e-13)
    assert torch.allclose(pop.matvec(V[:, 0]), S @ V[:, 0], atol=1e-13)
    dense = torch.linalg.eigvals(torch.diag(1 / d) @ H).real.max().item()
    r = preconditioned.preconditioned_sharpness(curvature.MatrixOperator(H), d, tol=1e-12)
    assert r.eigenvalues[0].item() == pytest.approx(dense, rel=1e-10)
    # the back-mapped vector is an eigenvector of P⁻¹H
    w = pop.to_original(r.eigenvectors[:, 0])
    Pw = torch.diag(1 / d) @ H @ w
    assert torch.allclose(Pw, r.eigenvalues[0] * w, atol=1e-9)
    assert torch.linalg.vector_norm(w).item() == pytest.approx(1.0)


def test_preconditioned_operator_rejects_bad_diagonal():
    op = curvature.MatrixOperator(_spd(4))
    with pytest.raises(ValueError):
        preconditioned.PreconditionedOperator(op, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError):
        preconditioned.PreconditionedOperator(op, torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("beta1", [0.0, 0.5, 0.9])
def test_threshold_separates_stable_and_unstable_momentum_on_a_quadratic(beta1):
    eta = 0.1
    thr = thresholds.stability_threshold(eta, beta1)
    assert thr == pytest.approx((2 + 2 * beta1) / ((1 - beta1) * eta))

    def final(a):  # EMA momentum x_t = x_{t-1} - η m_t on L = a x²/2
        x, m = 1.0, 0.0
        for _ in range(4000):
            m = beta1 * m + (1 - beta1) * a * x
            x = x - eta * m
        return abs(x)

    assert final(0.99 * thr) < 1e-3
    assert final(1.01 * thr) > 1e3
    assert thresholds.stability_threshold(0.005, 0.9) == pytest.approx(38 / 0.005)
    with pytest.raises(ValueError):
        thresholds.stability_threshold(0.0)
    with pytest.raises(ValueError):
        thresholds.stability_threshold(0.1, 1.0)


def _run_steps(opt, theta, grad_fn, n):
    state = opt.init([theta])
    params = [theta]
    for _ in range(n):
        new, state = opt.update([grad_fn(params[0])], state, params)
        params = new
    return params[0], state


@pytest.mark.parametrize("name,kw", [("adam", {}), ("rmsprop", {}), ("adam_ub", {"c": 0.05}),
                                     ("rms_lb", {"c": 3.0}), ("adam_ub", {"c": 1e6})])
def test_denominator_is_the_step_the_optimizer_took(name, kw):
    """θ_{t} − θ_{t−1} = −η m̂_t / D_t: recover D_t from a step and compare element-wise."""
    A = _spd(6, 2)
    grad = lambda th: A @ th  # noqa: E731
    eta = 0.01
    opt = optim.make_optimizer(name, eta, **kw)
    th0 = torch.linspace(-1, 1, 6, dtype=torch.float64)
    th4, st4 = _run_steps(opt, th0, grad, 4)
    th5, st5 = _run_steps(opt, th0, grad, 5)
    d = preconditioned.denominator(opt, st5)
    # m̂_5 from the state (β₁ = 0: the gradient at θ_4)
    b1 = opt.hyper["beta1"] if "beta1" in opt.hyper else 0.0
    if b1 == 0:
        m_hat = grad(th4)
    else:
        mu = st5[0].first.mu[0]
        m_hat = mu / (1 - b1 ** 5)
    assert torch.allclose(th5 - th4, -eta * m_hat / d, rtol=1e-12, atol=1e-15)
    if "c" in kw and kw["c"] < 1:
        assert float(d.max()) <= kw["c"] + 1e-8 + 1e-15
    # fraction of coordinates where the clip binds, against the unclipped root
    nu = st5[0].rms.nu[0]
    root = torch.sqrt(nu / (1 - opt.hyper["beta2"] ** 5))
    frac = preconditioned.clip_fraction(opt, st5)
    if "c" not in kw:
        assert frac == 0.0
    elif opt.hyper["mode"] == "UB":
        assert frac == pytest.approx(float((root > kw["c"]).double().mean()))
    else:
        assert frac == pytest.approx(float((root < kw["c"]).double().mean()))
    if kw.get("c") == 1e6:
        assert frac == 0.0 and torch.equal(th5, _run_steps(optim.make_optimizer("adam", eta), th0, grad, 5)[0])


def test_denominator_needs_a_second_moment():
    opt = optim.make_optimizer("gd", 0.1)
    with pytest.raises(ValueError):
        preconditioned.denominator(opt, opt.init([torch.zeros(3)]))
    opt = optim.make_optimizer("adam", 0.1)
    with pytest.raises(ValueError):
        preconditioned.denominator(opt, opt.init([torch.zeros(3)]))  # count 0


def test_preconditioned_sharpness_of_a_network_matches_dense():
    torch.manual_seed(0)
    model = models.build_model("mlp", seed=0, input_dim=5, width=4, depth=1, n_classes=3).double()
    X = torch.randn(20, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (20,))
    H = curvature.dense_hessian(model, F.cross_entropy, (X, y))
    d = torch.rand(H.shape[0], dtype=torch.float64) + 0.05
    op = curvature.HessianOperator(model, F.cross_entropy, (X, y), chunk_size=7)
    r = preconditioned.preconditioned_sharpness(op, d, tol=1e-10)
    dense = torch.linalg.eigvalsh(torch.diag(d.rsqrt()) @ H @ torch.diag(d.rsqrt())).max().item()
    assert r.eigenvalues[0].item() == pytest.approx(dense, rel=1e-8)


def test_loss_spikes_exact_cases():
    assert episodes.loss_spikes([5, 4, 3, 2, 1]) == []
    s = episodes.loss_spikes([4.0, 2.0, 1.0, 3.0, 5.0, 1.5, 0.5, 0.4, 1.0, 0.3])
    # run min 1.0 → line 2: indices 3, 4 above, back at 5; then min 0.4 → line 0.8: index 8
    assert [(x.start, x.peak, x.end) for x in s] == [(3, 4, 5), (8, 8, 9)]
    assert s[0].base == 1.0 and s[0].height == 5.0
    assert s[1].height == pytest.approx(2.5)
    # non-finite values count as above the line; an unfinished spike has end None
    s = episodes.loss_spikes([1.0, 0.5, float("nan"), float("inf")])
    assert len(s) == 1 and s[0].start == 2 and s[0].end is None
    # min_rise filters tiny relative rises near zero loss
    assert episodes.loss_spikes([1.0, 1e-4, 3e-4, 1e-5], min_rise=1e-3) == []
    assert len(episodes.loss_spikes([1.0, 1e-4, 3e-4, 1e-5])) == 1
    with pytest.raises(ValueError):
        episodes.loss_spikes([1.0], factor=1.0)


def test_preconditioned_sharpness_recorded_in_training_matches_dense(fake_fmnist):
    """The Preconditioned hook's λ_max(D^{-1/2} H D^{-1/2}) equals the dense value, with D recovered
    from the step the optimiser took (RMS-UB: β₁ = 0, so θ_t − θ_{t−1} = −η g_{t−1} / D_t), in
    full-batch and minibatch runs (the optimiser state is read during training, no replay)."""
    from instab_lib.experiments import loop
    from instab_lib.experiments.train import TrainConfig, train

    for bs in (None, 20):
        cfg = TrainConfig(dataset="fashion-mnist", data_dir=fake_fmnist, n_train=40, n_test=0, model="mlp",
                          model_kwargs={"width": 3, "depth": 1}, optimizer="rms_ub", optimizer_kwargs={"c": 0.05},
                          lr=2e-3, epochs=3, eval_every=0, target_train_acc=None, precond_every=3,
                          precond_tol=1e-10, dtype="float64", batch_size=bs, snapshot_epochs=(3,))
        res = train(cfg, use_cache=False, progress=False)
        row = res.table.set_index("epoch").loc[3]
        # rebuild θ along the run to get θ_{t-1}, θ_t and the last gradient
        run, state = loop.init_run(cfg)
        thetas = []
        while state.epoch < 3:
            thetas.append(loop.flat_parameters(run))
            state, _ = loop.run_epoch(run, state, on_step=lambda r, s: thetas.append(loop.flat_parameters(r)))
        theta_prev, theta_t = thetas[-2], loop.flat_parameters(run)
        assert torch.equal(theta_t, torch.cat([p.reshape(-1) for p in run.params]))
        d = run.optimizer.preconditioner(state.opt_state)
        model = run.model
        H = curvature.dense_hessian(model, run.loss_fn, run.hessian)
        Dm = torch.diag(d.rsqrt())
        dense = torch.linalg.eigvalsh(Dm @ H @ Dm).max().item()
        assert row["p_sharpness"] == pytest.approx(dense, rel=1e-8)
        assert row["p_threshold"] == pytest.approx(2 / 2e-3)
        root = run.optimizer.unclipped_root(state.opt_state)
        assert row["clip_fraction"] == pytest.approx(float((root > 0.05).double().mean()))
        assert np.isfinite(res.table["root_max"].iloc[1:]).all()
        q = torch.quantile(root.double(), torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64))
        assert [row["root_q50"], row["root_q90"], row["root_q99"]] == pytest.approx(q.tolist(), rel=1e-12)
        assert row["root_q99"] <= row["root_max"]
        if bs is None:  # D from the step itself: θ_t − θ_{t−1} = −η g(θ_{t−1}) / D
            step = theta_t - theta_prev
            assert torch.allclose(step * d, -2e-3 * _grad_at(run, theta_prev), rtol=1e-9, atol=1e-14)


def _grad_at(run, theta):
    with torch.no_grad():
        for p, q in zip(run.params, curvature.unflatten_like(theta, run.params)):
            p.copy_(q)
    loss = run.loss_fn(run.model(run.train[0]), run.train[1])
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, run.params)])


def test_train_mode_view_gives_the_batch_statistics_hessian():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
                                torch.nn.Linear(4, 2)).double()
    X = torch.randn(12, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (12,))
    params = [p for p in model.parameters()]
    shapes = [p.shape for p in params]
    theta0 = torch.cat([p.detach().reshape(-1) for p in params])

    def loss_of(theta, xs, ys):
        out, i = [], 0
        for sh in shapes:
            n = int(np.prod(sh))
            out.append(theta[i:i + n].reshape(sh))
            i += n
        w1, b1, g, b, w2, b2 = out
        h = xs @ w1.T + b1
        h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5) * g + b  # batch statistics
        return F.cross_entropy(torch.relu(h) @ w2.T + b2, ys)

    def chunked(theta):  # two chunks of 6: each normalised with its own statistics, weights 1/2
        return 0.5 * loss_of(theta, X[:6], y[:6]) + 0.5 * loss_of(theta, X[6:], y[6:])

    H = torch.autograd.functional.hessian(chunked, theta0)
    op = curvature.HessianOperator(snapshots.TrainModeView(model), F.cross_entropy, (X, y), chunk_size=6)
    HV = op.matmat(torch.eye(op.dim, dtype=torch.float64))
    assert torch.allclose(HV, H, atol=1e-10)
    # eval mode (running statistics) is a different function
    op_eval = curvature.HessianOperator(model, F.cross_entropy, (X, y), chunk_size=6)
    assert not torch.allclose(op_eval.matmat(torch.eye(op.dim, dtype=torch.float64)), H, atol=1e-3)


def test_preconditioned_sharpness_of_a_batchnorm_model_is_the_train_mode_one(fake_fmnist):
    """With BatchNorm the hook measures λ_max(D^{-1/2} H D^{-1/2}) on the train-mode Hessian, BatchNorm on chunks
    of the batch size (the objective the optimiser steps on): equal to the dense value. The eval-mode Hessian is
    curved along the bias of each layer followed by BatchNorm, where the training gradient is zero (v̂ ≈ 0, the
    denominator ε): there D^{-1/2} H D^{-1/2} is of order h/ε, many orders above the train-mode value, which
    ``precond_bn_mode="eval"`` reproduces."""
    from instab_lib.experiments import loop
    from instab_lib.experiments.train import TrainConfig, train
    from torch.nn.modules.batchnorm import _NormBase

    kw = dict(dataset="fashion-mnist", data_dir=fake_fmnist, n_train=40, n_test=0, model="vgg",
              model_kwargs={"widths": (2, 2), "convs_per_block": 1, "dense_width": 3}, optimizer="adam",
              lr=5e-3, epochs=2, eval_every=0, target_train_acc=None, precond_every=2, precond_tol=1e-10,
              dtype="float64", batch_size=20)
    rows = {m: train(TrainConfig(**kw, precond_bn_mode=m), use_cache=False, progress=False).table.set_index("epoch")
            .loc[2] for m in ("train", "eval")}
    run, state = loop.init_run(TrainConfig(**kw))
    while state.epoch < 2:
        state, _ = loop.run_epoch(run, state)
    d = run.optimizer.preconditioner(state.opt_state)
    Dm = torch.diag(d.rsqrt())
    X, y = run.hessian
    H = {"eval": curvature.dense_hessian(run.model, run.loss_fn, (X, y))}
    H["train"] = sum(curvature.dense_hessian(run.model, run.loss_fn, (X[i:i + 20], y[i:i + 20]), bn_mode="train")
                     * len(y[i:i + 20]) / len(y) for i in range(0, len(y), 20))  # the mean of the chunk losses
    dense = {m: torch.linalg.eigvalsh(Dm @ h @ Dm).max().item() for m, h in H.items()}
    assert rows["train"]["p_sharpness"] == pytest.approx(dense["train"], rel=1e-8)
    assert rows["eval"]["p_sharpness"] == pytest.approx(dense["eval"], rel=1e-6)
    # the mechanism: the conv biases before BatchNorm have zero gradient in train mode, so their denominator is ε
    bias = torch.cat([torch.full((p.numel(),), isinstance(nxt, _NormBase) and name.endswith("bias"))
                      for (name, p), nxt in _followers(run.model)])
    assert bias.any() and float(d[bias].max()) < 1e-7
    assert dense["eval"] > 1e3 * dense["train"]


def _followers(model):
    """(name, parameter) of each trainable parameter with the module after the one that owns it."""
    mods = [m for m in model.modules() if not list(m.children())]
    owner = {id(p): i for i, m in enumerate(mods) for p in m.parameters(recurse=False)}
    return [((n, p), mods[owner[id(p)] + 1] if owner[id(p)] + 1 < len(mods) else None)
            for n, p in model.named_parameters() if p.requires_grad]
