"""Optimisers: closed forms, Clipped-Ada limits, schedules, input checks (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from instab_lib import optim


def _run(opt: optim.Optimizer, params, grad_fn, steps: int):
    state = opt.init(params)
    for _ in range(steps):
        params, state = opt.update(grad_fn(params), state, params)
    return params, state


def test_gd_quadratic_closed_form():
    # L = ½ Σ S_i w_i²  ⇒  w_t = (1 − η S_i)^t w_0 (also for a 0-d parameter)
    S = torch.tensor([0.5, 1.9, 2.3], dtype=torch.float64)
    w0 = torch.tensor([1.0, -0.3, 0.1], dtype=torch.float64)
    eta, T = 1.0, 25
    (w,), _ = _run(optim.gd(eta), [w0], lambda p: [S * p[0]], T)
    torch.testing.assert_close(w, (1 - eta * S) ** T * w0, rtol=1e-12, atol=0)
    (s,), _ = _run(optim.gd(0.1), [torch.tensor(2.0, dtype=torch.float64)], lambda p: [3 * p[0]], 7)
    assert s.shape == () and math.isclose(s.item(), 2.0 * 0.7**7, rel_tol=1e-12)


def test_update_is_pure():
    w = torch.tensor([1.0, 2.0], dtype=torch.float64)
    opt = optim.adam(0.1)
    st = opt.init([w])
    g = torch.tensor([0.5, -1.0], dtype=torch.float64)
    new, st2 = opt.update([g], st, [w])
    assert torch.equal(w, torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert st[0].rms.count == 0 and st2[0].rms.count == 1  # chain: (adaptive, lr)
    assert isinstance(st2[0], optim.AdaptiveState) and isinstance(st2[1], optim.ScheduleState)
    # same inputs, same outputs
    new_b, _ = opt.update([g], st, [w])
    assert torch.equal(new[0], new_b[0])


def test_momentum_closed_form():
    # heavy ball on L = ½ S w²: b_t = μ b_{t−1} + S w_{t−1}, w_t = w_{t−1} − η b_t
    S, eta, mu = 1.5, 0.2, 0.9
    w, b = 1.0, 0.0
    for _ in range(10):
        b = mu * b + S * w
        w = w - eta * b
    (wt,), _ = _run(optim.gd(eta, momentum=mu), [torch.tensor(1.0, dtype=torch.float64)],
                    lambda p: [S * p[0]], 10)
    assert math.isclose(wt.item(), w, rel_tol=1e-12)


def _adam_reference(g_seq, lr, b1, b2, eps):
    m = v = 0.0
    w = 0.0
    out = []
    for t, g in enumerate(g_seq, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mh, vh = m / (1 - b1**t), v / (1 - b2**t)
        w -= lr * mh / (math.sqrt(vh) + eps)
        out.append(w)
    return out


def test_adam_and_rmsprop_match_reference():
    gs = [0.3, -1.2, 2.0, 0.01, -0.5]
    for opt, b1 in ((optim.adam(0.01), 0.9), (optim.rmsprop(0.01), 0.0)):
        ref = _adam_reference(gs, 0.01, b1, 0.99, 1e-8)
        w = [torch.tensor(0.0, dtype=torch.float64)]
        st = opt.init(w)
        for g, r in zip(gs, ref):
            w, st = opt.update([torch.tensor(g, dtype=torch.float64)], st, w)
            assert math.isclose(w[0].item(), r, rel_tol=1e-12, abs_tol=1e-15)


def _quad_grad(S):
    return lambda p: [S * p[0]]


def test_clipped_ada_huge_c_equals_adam():
    S = torch.tensor([0.1, 3.0, 40.0], dtype=torch.float64)
    w0 = [torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)]
    for beta1 in (0.9, 0.0):
        ref_opt = optim.adam(0.01, beta1=beta1)
        (a,), _ = _run(ref_opt, w0, _quad_grad(S), 50)
        (ub,), _ = _run(optim.clipped_ada(0.01, 1e12, beta1=beta1), w0, _quad_grad(S), 50)
        (lb,), _ = _run(optim.clipped_ada(0.01, 1e-300, mode="LB", beta1=beta1), w0, _quad_grad(S), 50)
        assert torch.equal(a, ub) and torch.equal(a, lb)


def test_clipped_ada_tiny_c_is_gd_with_lr_over_c():
    # UB with c below every √v̂: D_t = c ⇒ RMS-UB is exactly GD at η/(c+ε) (docstring)
    S = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    w0 = [torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)]
    eta, c, eps = 1e-4, 1e-3, 1e-8
    (ub,), _ = _run(optim.clipped_ada(eta, c, beta1=0.0, eps=eps), w0, _quad_grad(S), 20)
    (g,), _ = _run(optim.gd(eta / (c + eps)), w0, _quad_grad(S), 20)
    torch.testing.assert_close(ub, g, rtol=1e-12, atol=1e-15)
    # LB with c above every √v̂ is the same GD
    (lb,), _ = _run(optim.clipped_ada(eta * 1e6, c * 1e6, mode="LB", beta1=0.0, eps=eps * 1e6),
                    w0, _quad_grad(S), 20)
    torch.testing.assert_close(lb, g, rtol=1e-9, atol=1e-15)


def test_first_adam_step_is_sign_like_and_ub_steps_bounded_below():
    g = torch.tensor([1e-3, -5.0, 200.0], dtype=torch.float64)
    w = [torch.zeros(3, dtype=torch.float64)]
    eta = 0.1
    (a,), _ = optim.adam(eta).update([g], optim.adam(eta).init(w), w)
    torch.testing.assert_close(a, -eta * torch.sign(g), rtol=1e-5, atol=0)
    # UB with c = 1: |g| < c coordinates take the sign step, |g| > c ones the GD step η g / c
    ub = optim.clipped_ada(eta, 1.0)
    (u,), _ = ub.update([g], ub.init(w), w)
    expected = torch.where(g.abs() < 1.0, -eta * torch.sign(g), -eta * g / (1.0 + 1e-8))
    torch.testing.assert_close(u, expected, rtol=1e-5, atol=0)


def test_toy_rms_ub_restores_instability():
    # REFERENCE §5.2(a): L = S/2 w², w0 = 0.1, η = 1, β = 0.9, v0 = (S w0)², no bias correction
    S, w0 = 2.3, 0.1
    kw = dict(beta2=0.9, nu_init=(S * w0) ** 2, bias_correction=False)
    w = [torch.tensor(w0, dtype=torch.float64)]
    (gd_w,), _ = _run(optim.gd(1.0), w, _quad_grad(S), 100)
    (rms_w,), _ = _run(optim.rmsprop(1.0, **kw), w, _quad_grad(S), 100)
    (ub_w,), _ = _run(optim.clipped_ada(1.0, 1.1, beta1=0.0, **kw), w, _quad_grad(S), 100)
    assert abs(gd_w.item()) > 1e9  # |1 − ηS|^100 · 0.1 = 1.3^100 · 0.1
    assert abs(rms_w.item()) < 2  # bounded, sign-descent-like
    assert abs(ub_w.item()) > 10 * abs(rms_w.item())  # instability restored


def test_dln_toy_two_params():
    # DLN L = (θ1 θ2)², gradients on a list of two 0-d tensors
    def grads(p):
        t1, t2 = p
        z = 2 * t1 * t2
        return [z * t2, z * t1]

    p = [torch.tensor(-0.1, dtype=torch.float64), torch.tensor(10.0, dtype=torch.float64)]
    (t1, t2), _ = _run(optim.gd(0.011), p, grads, 10)
    assert t2.item() < 10.0 and abs(t1.item()) > 0.1  # unstable, exploratory phase


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_learning_rate_and_clip(bad):
    with pytest.raises(ValueError, match="learning rate"):
        optim.gd(bad)
    with pytest.raises(ValueError, match="learning rate"):
        optim.make_optimizer("adam", bad)
    with pytest.raises(ValueError, match="c must"):
        optim.clipped_ada(0.1, bad)


def test_make_optimizer_errors_and_names():
    with pytest.raises(ValueError, match="unknown optimizer"):
        optim.make_optimizer("lion", 0.1)
    with pytest.raises(ValueError, match="does not take"):
        optim.make_optimizer("gd", 0.1, beta2=0.9)
    with pytest.raises(ValueError, match="needs"):
        optim.make_optimizer("adam_ub", 0.1)
    with pytest.raises(ValueError, match="does not take"):
        optim.make_optimizer("rms_ub", 0.1, c=1.0, beta1=0.9)
    with pytest.raises(ValueError, match="clip mode"):
        optim.clipped_ada(0.1, 1.0, mode="XB")
    with pytest.raises(ValueError, match="beta2"):
        optim.adam(0.1, beta2=1.0)
    o = optim.make_optimizer("rms_ub", 0.1, c=1.0)
    assert o.hyper["beta1"] == 0.0 and o.hyper["mode"] == "UB"


def test_schedules():
    s = optim.make_schedule(0.3, {"kind": "step", "epochs": [10], "values": [0.01]}, steps_per_epoch=2)
    assert [s(t) for t in (0, 19, 20, 100)] == [0.3, 0.3, 0.01, 0.01]
    s2 = optim.step_reduction(0.1, 0.01, at_epoch=5)
    assert s2(4) == 0.1 and s2(5) == 0.01
    w = optim.make_schedule(0.1, {"warmup_steps": 2})
    assert [w(0), w(1), w(5)] == [0.05, 0.1, 0.1]
    opt = optim.gd(optim.step_reduction(1.0, 0.5, at_epoch=1))
    (x,), _ = _run(opt, [torch.tensor(1.0, dtype=torch.float64)], lambda p: [torch.ones(())], 3)
    assert x.item() == 1.0 - 1.0 - 0.5 - 0.5
    with pytest.raises(ValueError, match="unknown schedule"):
        optim.make_schedule(0.1, {"kind": "cosine"})
    with pytest.raises(ValueError, match="learning rate"):
        optim.make_schedule(0.1, {"kind": "step", "epochs": [3], "values": [-1.0]})
    with pytest.raises(ValueError, match="warmup"):
        optim.linear_warmup(0.1, -1)


def test_transforms_named_like_optax_do_what_optax_does():
    """optax's ``scale_by_learning_rate`` multiplies by −η_t (schedule or number) and its
    ``scale_by_rms`` divides by the root: our learning-rate transform has that name and meaning, and
    the second-moment average, which divides nothing, is not called ``scale_by_rms``."""
    g = [torch.tensor([2.0, -4.0], dtype=torch.float64)]
    lr = optim.scale_by_learning_rate(lambda t: 0.5 / (t + 1))
    st = lr.init(g)
    u1, st = lr.update(g, st, g)
    u2, st = lr.update(g, st, g)
    torch.testing.assert_close(u1[0], torch.tensor([-1.0, 2.0], dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(u2[0], torch.tensor([-0.5, 1.0], dtype=torch.float64), rtol=0, atol=0)
    fixed, _ = optim.scale_by_learning_rate(0.25).update(g, optim.ScheduleState(0), g)
    torch.testing.assert_close(fixed[0], -0.25 * g[0], rtol=0, atol=0)
    tr = optim.track_second_moment(0.9, nu_init=1.0)
    out, rs = tr.update(g, tr.init(g), g)
    assert out[0] is g[0] and rs.count == 1  # the updates pass unchanged …
    torch.testing.assert_close(rs.nu[0], 0.9 + 0.1 * g[0] ** 2, rtol=1e-15, atol=0)  # … the average moves
    assert not hasattr(optim, "scale_by_rms") and not hasattr(optim, "scale_by_schedule")


def test_star_import_and_typed_states():
    namespace: dict = {}
    exec("from instab_lib.optim import *", namespace)  # every name in __all__ exists
    assert "scale_by_adaptive" in namespace and "Optimizer" in namespace


@pytest.mark.parametrize("name,kw", [("adam", {}), ("rmsprop", {}), ("adam_ub", {"c": 0.05}), ("rms_lb", {"c": 3.0})])
def test_preconditioner_is_the_denominator_of_the_last_step(name, kw):
    """θ_t − θ_{t−1} = −η m̂_t / D_t with D_t read from the typed state (β₁ = 0: m̂_t = g_t)."""
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    opt = optim.make_optimizer(name, 0.01, **kw)
    st = opt.init([w])
    assert opt.preconditioner(st) is None
    grad = lambda th: torch.tensor([3.0, 1.0, -0.2], dtype=torch.float64) * th  # noqa: E731
    th = w
    for _ in range(3):
        prev = th
        (th,), st = opt.update([grad(th)], st, [th])
    d = opt.preconditioner(st)
    b1 = float(opt.hyper.get("beta1", 0.0))
    m_hat = grad(prev) if b1 == 0 else st[0].first.mu[0] / (1 - b1 ** 3)
    assert torch.allclose(th - prev, -0.01 * m_hat / d, rtol=1e-12, atol=1e-15)
    assert optim.gd(0.1).preconditioner(optim.gd(0.1).init([w])) is None
