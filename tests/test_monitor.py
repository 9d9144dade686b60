"""The :class:`instab_lib.Monitor` on models nobody here wrote, against ground truth, in float64.

* Eigenpairs: torchvision's ResNet-18 (BatchNorm; a 16×16 input, the measured parameters a
  BatchNorm layer and the head), a small ``nn.TransformerEncoder`` classifier and an MLP with
  BatchNorm and Dropout, each trained a few steps by ``torch.optim.SGD`` with momentum while
  the Monitor tracks its top eigenpairs warm, then held by :func:`conformance.check_eigenpairs`
  (the conformance suite's one dense helper) to ``torch.autograd.functional.hessian`` of the
  loss written here independently, in both BatchNorm modes (train: each batch with its own
  statistics); the model's buffers and modes unchanged.
* The preconditioned sharpness against a dense :math:`D^{-1/2}(H + \\ell I)D^{-1/2}` with
  :math:`D` computed here from ``torch.optim.Adam``'s state (also ``amsgrad``, coupled and
  decoupled weight decay), ``RMSprop``'s (plain, centered, momentum) and Clipped-Ada's; and the
  adapter's :math:`D` is the optimiser's own denominator (it reproduces the optimiser's step).
* Thresholds for SGD, SGD with heavy-ball, dampened and Nesterov momentum, weight decay, Adam,
  AdamW, RMSprop; the closed forms against simulations of the 1-D quadratic (with
  ``torch.optim.SGD`` itself for the heavy-ball family).
* The same-parity rotation on a known period-2 sequence; bad input refused in one line before
  any compute; streamed DataLoaders with dict batches; the history's columns; the figure.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable

import matplotlib
import pytest
import torch
import torch.nn.functional as F
import torchvision
from conformance import check_eigenpairs
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

import instab_lib
from instab_lib import Monitor, optim
from instab_lib.curvature import EigResult
from instab_lib.monitor import COLUMNS
from instab_lib.rotation import RotationState, rotation_update
from instab_lib.thresholds import heavy_ball_threshold, stability_threshold

matplotlib.use("Agg")
pytestmark = pytest.mark.usefixtures("one_thread")
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
DT = torch.float64
TOL = 1e-9


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- #
# models nobody here wrote
# --------------------------------------------------------------------------- #
def _resnet() -> tuple[nn.Module, list[tuple[Tensor, Tensor]], list[Tensor]]:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).to(DT)
    g = _gen(1)
    batches = [(torch.randn(n, 3, 16, 16, generator=g, dtype=DT), torch.randint(0, 3, (n,), generator=g))
               for n in (2, 3)]
    bn = model.layer1[0].bn1
    return model, batches, [bn.weight, model.fc.bias]  # 67 parameters measured: a BatchNorm layer's and the head's


class TransformerClassifier(nn.Module):
    """A one-layer ``nn.TransformerEncoder`` (dropout 0.1) over sequences, mean-pooled, then a head."""

    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.1, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.enc(x).mean(dim=1))


def _transformer() -> tuple[nn.Module, list[tuple[Tensor, Tensor]], None]:
    torch.manual_seed(2)
    model = TransformerClassifier().to(DT)
    g = _gen(3)
    return model, [(torch.randn(n, 3, 4, generator=g, dtype=DT), torch.randint(0, 3, (n,), generator=g))
                   for n in (4, 6)], None


def _dropout_mlp() -> tuple[nn.Module, list[tuple[Tensor, Tensor]], None]:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)).to(DT)
    g = _gen(5)
    return model, [(torch.randn(n, 6, generator=g, dtype=DT) * 2 + 1, torch.randint(0, 3, (n,), generator=g))
                   for n in (5, 7)], None


MODELS = {"resnet18": _resnet, "transformer": _transformer, "dropout_mlp": _dropout_mlp}


def _reference(model: nn.Module, batches: list[tuple[Tensor, Tensor]], params: list[Tensor],
               bn_mode: str) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """``θ ↦ Σ_c n_c/N · CE(f(X_c), y_c)`` over the measured parameters, in the chosen mode (a copy
    of the model: eval, or train for BatchNorm's batch statistics; Dropout off), and θ now."""
    ref = copy.deepcopy(model).eval()
    if bn_mode == "train":
        for m in ref.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()
    names = {id(p): n for n, p in model.named_parameters()}
    keys = [names[id(p)] for p in params]
    sizes = [p.numel() for p in params]
    N = sum(len(y) for _, y in batches)

    def loss(theta: Tensor) -> Tensor:
        th = {k: c.view_as(p) for k, c, p in zip(keys, torch.split(theta, sizes), params)}
        with torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH]):
            return sum(len(y) / N * F.cross_entropy(torch.func.functional_call(ref, th, (X,)), y)
                       for X, y in batches)

    return loss, torch.cat([p.detach().reshape(-1) for p in params])


def _dense(model: nn.Module, batches: list[tuple[Tensor, Tensor]], params: list[Tensor], bn_mode: str) -> Tensor:
    """``torch.autograd.functional.hessian`` of :func:`_reference`'s loss."""
    return torch.autograd.functional.hessian(*_reference(model, batches, params, bn_mode))


def _snapshot(model: nn.Module) -> tuple[list[Tensor], list[bool]]:
    return [b.detach().clone() for b in model.buffers()], [m.training for m in model.modules()]


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
@pytest.mark.parametrize("name", list(MODELS))
def test_monitor_tracks_the_dense_hessian(name: str, bn_mode: str) -> None:
    model, batches, params = MODELS[name]()
    model.train()
    measured = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    mon = Monitor(model, nn.CrossEntropyLoss(), batches, opt, k=2, every=2, tol=TOL, bn_mode=bn_mode, params=params)
    rows = []
    for _ in range(3):
        for X, y in batches:
            opt.zero_grad()
            F.cross_entropy(model(X), y).backward()
            opt.step()
            before = _snapshot(model)
            row = mon.step()
            after = _snapshot(model)
            assert all(torch.equal(a, b) for a, b in zip(before[0], after[0])) and before[1] == after[1]
            rows.append(row)
    assert [r is not None for r in rows] == [False, True] * 3
    H = _dense(model, batches, measured, bn_mode)
    check_eigenpairs(mon.tracker.prev, H, "LA", 2, TOL)  # the last measurement, at the current parameters
    last = mon.history.iloc[-1]
    lam = torch.linalg.eigvalsh(H)
    assert last["sharpness"] == pytest.approx(float(lam[-1]), rel=1e-7)
    assert last["eigenvalues"] == pytest.approx([float(lam[-1]), float(lam[-2])], rel=1e-7)
    assert last["threshold"] == pytest.approx(3.8 / 0.01) and last["lr"] == 0.01 and last["loss"] > 0.05
    assert last["step"] == 6 and bool(mon.history["warm"].iloc[1:].all()) and last["hvps"] > 0
    assert math.isnan(last["preconditioned_sharpness"]) and mon.history.attrs["bn_mode"] == bn_mode
    with torch.no_grad():
        loss, theta = _reference(model, batches, measured, bn_mode)
        assert last["loss"] == pytest.approx(float(loss(theta)), rel=1e-12)
        if name != "transformer":  # BatchNorm: the two modes are two functions
            other, _ = _reference(model, batches, measured, "train" if bn_mode == "eval" else "eval")
            assert abs(float(other(theta)) - last["loss"]) > 1e-3


# --------------------------------------------------------------------------- #
# preconditioned sharpness from the optimisers' own state
# --------------------------------------------------------------------------- #
def _mlp() -> tuple[nn.Module, list[tuple[Tensor, Tensor]]]:
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).to(DT)
    g = _gen(7)
    X, y = torch.randn(20, 5, generator=g, dtype=DT), torch.randint(0, 3, (20,), generator=g)
    return model, [(X[:8], y[:8]), (X[8:], y[8:])]


def _adam_D(opt: torch.optim.Optimizer, params: list[Tensor], amsgrad: bool = False) -> Tensor:
    """Adam's denominator written from its documented update: √(v/(1−β₂ᵗ)) + ε."""
    g = opt.param_groups[0]
    _, beta2 = g["betas"]
    out = []
    for p in params:
        st = opt.state[p]
        v = st["max_exp_avg_sq"] if amsgrad else st["exp_avg_sq"]
        out.append((torch.sqrt(v / (1 - beta2 ** float(st["step"]))) + g["eps"]).reshape(-1))
    return torch.cat(out)


def _rms_D(opt: torch.optim.Optimizer, params: list[Tensor]) -> Tensor:
    g = opt.param_groups[0]
    out = []
    for p in params:
        st = opt.state[p]
        v = st["square_avg"] - (st["grad_avg"] ** 2 if g["centered"] else 0)
        out.append((torch.sqrt(v) + g["eps"]).reshape(-1))
    return torch.cat(out)


ADAPTIVE = {
    "adam": (lambda ps: torch.optim.Adam(ps, lr=0.01), _adam_D, 0.0, 38 / 0.01),
    "adam_amsgrad": (lambda ps: torch.optim.Adam(ps, lr=0.01, amsgrad=True),
                     lambda o, ps: _adam_D(o, ps, amsgrad=True), 0.0, 38 / 0.01),
    "adam_l2": (lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.3), _adam_D, 0.3, 38 / 0.01),
    "adamw": (lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.5), _adam_D, 0.0,
              (2 - 0.01 * 0.5) * 1.9 / (0.1 * 0.01)),
    "rmsprop": (lambda ps: torch.optim.RMSprop(ps, lr=0.01), _rms_D, 0.0, 2 / 0.01),
    "rmsprop_centered_momentum": (lambda ps: torch.optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.5,
                                                                 weight_decay=0.1), _rms_D, 0.1, 3 / 0.01),
}


@pytest.mark.parametrize("name", list(ADAPTIVE))
def test_preconditioned_sharpness_against_the_optimisers_state(name: str) -> None:
    make, denominator, l2, threshold = ADAPTIVE[name]
    model, batches = _mlp()
    params = list(model.parameters())
    opt = make(params)
    mon = Monitor(model, nn.CrossEntropyLoss(), batches, opt, k=2, every=3, tol=1e-11)
    assert math.isnan(mon.measure()["preconditioned_sharpness"])  # before the first step: no D
    for _ in range(6):
        X, y = batches[_ % 2]
        opt.zero_grad()
        F.cross_entropy(model(X), y).backward()
        opt.step()
        mon.step()
    D = denominator(opt, params)
    H = _dense(model, batches, params, "eval") + l2 * torch.eye(D.numel(), dtype=DT)
    s = D.rsqrt()
    want = float(torch.linalg.eigvalsh(s[:, None] * H * s[None, :])[-1])
    last = mon.history.iloc[-1]
    assert last["preconditioned_sharpness"] == pytest.approx(want, rel=1e-9)
    assert last["threshold"] == pytest.approx(threshold, rel=1e-12)
    assert last["ratio"] == pytest.approx(want / threshold, rel=1e-9)
    assert mon.history["step"].tolist() == [0, 3, 6]


@pytest.mark.parametrize("amsgrad", [False, True])
def test_the_adapters_denominator_is_the_optimisers_step(amsgrad: bool) -> None:
    """θ_t − θ_{t−1} = −η m̂_t / D_t with the D the adapter reads after the step (Adam, no decay)."""
    from instab_lib.adapters import adapt

    model, batches = _mlp()
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=0.01, betas=(0.8, 0.95), amsgrad=amsgrad)
    for t in range(1, 5):
        before = torch.cat([p.detach().reshape(-1).clone() for p in params])
        opt.zero_grad()
        F.cross_entropy(model(batches[t % 2][0]), batches[t % 2][1]).backward()
        opt.step()
        after = torch.cat([p.detach().reshape(-1) for p in params])
        m_hat = torch.cat([opt.state[p]["exp_avg"].reshape(-1) for p in params]) / (1 - 0.8**t)
        D = adapt(opt).read(params).preconditioner
        torch.testing.assert_close(after - before, -0.01 * m_hat / D, rtol=1e-10, atol=1e-15)


def test_rmsprop_denominator_is_its_step() -> None:
    from instab_lib.adapters import adapt

    model, batches = _mlp()
    params = list(model.parameters())
    opt = torch.optim.RMSprop(params, lr=0.01, centered=True)
    for t in range(3):
        before = torch.cat([p.detach().reshape(-1).clone() for p in params])
        opt.zero_grad()
        F.cross_entropy(model(batches[0][0]), batches[0][1]).backward()
        grad = torch.cat([p.grad.reshape(-1) for p in params])
        opt.step()
        after = torch.cat([p.detach().reshape(-1) for p in params])
        torch.testing.assert_close(after - before, -0.01 * grad / adapt(opt).read(params).preconditioner,
                                   rtol=1e-10, atol=1e-15)


def test_clipped_ada_preconditioner_is_its_clipped_denominator() -> None:
    model, batches = _mlp()
    params = list(model.parameters())
    opt = optim.clipped_ada(0.01, c=0.05, mode="UB")
    state = opt.init(params)
    mon = Monitor(model, nn.CrossEntropyLoss(), batches, opt, k=2, every=2, tol=1e-11)
    with pytest.raises(ValueError, match="pass its state") as err:
        mon.measure()
    assert "\n" not in str(err.value)
    for t in range(4):
        X, y = batches[t % 2]
        grads = torch.autograd.grad(F.cross_entropy(model(X), y), params)
        new, state = opt.update(grads, state, params)
        with torch.no_grad():
            for p, q in zip(params, new):
                p.copy_(q)
        mon.step(state)
    adaptive = state[0]
    v_hat = torch.cat([v.reshape(-1) for v in adaptive.rms.nu]) / (1 - 0.99**4)
    D = torch.clamp_max(torch.sqrt(v_hat), 0.05) + 1e-8  # the UB clip, written from the paper's formula
    assert 0 < float((torch.sqrt(v_hat) > 0.05).double().mean()) < 1  # the clip binds on some coordinates
    H = _dense(model, batches, params, "eval")
    s = D.rsqrt()
    want = float(torch.linalg.eigvalsh(s[:, None] * H * s[None, :])[-1])
    last = mon.history.iloc[-1]
    assert last["preconditioned_sharpness"] == pytest.approx(want, rel=1e-9)
    assert last["threshold"] == pytest.approx(38 / 0.01) and last["lr"] == 0.01


# --------------------------------------------------------------------------- #
# thresholds: closed forms and the quadratic
# --------------------------------------------------------------------------- #
def _sgd_stable(a: float, **kw: float) -> bool:
    """``torch.optim.SGD`` itself on ½ a x² (x₀ = 1) for 600 steps: does |x| shrink?"""
    x = torch.ones(1, dtype=DT, requires_grad=True)
    opt = torch.optim.SGD([x], **kw)
    for _ in range(600):
        opt.zero_grad()
        (0.5 * a * x * x).sum().backward()
        opt.step()
    return float(x.detach().abs()) < 1


SGD_CASES = {
    "sgd": dict(lr=0.1),
    "momentum": dict(lr=0.1, momentum=0.9),
    "dampening": dict(lr=0.1, momentum=0.5, dampening=0.3),
    "nesterov": dict(lr=0.1, momentum=0.9, nesterov=True),
    "weight_decay": dict(lr=0.1, momentum=0.5, weight_decay=0.7),
}


@pytest.mark.parametrize("case", list(SGD_CASES))
def test_sgd_threshold_is_where_the_quadratic_turns_unstable(case: str) -> None:
    from instab_lib.adapters import adapt

    kw = SGD_CASES[case]
    x = nn.Parameter(torch.zeros(3, dtype=DT))
    thr = adapt(torch.optim.SGD([x], **kw)).read([x]).threshold
    assert _sgd_stable(0.99 * thr, **kw) and not _sgd_stable(1.01 * thr, **kw)
    closed = {"sgd": 2 / 0.1, "momentum": 3.8 / 0.1, "dampening": 3 / (0.7 * 0.1), "nesterov": 3.8 / (2.8 * 0.1),
              "weight_decay": 3 / 0.1 - 0.7}[case]
    assert thr == pytest.approx(closed, rel=1e-12)


@pytest.mark.parametrize("beta1,decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 0.05), (0.5, 0.2)])
def test_ema_threshold_is_where_the_preconditioned_quadratic_turns_unstable(beta1: float, decay: float) -> None:
    """x_t = ρ x_{t−1} − η m_t, m_t = β₁ m_{t−1} + (1−β₁) a x_{t−1} (ρ = 1 − decay): Adam/AdamW/RMSprop
    on a quadratic with a frozen preconditioner, a the preconditioned curvature."""
    lr = 0.01
    thr = stability_threshold(lr, beta1, decay=decay)

    def stable(a: float) -> bool:
        x, m = 1.0, 0.0
        for _ in range(3000):
            m = beta1 * m + (1 - beta1) * a * x
            x = (1 - decay) * x - lr * m
        return abs(x) < 1

    assert stable(0.99 * thr) and not stable(1.01 * thr)
    assert stability_threshold(0.01, 0.9) == pytest.approx(38 / 0.01) and heavy_ball_threshold(0.1) == 20


def test_thresholds_of_each_optimiser() -> None:
    from instab_lib.adapters import adapt

    x = nn.Parameter(torch.zeros(2, dtype=DT))
    got = {name: adapt(o).read([x]).threshold for name, o in {
        "sgd": torch.optim.SGD([x], lr=0.1), "momentum": torch.optim.SGD([x], lr=0.1, momentum=0.9),
        "adam": torch.optim.Adam([x], lr=1e-3), "rmsprop": torch.optim.RMSprop([x], lr=1e-3),
        "adamw": torch.optim.AdamW([x], lr=1e-3, weight_decay=0.0)}.items()}
    assert got == pytest.approx({"sgd": 20, "momentum": 38, "adam": 38000, "rmsprop": 2000, "adamw": 38000})
    lib = {"gd": optim.gd(0.1, momentum=0.9), "adam": optim.adam(1e-3), "rmsprop": optim.rmsprop(1e-3),
           "rms_ub": optim.clipped_ada(1e-3, c=0.1, beta1=0.0)}
    for name, o in lib.items():
        st = o.update([torch.ones(2, dtype=DT)], o.init([x]), [x])[1]
        r = adapt(o).read([x], st)
        assert r.threshold == pytest.approx({"gd": 38, "adam": 38000, "rmsprop": 2000, "rms_ub": 2000}[name])
        assert r.adaptive == (name != "gd") and r.lr == o.lr_at(0)


# --------------------------------------------------------------------------- #
# rotation, data, errors, results
# --------------------------------------------------------------------------- #
def _result(V: Tensor, lam: list[float]) -> EigResult:
    return EigResult(torch.tensor(lam, dtype=DT), V, torch.zeros(len(lam), dtype=DT), 1, True, "LA", 1, 1e-3, lam[0])


def test_same_parity_rotation_on_a_known_sequence() -> None:
    """A period-2 flip between two eigenbases A, B: same-parity similarity 1, consecutive < 1."""
    Q, _ = torch.linalg.qr(torch.randn(10, 10, generator=_gen(8), dtype=DT))
    A, B = Q[:, :2], torch.stack([Q[:, 0] * 0.6 + Q[:, 2] * 0.8, Q[:, 1]], dim=1)  # B: the first vector turned
    state = RotationState()
    readings = []
    for step, V in zip(range(0, 12, 2), [A, B, A, B, A, B]):  # every 2 steps (even): the last one is same parity
        r, state = rotation_update(state, step, _result(V, [3.0, 1.0]))
        readings.append(r)
    assert readings[0].previous is None and readings[0].same_parity is None
    assert readings[1].lag == 2 and readings[1].same_parity.subspace < 0.99  # B against A
    state = RotationState()
    for i, step in enumerate(range(0, 18, 3)):  # every 3 steps (odd): the partner is 6 back, the same basis
        r, state = rotation_update(state, step, _result(A if i % 2 == 0 else B, [3.0, 1.0]))
        if i >= 2:
            assert r.lag == 6 and r.same_parity.subspace == pytest.approx(1.0, abs=1e-12)
            assert r.previous.subspace < 0.99
        if i == 1:
            assert r.same_parity is None and r.previous is not None
    want = math.cos(math.acos(0.6) / math.sqrt(2) * math.pi / 2 / (math.pi / 2))  # dk_cos of one angle acos(0.6)
    assert readings[1].same_parity.subspace == pytest.approx(want, rel=1e-12)


class DictSet(Dataset):
    def __init__(self, X: Tensor, y: Tensor) -> None:
        self.X, self.y = X, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"x": self.X[i], "label": self.y[i]}


def test_streamed_dict_loader_equals_the_list_and_rotation_is_one_when_nothing_moves() -> None:
    model, batches = _mlp()
    X, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    loader = DataLoader(DictSet(X, y), batch_size=7, shuffle=False)
    streamed = Monitor(model, nn.CrossEntropyLoss(), loader, k=2, every=1, tol=1e-10,
                       batch_fn=lambda b: (b["x"], b["label"], len(b["label"])))
    listed = Monitor(model, nn.CrossEntropyLoss(), batches, k=2, every=1, tol=1e-10)
    for mon in (streamed, listed):
        for _ in range(3):
            mon.step()
    a, b = streamed.history, listed.history
    for col in ("sharpness", "loss", "grad_norm"):
        assert a[col].tolist() == pytest.approx(b[col].tolist(), rel=1e-10)
    assert math.isnan(a["rotation"].iloc[0]) and math.isnan(a["rotation"].iloc[1])  # step 1 has no partner
    assert a["rotation"].iloc[2] == pytest.approx(1.0, abs=1e-9) and a["rotation_lag"].iloc[2] == 2
    assert math.isnan(a["threshold"].iloc[0]) and a.attrs["optimizer"] is None


def test_history_columns_attrs_and_figure() -> None:
    model, batches = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, nn.CrossEntropyLoss(), batches, opt, k=3, every=1)
    mon.measure()
    mon.step()
    df = mon.history
    assert list(df.columns) == list(COLUMNS) and len(df) == 2 and df["step"].tolist() == [0, 1]
    assert df.attrs["dropout"] == "off" and df.attrs["bn_mode"] == "eval" and df.attrs["optimizer"] == "SGD"
    assert df.attrs["loss_reduction"] == "mean" and df.attrs["n_samples"] == 20
    assert all(len(e) == 3 for e in df["eigenvalues"]) and df["threshold"].tolist() == [20.0, 20.0]
    fig = mon.plot()
    assert len(fig.axes) == 3
    state = mon.state_dict()
    mon.step()
    mon.load_state_dict(state)
    assert len(mon.history) == 2 and mon.state.step == 1


def test_bad_input_is_refused_in_one_line_before_compute() -> None:
    model, batches = _mlp()
    ce = nn.CrossEntropyLoss()
    x = nn.Parameter(torch.zeros(2, dtype=DT))
    two = torch.optim.SGD([{"params": [model[0].weight], "lr": 0.1}, {"params": [model[0].bias], "lr": 0.2}])
    dict_batches = [{"x": X, "y": y} for X, y in batches]
    bad = {
        "k must be": dict(k=0), "every must be": dict(every=0), "tol must be": dict(tol=0.0),
        "seed must be": dict(seed=-1), "unknown bn_mode": dict(bn_mode="batch"),
        "not supported": dict(optimizer=torch.optim.Adagrad(model.parameters())),
        "maximize": dict(optimizer=torch.optim.SGD(model.parameters(), lr=0.1, maximize=True)),
        "not optimised": dict(optimizer=torch.optim.SGD([x], lr=0.1)),
        "different hyperparameters": dict(optimizer=two, params=[model[0].weight, model[0].bias]),
        "smaller than the number of parameters": dict(k=57),
        "must be a pair": dict(hessian_data=dict_batches),
        "loss_fn must be callable": dict(loss_fn=3),
    }
    for match, kw in bad.items():
        args = dict(loss_fn=ce, hessian_data=batches)
        args.update({k: kw.pop(k) for k in ("loss_fn", "hessian_data") if k in kw})
        with pytest.raises(ValueError, match=match) as err:
            Monitor(model, args["loss_fn"], args["hessian_data"], **kw)
        assert "\n" not in str(err.value), match
    assert instab_lib.Monitor is Monitor
