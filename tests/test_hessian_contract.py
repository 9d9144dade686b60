"""The data and mode contract of :class:`~instab_lib.curvature.HessianOperator` and its refusals.

Streaming (one pass per product, nothing materialised, determinism checked), ``materialize``,
batches cast to the parameters' dtype, ``batch_fn`` for nested batches, ``chunk_size`` on dict
inputs, graphs kept under the budget and released (``with``, stale parameters), BatchNorm's
train mode leaving a model in eval mode alone, the loss's reduction (read, measured, declared),
the forward-over-reverse workaround of pytorch#123996, and every refusal as one line.
All against ``torch.autograd.functional.hessian`` in float64.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from instab_lib.curvature import HessianOperator, dense_hessian, weighted_loss

pytestmark = pytest.mark.usefixtures("one_thread")
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
DT = torch.float64


def _model(seed: int = 0, d_in: int = 6, d_out: int = 3) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, 4), nn.Tanh(), nn.Linear(4, d_out)).to(DT)


def _data(n: int = 11, seed: int = 1, d_in: int = 6, c: int = 3) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d_in, generator=g, dtype=DT), torch.randint(0, c, (n,), generator=g)


def _hessian_of(model: nn.Module, f: Any) -> Tensor:
    """``torch.autograd.functional.hessian`` of ``f(model with θ)`` over the trainable parameters."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    ps = [p.detach() for n, p in model.named_parameters() if p.requires_grad]
    sizes = [p.numel() for p in ps]

    def g(theta: Tensor) -> Tensor:
        th = {n: c.view_as(p) for n, c, p in zip(names, torch.split(theta, sizes), ps)}
        return f(lambda x: torch.func.functional_call(model, th, (x,)))

    return torch.autograd.functional.hessian(g, torch.cat([p.reshape(-1) for p in ps]))


def _rel(A: Tensor, B: Tensor) -> float:
    return float((A - B).norm() / B.norm())


class CountingLoader:
    """A re-iterable of batches that counts its passes (a stand-in for a DataLoader)."""

    def __init__(self, batches: list[Any]) -> None:
        self.batches, self.passes = batches, 0

    def __iter__(self) -> Any:
        self.passes += 1
        return iter(self.batches)


# --------------------------------------------------------------------------- #
# streaming, materialising, devices and dtypes
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("method", ["double_backward", "forward_over_reverse", "mlp"])
def test_streamed_data_one_pass_per_product(method: str) -> None:
    model, (X, y) = _model(), _data()
    loader = CountingLoader([(X[:4], y[:4]), (X[4:], y[4:])])
    op = HessianOperator(model, nn.CrossEntropyLoss(), loader, method=method)
    assert op.source.streamed and op.chunks is None and loader.passes == 1  # counted and checksummed once
    H = _hessian_of(model, lambda f: F.cross_entropy(f(X), y))
    V = torch.randn(op.dim, 4, generator=torch.Generator().manual_seed(2), dtype=DT)
    assert _rel(op.matmat(V), H @ V) <= 1e-12
    assert loader.passes == 2  # one pass for a block of 4 columns
    op.matvec(V[:, 0])
    assert loader.passes == 3 and op.source.n_passes == 3
    assert op._graphs is None and op._mlp_states is None  # nothing of the data kept between products


def test_materialize_reads_an_iterator_once() -> None:
    model, (X, y) = _model(), _data()
    op = HessianOperator(model, nn.CrossEntropyLoss(), iter([(X[:5], y[:5]), (X[5:], y[5:])]), materialize=True)
    assert not op.source.streamed and len(op.chunks) == 2
    H = _hessian_of(model, lambda f: F.cross_entropy(f(X), y))
    assert _rel(op.to_dense(), H) <= 1e-12


def test_batches_are_cast_to_the_parameters_dtype() -> None:
    model, (X, y) = _model(), _data()
    op32 = HessianOperator(model, nn.CrossEntropyLoss(), DataLoader(TensorDataset(X.float(), y), batch_size=4))
    op64 = HessianOperator(model, nn.CrossEntropyLoss(), DataLoader(TensorDataset(X.float().double(), y), batch_size=4))
    V = torch.randn(op64.dim, 2, generator=torch.Generator().manual_seed(3), dtype=DT)
    assert torch.equal(op32.matmat(V), op64.matmat(V))


def test_shuffled_loaders_are_refused() -> None:
    model, (X, y) = _model(), _data(12)
    for loader in (DataLoader(TensorDataset(X, y), batch_size=5, shuffle=True, drop_last=True),
                   DataLoader(TensorDataset(X, y), batch_size=5, shuffle=True)):
        torch.manual_seed(0)
        op = HessianOperator(model, nn.CrossEntropyLoss(), loader, method="double_backward", bn_mode="eval")
        with pytest.raises(ValueError, match="other batches than the first") as err:
            for _ in range(3):  # the first pass may repeat the construction's order by chance
                op.matvec(torch.ones(op.dim, dtype=DT))
        assert "\n" not in str(err.value)


def test_nested_batches_through_batch_fn_and_chunk_size() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _model(4)

        def forward(self, inputs: tuple[Tensor, Tensor]) -> Tensor:
            x, scale = inputs
            return self.net(x * scale[:, None])

    model, (X, y) = Scaled(), _data(9)
    s = torch.linspace(0.5, 1.5, 9, dtype=DT)
    batches = [{"inputs": (X[:6], s[:6]), "labels": y[:6], "note": "first"},
               {"inputs": (X[6:], s[6:]), "labels": y[6:], "note": "second"}]
    H = _hessian_of(model, lambda f: F.cross_entropy(f((X, s)), y))
    for chunk in (None, 4):
        op = HessianOperator(model, F.cross_entropy, batches, chunk_size=chunk,
                             batch_fn=lambda b: (b["inputs"], b["labels"], len(b["labels"])))
        assert [c[2] for c in op.chunks] == ([6, 3] if chunk is None else [4, 2, 3])
        assert _rel(op.to_dense(), H) <= 1e-12


# --------------------------------------------------------------------------- #
# graphs: kept under the budget, released
# --------------------------------------------------------------------------- #
def test_graphs_released_by_with_and_on_stale_parameters() -> None:
    model, (X, y) = _model(), _data()
    v = torch.ones(sum(p.numel() for p in model.parameters()), dtype=DT)
    with HessianOperator(model, nn.CrossEntropyLoss(), [(X[:5], y[:5]), (X[5:], y[5:])],
                         method="double_backward") as op:
        op.matvec(v)
        old = op._graphs
        assert old is not None and len(old) == 2
        with torch.no_grad():
            model[0].weight.add_(0.1)
        hv = op.matvec(v)
        assert op._graphs is not None and op._graphs[0] is not old[0]  # rebuilt at the new parameters
    assert op._graphs is None
    H = _hessian_of(model, lambda f: F.cross_entropy(f(X), y))
    assert _rel(hv, H @ v) <= 1e-12
    small = HessianOperator(model, nn.CrossEntropyLoss(), [(X[:5], y[:5]), (X[5:], y[5:])], graph_budget_bytes=0)
    assert small.method_used == "mlp" and _rel(small.matvec(v), H @ v) <= 1e-12
    assert small._mlp_states is None  # over the budget: recomputed per product


# --------------------------------------------------------------------------- #
# modes
# --------------------------------------------------------------------------- #
def test_batchnorm_train_mode_leaves_an_eval_model_alone() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Tanh(), nn.Flatten(), nn.Linear(8, 3)).to(DT)
    g = torch.Generator().manual_seed(4)
    X, y = torch.randn(6, 1, 4, 4, generator=g, dtype=DT), torch.randint(0, 3, (6,), generator=g)
    model.eval()
    buffers = [b.clone() for b in model.buffers()]
    ref = copy.deepcopy(model).train()
    H_train = _hessian_of(ref, lambda f: F.cross_entropy(f(X), y))
    op = HessianOperator(model, nn.CrossEntropyLoss(), (X, y), bn_mode="train", method="forward_over_reverse")
    assert _rel(op.to_dense(), H_train) <= 1e-12
    assert not any(m.training for m in model.modules())
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))
    H_eval = HessianOperator(model, nn.CrossEntropyLoss(), (X, y), bn_mode="eval").to_dense()
    assert _rel(H_eval, dense_hessian(model, nn.CrossEntropyLoss(), (X, y))) <= 1e-12
    assert _rel(H_eval, H_train) > 1e-3  # the two modes measure different functions
    # the dense ground truth in train mode too (torch.func's transforms get BatchNorm's second derivative wrong)
    assert _rel(dense_hessian(model, nn.CrossEntropyLoss(), (X, y), bn_mode="train"), H_train) <= 1e-12
    assert not any(m.training for m in model.modules())


# --------------------------------------------------------------------------- #
# the loss: reduction, the one weighted loss, forward-over-reverse and MSE
# --------------------------------------------------------------------------- #
def test_reduction_read_measured_or_declared() -> None:
    model, (X, y) = _model(), _data()
    H_sum = _hessian_of(model, lambda f: F.cross_entropy(f(X), y, reduction="sum"))
    batches = [(X[:3], y[:3]), (X[3:], y[3:])]
    summed = lambda out, t: F.cross_entropy(out, t, reduction="sum")  # noqa: E731
    for loss_fn, declared in ((nn.CrossEntropyLoss(reduction="sum"), None), (summed, None), (summed, "sum")):
        op = HessianOperator(model, loss_fn, batches, loss_reduction=declared, method="double_backward")
        assert op.loss_reduction == "sum" and _rel(op.to_dense(), H_sum) <= 1e-12
    zero = lambda out, t: 0.0 * out.sum()  # noqa: E731 - a zero loss cannot tell: the declaration decides
    assert HessianOperator(model, zero, batches, loss_reduction="sum").loss_reduction == "sum"
    assert HessianOperator(model, F.mse_loss, (X, X[:, :3])).loss_reduction == "mean"  # PyTorch's: a mean


def test_sequence_first_inputs_need_a_declared_reduction() -> None:
    """Inputs ``(T, n, d)``: repeating dim 0 lengthens the sequences, so the reduction cannot be
    measured; declared, the Hessian is exact."""

    class SeqFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _model(6)

        def forward(self, x: Tensor) -> Tensor:
            return self.net(torch.tanh(x).mean(dim=0))

    model, g = SeqFirst(), torch.Generator().manual_seed(7)
    X, y = torch.randn(4, 9, 6, generator=g, dtype=DT), torch.randint(0, 3, (9,), generator=g)
    ce = lambda out, t: F.cross_entropy(out, t)  # noqa: E731 - a plain callable: measured, not read
    batch_fn = lambda b: (b[0], b[1], b[1].shape[0])  # noqa: E731
    with pytest.raises(ValueError, match="cannot tell.*fails: ValueError.*pass loss_reduction") as err:
        HessianOperator(model, ce, [(X, y)], batch_fn=batch_fn)
    assert "\n" not in str(err.value)
    op = HessianOperator(model, ce, [(X[:, :4], y[:4]), (X[:, 4:], y[4:])], batch_fn=batch_fn, loss_reduction="mean")
    assert _rel(op.to_dense(), _hessian_of(model, lambda f: F.cross_entropy(f(X), y))) <= 1e-12


def test_weighted_loss_is_the_chunked_mean() -> None:
    model, (X, y) = _model(), _data()
    params = dict(model.named_parameters())
    whole = weighted_loss(model, F.cross_entropy, params, X, y)
    parts = weighted_loss(model, F.cross_entropy, params, X[:4], y[:4], 4 / 11) + weighted_loss(
        model, F.cross_entropy, params, X[4:], y[4:], 7 / 11)
    assert abs(float((whole - parts).detach())) < 1e-14 and torch.equal(whole, F.cross_entropy(model(X), y))


def test_forward_over_reverse_with_mse_and_float_targets() -> None:
    model, (X, _) = _model(d_out=2), _data()
    Y = torch.randn(11, 2, generator=torch.Generator().manual_seed(5), dtype=DT)
    H = _hessian_of(model, lambda f: F.mse_loss(f(X), Y))
    for batched in (False, True):
        op = HessianOperator(model, F.mse_loss, [(X[:4], Y[:4]), (X[4:], Y[4:])],
                             method="forward_over_reverse", batched=batched)
        assert _rel(op.to_dense(), H) <= 1e-12
    hidden = lambda out, t: F.mse_loss(out, t.detach())  # noqa: E731 - the target's tangent cut off
    op = HessianOperator(model, hidden, (X, Y), method="forward_over_reverse")
    with pytest.raises(RuntimeError, match="pytorch#123996.*double_backward") as err:
        op.matvec(torch.ones(op.dim, dtype=DT))
    assert "\n" not in str(err.value)
    assert HessianOperator(model, hidden, (X, Y)).method_used == "double_backward"


# --------------------------------------------------------------------------- #
# refusals: one line each, before any product
# --------------------------------------------------------------------------- #
def _refusals() -> list[tuple[str, Any, str]]:
    model, (X, y) = _model(), _data()
    summed = lambda out, t: F.cross_entropy(out, t, reduction="sum")  # noqa: E731
    odd = lambda out, t: F.cross_entropy(out, t, reduction="sum").sqrt()  # noqa: E731
    fparams = {"w": torch.randn(3, 6, dtype=DT)}
    functional = lambda p, x: x @ p["w"].T  # noqa: E731
    return [
        ("reduction none", lambda: HessianOperator(model, nn.CrossEntropyLoss(reduction="none"), (X, y)), "scalar"),
        ("declared against .reduction",
         lambda: HessianOperator(model, nn.CrossEntropyLoss(reduction="sum"), (X, y), loss_reduction="mean"),
         "reduction='sum' but loss_reduction='mean'"),
        ("declared against PyTorch's functional mean",
         lambda: HessianOperator(model, F.cross_entropy, (X, y), loss_reduction="sum"),
         "averages over the batch but loss_reduction='sum'"),
        ("zero loss undeclared", lambda: HessianOperator(model, lambda out, t: 0.0 * out.sum(), (X, y)),
         "cannot tell"),
        ("declared against the measurement", lambda: HessianOperator(model, summed, (X, y), loss_reduction="mean"),
         "sums over the batch.*pass loss_reduction='sum'"),
        ("neither mean nor sum", lambda: HessianOperator(model, odd, (X, y)), "averages or sums"),
        ("unknown loss_reduction", lambda: HessianOperator(model, F.cross_entropy, (X, y), loss_reduction="avg"),
         "unknown loss_reduction"),
        ("unknown bn_mode", lambda: HessianOperator(model, F.cross_entropy, (X, y), bn_mode="batch"), "unknown bn_mode"),
        ("train mode of a functional model",
         lambda: HessianOperator(functional, F.cross_entropy, (X, y), params=fparams, bn_mode="train"),
         "needs an nn.Module"),
        ("functional model without a dict", lambda: HessianOperator(functional, F.cross_entropy, (X, y)),
         "needs params=\\{name: tensor\\}"),
        ("a tensor not of the model", lambda: HessianOperator(model, F.cross_entropy, (X, y), params=[X]),
         "parameter of the model"),
        ("an unknown parameter name",
         lambda: HessianOperator(model, F.cross_entropy, (X, y), params={"w": model[0].weight}), "not a parameter name"),
        ("one-shot iterator", lambda: HessianOperator(model, F.cross_entropy, iter([(X, y)])), "one-shot iterator"),
        ("dict batch without batch_fn", lambda: HessianOperator(model, F.cross_entropy, [{"x": X, "y": y}]),
         "pass batch_fn"),
        ("batch_fn without n", lambda: HessianOperator(model, F.cross_entropy, [(X, y)], batch_fn=lambda b: b),
         "must return \\(inputs, targets, n\\)"),
        ("chunk_size across unequal dims",
         lambda: HessianOperator(model, F.cross_entropy, [(X, y)], chunk_size=3,
                                 batch_fn=lambda b: (b[0], b[1], 2 * len(b[1]))), "chunk_size=3"),
        ("no batches", lambda: HessianOperator(model, F.cross_entropy, []), "no batches"),
        ("closed form on a subclass",
         lambda: HessianOperator(type("Sub", (nn.Sequential,), {})(*model), F.cross_entropy, (X, y), method="mlp"),
         "method='mlp'"),
        ("closed form with MSE", lambda: HessianOperator(model, nn.MSELoss(), (X, F.one_hot(y, 3).to(DT)), method="mlp"),
         "method='mlp'"),
    ]


@pytest.mark.parametrize("case", range(len(_refusals())), ids=[r[0] for r in _refusals()])
def test_refused_with_one_line(case: int) -> None:
    _, make, pattern = _refusals()[case]
    with pytest.raises(ValueError, match=pattern) as err:
        make()
    assert "\n" not in str(err.value)


def test_default_tolerance_is_reached_in_float32() -> None:
    """The solvers' default ``tol`` (1e-3) is one a float32 network Hessian attains: no warning, converged."""
    from instab_lib.curvature import DEFAULT_TOL, EigTracker, lanczos, power_iteration

    model, (X, y) = _model().float(), _data(40)
    op = HessianOperator(model, nn.CrossEntropyLoss(), (X.float(), y))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = [lanczos(op, 3), EigTracker(k=3).update(op), power_iteration(op)]
    assert DEFAULT_TOL == 1e-3
    for r in results:
        assert r.converged and r.tol == DEFAULT_TOL and float(r.residuals.max()) <= 1e-3 * r.scale


def test_closed_form_refuses_what_it_cannot_see() -> None:
    """A forward hook, a ``forward`` set on a layer, an in-place activation: ``mlp`` refused, ``auto`` exact."""
    X, y = _data()
    ref = lambda m: _hessian_of(m, lambda f: F.cross_entropy(f(X), y))  # noqa: E731
    hooked = _model(8)
    hooked[0].register_forward_hook(lambda mod, i, out: 2 * out)
    patched = _model(9)
    patched[1].forward = torch.sin  # type: ignore[method-assign]
    inplace = nn.Sequential(nn.Linear(6, 4), nn.ReLU(inplace=True), nn.Linear(4, 3)).to(DT)
    for model in (hooked, patched, inplace):
        with pytest.raises(ValueError, match="method='mlp'"):
            HessianOperator(model, F.cross_entropy, (X, y), method="mlp")
        op = HessianOperator(model, F.cross_entropy, (X, y))
        assert op.method_used == "double_backward" and _rel(op.to_dense(), ref(model)) <= 1e-12
