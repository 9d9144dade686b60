"""The Hessian cases of a peer's test suite (curvlinops' ``test/cases.py``), re-created without its code.

Every case is checked, for every ``method`` of :class:`~instab_lib.curvature.HessianOperator`
(``double_backward``, ``forward_over_reverse``, both ``batched``, ``mlp`` and ``auto``), against
``torch.autograd.functional.hessian`` of the loss on all the data at once, written here
independently of the library (``torch.func.functional_call`` on a flat parameter vector), in
float64: exact to 1e-12 relative (Frobenius), or refused with a one-line ``ValueError`` (the
closed-form ``mlp`` path outside exactly ``nn.Sequential`` MLPs with cross-entropy). Two
products of the same block are equal (determinism), and the model's parameters, buffers and
modes are unchanged afterwards.

Cases: MLPs with cross-entropy, BCE-with-logits (one and two outputs) and MSE, each with mean
and sum reductions and unequal batches; dict inputs (an extra key, so the weighting by samples
is tested, not by keys); inputs with a sequence dimension (an ``nn.Sequential`` subclass that
folds it into the samples, a plain one that keeps it, a one-layer ``nn.TransformerEncoder``); weight sharing (tied embedding and
output weights); frozen and reordered parameters; a small CNN; BatchNorm in eval mode and in
train mode (against the Hessian of the batch-statistics loss; running statistics and modes
unchanged); Dropout (off: the Hessian of the network without it); a ``DataLoader`` with
``drop_last`` (streamed, one pass per product) and shuffled loaders (refused); an ``nn.Sequential``
subclass with its own ``forward`` (the closed form refused, ``auto`` exact); a functional model.
"""

from __future__ import annotations

import copy
import warnings
from collections import UserDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from instab_lib.curvature import HessianOperator

pytestmark = pytest.mark.usefixtures("one_thread")
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
DT = torch.float64
METHODS = {
    "double_backward": dict(method="double_backward"),
    "forward_over_reverse": dict(method="forward_over_reverse"),
    "double_backward_batched": dict(method="double_backward", batched=True),
    "forward_over_reverse_batched": dict(method="forward_over_reverse", batched=True),
    "mlp": dict(method="mlp"),
    "auto": dict(method="auto"),
}


# --------------------------------------------------------------------------- #
# data and models
# --------------------------------------------------------------------------- #
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _classes(shape: tuple[int, ...], c: int, g: torch.Generator) -> Tensor:
    return torch.randint(0, c, shape, generator=g)


def _binary(shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    return torch.randint(0, 2, shape, generator=g).to(DT)


def _regression(shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    return torch.randn(shape, generator=g, dtype=DT)


def _mlp(d_in: int, d_out: int, seed: int = 0, act: type = nn.Tanh) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, 5), act(), nn.Linear(5, d_out)).to(DT)


class DictInput(nn.Module):
    """A model whose input is a dict (curvlinops' ``ModelWithDictInput``)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.net = _mlp(10, c, seed=3)

    def forward(self, data: Any) -> Tensor:
        return self.net(data["x"])


class FoldSequence(nn.Sequential):
    """An ``nn.Sequential`` subclass with its own ``forward``: the sequence dimension folded into the
    samples (curvlinops' ``WeightShareModel``, "expand"): ``(n, T, d) -> (n·T, C)``."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        out = super().forward(x)
        return out.reshape(-1, out.shape[-1])


class TiedLM(nn.Module):
    """Token ids ``(n, T)`` -> logits ``(n, V)``; the output layer shares the embedding's weight."""

    def __init__(self, vocab: int = 7, d: int = 4) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.emb = nn.Embedding(vocab, d)
        self.mix = nn.Linear(d, d)
        self.out = nn.Linear(d, vocab, bias=False)
        self.out.weight = self.emb.weight
        self.to(DT)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.out(torch.tanh(self.mix(self.emb(tokens).mean(dim=1))))


class HalfSequential(nn.Sequential):
    """The issue's case: an ``nn.Sequential`` subclass whose ``forward`` is not the chain of its layers."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return self[2](torch.sin(self[0](x))) * 0.5


def _bn_model() -> nn.Sequential:
    torch.manual_seed(6)
    bn = nn.BatchNorm1d(5)
    model = nn.Sequential(nn.Linear(10, 5), bn, nn.Tanh(), nn.Linear(5, 3)).to(DT)
    g = _gen(60)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(5, generator=g, dtype=DT) + 0.5)
        bn.bias.copy_(torch.randn(5, generator=g, dtype=DT))
        bn.running_mean.copy_(torch.randn(5, generator=g, dtype=DT))
        bn.running_var.copy_(torch.rand(5, generator=g, dtype=DT) + 0.5)
        bn.num_batches_tracked.fill_(7)
    return model


def _functional(params: dict[str, Tensor], x: Tensor) -> Tensor:
    return torch.tanh(x @ params["W1"].T + params["b1"]) @ params["W2"].T + params["b2"]


# --------------------------------------------------------------------------- #
# the cases
# --------------------------------------------------------------------------- #
@dataclass
class Case:
    """A model, a loss, the data as the operator gets it, and the reference loss on all the data."""

    model: Any
    loss_fn: Callable[[Any, Any], Tensor]
    data: Any
    reference: Callable[[dict[str, Tensor]], Tensor]  #: L(θ) on all data, θ as a dict name -> tensor
    names: list[str]  #: the parameters θ, in the operator's order
    kwargs: dict[str, Any] = field(default_factory=dict)
    mlp: bool = False  #: the closed form applies
    params: Any = None  #: passed as ``params``


def _module_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def _call(model: nn.Module, theta: dict[str, Tensor], x: Any) -> Any:
    return torch.func.functional_call(model, theta, (x,))


def _pairs_case(model: nn.Module, loss_fn: Any, batches: list[tuple[Tensor, Tensor]], mlp: bool = False,
                **kw: Any) -> Case:
    """A model on ``(X, y)`` batches; the reference is the loss on the concatenated data."""
    X = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    ref = copy.deepcopy(model).eval()
    return Case(model, loss_fn, batches, lambda th: loss_fn(_call(ref, th, X), y), _module_names(model), kw, mlp)


def _mlp_case(loss: str, reduction: str) -> Case:
    g = _gen(1)
    if loss == "ce":
        return _pairs_case(_mlp(10, 3), nn.CrossEntropyLoss(reduction=reduction),
                           [(torch.rand(3, 10, generator=g, dtype=DT), _classes((3,), 3, g)),
                            (torch.rand(4, 10, generator=g, dtype=DT), _classes((4,), 3, g))], mlp=True)
    if loss.startswith("bce"):
        c = int(loss[-1])
        return _pairs_case(_mlp(10, c), nn.BCEWithLogitsLoss(reduction=reduction),
                           [(torch.rand(3, 10, generator=g, dtype=DT), _binary((3, c), g)),
                            (torch.rand(4, 10, generator=g, dtype=DT), _binary((4, c), g))])
    return _pairs_case(_mlp(8, 3), nn.MSELoss(reduction=reduction),
                       [(torch.rand(2, 8, generator=g, dtype=DT), _regression((2, 3), g)),
                        (torch.rand(6, 8, generator=g, dtype=DT), _regression((6, 3), g))])


def _dict_case(loss: str) -> Case:
    g = _gen(2)
    c = 1 if loss == "bce" else 2
    loss_fn = {"ce": nn.CrossEntropyLoss(), "bce": nn.BCEWithLogitsLoss(), "mse": nn.MSELoss()}[loss]

    def targets(n: int) -> Tensor:
        return _classes((n,), 2, g) if loss == "ce" else _binary((n, 1), g) if loss == "bce" else _regression((n, 2), g)

    X1, X2 = torch.rand(3, 10, generator=g, dtype=DT), torch.rand(4, 10, generator=g, dtype=DT)
    y1, y2 = targets(3), targets(4)
    ids = torch.arange(7)  # a second key: weighting by the number of keys (2) would be wrong
    batches = [(UserDict({"x": X1, "id": ids[:3]}), y1), ({"x": X2, "id": ids[3:]}, y2)]
    model = DictInput(c).to(DT)
    ref = copy.deepcopy(model).eval()
    X, y = torch.cat([X1, X2]), torch.cat([y1, y2])
    return Case(model, loss_fn, batches, lambda th: loss_fn(_call(ref, th, {"x": X}), y), _module_names(model))


def _sequence_case(loss: str, reduction: str) -> Case:
    g = _gen(3)
    if loss == "ce":  # the subclass folds (n, T) into n·T samples: the targets are folded by batch_fn
        model = FoldSequence(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 3)).to(DT)
        batches = [(torch.rand(3, 5, 10, generator=g, dtype=DT), _classes((3, 5), 3, g)),
                   (torch.rand(4, 5, 10, generator=g, dtype=DT), _classes((4, 5), 3, g))]
        loss_fn = nn.CrossEntropyLoss(reduction=reduction)
        X, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        ref = copy.deepcopy(model)
        case = Case(model, loss_fn, batches, lambda th: loss_fn(_call(ref, th, X), y.reshape(-1)), _module_names(model))
        case.kwargs["batch_fn"] = lambda b: (b[0], b[1].reshape(-1), b[0].shape[0])
        return case
    if loss == "bce":
        return _pairs_case(_mlp(10, 2, act=nn.ReLU), nn.BCEWithLogitsLoss(reduction=reduction),
                           [(torch.rand(3, 5, 10, generator=g, dtype=DT), _binary((3, 5, 2), g)),
                            (torch.rand(4, 5, 10, generator=g, dtype=DT), _binary((4, 5, 2), g))])
    return _pairs_case(_mlp(8, 3, act=nn.ReLU), nn.MSELoss(reduction=reduction),
                       [(torch.rand(2, 5, 8, generator=g, dtype=DT), _regression((2, 5, 3), g)),
                        (torch.rand(6, 5, 8, generator=g, dtype=DT), _regression((6, 5, 3), g))])


class TinyTransformer(nn.Module):
    """A one-layer ``nn.TransformerEncoder`` classifier (attention, LayerNorm, Dropout inside the layer)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(12)
        layer = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.1, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(4, 3)
        self.to(DT).train()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.enc(x).mean(dim=1))


def _transformer_case() -> Case:
    """Attention has no second derivative on PyTorch's fused kernels: the operator (and the
    reference, here) use the math kernel."""
    g = _gen(12)
    case = _pairs_case(TinyTransformer(), nn.CrossEntropyLoss(),
                       [(torch.randn(3, 3, 4, generator=g, dtype=DT), _classes((3,), 3, g)),
                        (torch.randn(4, 3, 4, generator=g, dtype=DT), _classes((4,), 3, g))])
    inner = case.reference

    def reference(th: dict[str, Tensor]) -> Tensor:
        with torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH]):
            return inner(th)

    case.reference = reference
    return case


def _tied_case() -> Case:
    g = _gen(4)
    model = TiedLM()
    assert len(_module_names(model)) == 3  # emb.weight (shared with out.weight), mix.weight, mix.bias
    return _pairs_case(model, nn.CrossEntropyLoss(), [(torch.randint(0, 7, (3, 4), generator=g), _classes((3,), 7, g)),
                                                     (torch.randint(0, 7, (5, 4), generator=g), _classes((5,), 7, g))])


def _frozen_reordered_case() -> Case:
    g = _gen(5)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).to(DT)
    model[0].weight.requires_grad_(False)
    order = ["4.bias", "2.weight", "4.weight", "0.bias"]  # reordered; 2.bias left out, 0.weight frozen
    own = dict(model.named_parameters())
    case = _pairs_case(model, nn.CrossEntropyLoss(), [(torch.randn(4, 6, generator=g, dtype=DT), _classes((4,), 3, g)),
                                                      (torch.randn(5, 6, generator=g, dtype=DT), _classes((5,), 3, g))])
    case.names, case.params = order, [own[n] for n in order]
    return case


def _cnn_case() -> Case:
    g = _gen(6)
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 3, 3), nn.ReLU(),
                          nn.Flatten(), nn.Linear(12, 4)).to(DT)
    return _pairs_case(model, nn.CrossEntropyLoss(), [(torch.rand(3, 1, 10, 10, generator=g, dtype=DT), _classes((3,), 4, g)),
                                                      (torch.rand(2, 1, 10, 10, generator=g, dtype=DT), _classes((2,), 4, g))])


def _bn_batches() -> list[tuple[Tensor, Tensor]]:
    g = _gen(7)
    return [(torch.randn(5, 10, generator=g, dtype=DT) * 2 + 1, _classes((5,), 3, g)),
            (torch.randn(7, 10, generator=g, dtype=DT), _classes((7,), 3, g))]


def _bn_case(mode: str) -> Case:
    model, batches = _bn_model(), _bn_batches()
    model.train()  # as during training: the operator must leave this mode and the buffers alone
    if mode == "eval":
        return _pairs_case(model, nn.CrossEntropyLoss(), batches)
    ref = copy.deepcopy(model).train()  # batch statistics of each chunk, weighted by n_c/N
    N = sum(len(b[1]) for b in batches)

    def reference(th: dict[str, Tensor]) -> Tensor:
        return sum(len(y) / N * F.cross_entropy(_call(ref, th, X), y) for X, y in batches)

    return Case(model, nn.CrossEntropyLoss(), batches, reference, _module_names(model), {"bn_mode": "train"})


def _dropout_case() -> Case:
    g = _gen(8)
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(10, 5), nn.Dropout(0.5), nn.ReLU(), nn.Linear(5, 2)).to(DT).train()
    return _pairs_case(model, nn.CrossEntropyLoss(), [(torch.rand(6, 10, generator=g, dtype=DT), _classes((6,), 2, g)),
                                                      (torch.rand(6, 10, generator=g, dtype=DT), _classes((6,), 2, g))])


def _loader_case() -> Case:
    g = _gen(9)
    X, y = torch.rand(12, 10, generator=g, dtype=DT), _classes((12,), 2, g)
    loader = DataLoader(TensorDataset(X, y), batch_size=5, shuffle=False, drop_last=True)  # 5 + 5, 2 dropped
    model = _mlp(10, 2, seed=9)
    ref = copy.deepcopy(model)
    return Case(model, nn.CrossEntropyLoss(), loader, lambda th: F.cross_entropy(_call(ref, th, X[:10]), y[:10]),
                _module_names(model), mlp=True)


def _subclass_case() -> Case:
    g = _gen(10)
    torch.manual_seed(10)
    model = HalfSequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3)).to(DT)
    return _pairs_case(model, nn.CrossEntropyLoss(), [(torch.randn(4, 6, generator=g, dtype=DT), _classes((4,), 3, g)),
                                                      (torch.randn(6, 6, generator=g, dtype=DT), _classes((6,), 3, g))])


def _functional_case() -> Case:
    g = _gen(11)
    params = {"W1": torch.randn(5, 6, generator=g, dtype=DT), "b1": torch.randn(5, generator=g, dtype=DT),
              "W2": torch.randn(3, 5, generator=g, dtype=DT), "b2": torch.randn(3, generator=g, dtype=DT)}
    batches = [(torch.randn(4, 6, generator=g, dtype=DT), _classes((4,), 3, g)),
               (torch.randn(3, 6, generator=g, dtype=DT), _classes((3,), 3, g))]
    X, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    case = Case(_functional, F.cross_entropy, batches, lambda th: F.cross_entropy(_functional(th, X), y), list(params))
    case.params = params
    return case


def _plain_sum_case() -> Case:
    """A sum-reduced loss as a plain callable: its reduction is measured (no ``.reduction``)."""
    case = _mlp_case("ce", "sum")
    case.loss_fn = lambda out, t: F.cross_entropy(out, t, reduction="sum")
    case.mlp = False
    return case


CASES: dict[str, Callable[[], Case]] = {
    **{f"mlp_{loss}_{red}": (lambda loss=loss, red=red: _mlp_case(loss, red))
       for loss in ("ce", "bce1", "bce2", "mse") for red in ("mean", "sum")},
    **{f"dict_{loss}": (lambda loss=loss: _dict_case(loss)) for loss in ("ce", "bce", "mse")},
    **{f"sequence_{loss}_{red}": (lambda loss=loss, red=red: _sequence_case(loss, red))
       for loss in ("ce", "bce", "mse") for red in ("mean", "sum")},
    "transformer_encoder": _transformer_case,
    "tied_weights": _tied_case,
    "frozen_reordered": _frozen_reordered_case,
    "cnn": _cnn_case,
    "batchnorm_eval": lambda: _bn_case("eval"),
    "batchnorm_train": lambda: _bn_case("train"),
    "dropout": _dropout_case,
    "dataloader_drop_last": _loader_case,
    "sequential_subclass": _subclass_case,
    "functional_model": _functional_case,
    "plain_callable_sum": _plain_sum_case,
}


# --------------------------------------------------------------------------- #
# the checks
# --------------------------------------------------------------------------- #
def _reference_hessian(case: Case, tensors: list[Tensor]) -> Tensor:
    sizes = [t.numel() for t in tensors]
    fixed = {}
    if isinstance(case.model, nn.Module):  # every other parameter at its value (frozen, left out)
        fixed = {n: p.detach() for n, p in case.model.named_parameters() if n not in case.names}

    def f(theta: Tensor) -> Tensor:
        parts = [c.view_as(t) for c, t in zip(torch.split(theta, sizes), tensors)]
        return case.reference({**fixed, **dict(zip(case.names, parts))})

    theta = torch.cat([t.detach().reshape(-1) for t in tensors])
    return torch.autograd.functional.hessian(f, theta)


def _state(model: Any) -> tuple[list[Tensor], list[bool]]:
    if not isinstance(model, nn.Module):
        return [], []
    tensors = [t.detach().clone() for t in [*model.parameters(), *model.buffers()]]
    return tensors, [m.training for m in model.modules()]


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", list(CASES))
def test_case_exact_or_refused(name: str, method: str) -> None:
    case = CASES[name]()
    kw = {**case.kwargs, **METHODS[method]}
    if method == "mlp" and not case.mlp:
        with pytest.raises(ValueError, match="method='mlp'") as err:
            HessianOperator(case.model, case.loss_fn, case.data, params=case.params, **kw)
        assert "\n" not in str(err.value)
        return
    before = _state(case.model)
    op = HessianOperator(case.model, case.loss_fn, case.data, params=case.params, **kw)
    if method == "auto":
        assert op.method_used == ("mlp" if case.mlp else "double_backward")
    H = op.to_dense()
    assert op.names == case.names
    ref = _reference_hessian(case, op.params)
    assert H.shape == ref.shape == (op.dim, op.dim)
    rel = float((H - ref).norm() / ref.norm())
    assert rel <= 1e-12, rel
    V = torch.randn(op.dim, 3, generator=_gen(99), dtype=DT)
    assert torch.equal(op.matmat(V), op.matmat(V))  # deterministic
    after = _state(case.model)
    assert after[1] == before[1]  # every module's mode
    assert all(torch.equal(a, b) for a, b in zip(before[0], after[0]))  # parameters and buffers
    if isinstance(case.model, nn.Module):
        assert all(p.grad is None for p in case.model.parameters())
