"""The data contract of :class:`~instab_lib.curvature.HessianOperator`: batches, sample counts, devices.

A *batch* is whatever the data yields; ``batch_fn(batch) -> (inputs, targets, n)`` turns it into
the model's inputs (one argument, any structure: a tensor, a dict, a tuple), the loss's targets
and ``n``, the number of samples the loss averages over (the weight of the batch is ``n/N``).
The default :func:`default_batch_fn` takes a pair ``(inputs, targets)`` and counts the first
dimension of the inputs (or of the targets, when the inputs are not a tensor, e.g. a dict).

:class:`BatchSource` holds the data in one of two ways:

* **materialised** — a pair ``(X, y)``, a list or tuple of batches, or any iterable with
  ``materialize=True``: the batches are read once, passed through ``batch_fn``, moved to the
  model's device (floating-point tensors also to its dtype) and kept;
* **streamed** — any other re-iterable (a ``DataLoader``, a dataset's iterator factory): one pass
  at construction counts ``N`` and records a checksum of every batch; every product is one more
  pass, each batch moved to the device as it comes and dropped after use. A pass whose batches
  differ from the first (``shuffle=True``, random augmentation, ``drop_last`` with shuffling)
  raises a one-line ``ValueError`` after that pass; a one-shot iterator is refused.

``chunk_size`` splits every batch into pieces of at most that many samples (all tensors of the
batch must share their first dimension, the samples, and ``n`` must count it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

Batch = tuple[Any, Any, int]  #: ``(inputs, targets, n)``
BatchFn = Callable[[Any], Batch]


# --------------------------------------------------------------------------- #
# nested structures of tensors
# --------------------------------------------------------------------------- #
def tree_map(fn: Callable[[Tensor], Any], tree: Any) -> Any:
    """``fn`` applied to every tensor in dicts (any ``Mapping``), lists, tuples and named tuples."""
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, Mapping):
        items = {k: tree_map(fn, v) for k, v in tree.items()}
        try:
            return type(tree)(items)
        except TypeError:
            return items
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(tree_map(fn, v) for v in tree))
    if isinstance(tree, (list, tuple)):
        return type(tree)(tree_map(fn, v) for v in tree)
    return tree


def tree_leaves(tree: Any) -> list[Tensor]:
    """The tensors of ``tree`` in :func:`tree_map`'s order."""
    out: list[Tensor] = []
    tree_map(out.append, tree)
    return out


def to_device(tree: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Every tensor moved to ``device``; floating-point ones also cast to ``dtype`` (no copy if
    already there)."""
    return tree_map(lambda t: t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype), tree)


def leading_dim(tree: Any) -> int | None:
    """The first dimension shared by every tensor of ``tree``; ``None`` if they differ or one is 0-d."""
    dims = {t.shape[0] if t.dim() else None for t in tree_leaves(tree)}
    return dims.pop() if len(dims) == 1 else None


def cat_twice(tree: Any) -> Any:
    """``tree`` with every tensor repeated twice along dim 0 (``None`` if a tensor is 0-d or there is none)."""
    leaves = tree_leaves(tree)
    if not leaves or any(t.dim() == 0 for t in leaves):
        return None
    return tree_map(lambda t: torch.cat([t, t]), tree)


def head(inputs: Any, targets: Any, n: int, m: int) -> tuple[Any, Any]:
    """The first ``m`` samples of a batch where every tensor's dim 0 counts its ``n`` samples, else all."""
    if m < n and leading_dim((inputs, targets)) == n:
        return tree_map(lambda t: t[:m], inputs), tree_map(lambda t: t[:m], targets)
    return inputs, targets


# --------------------------------------------------------------------------- #
# batches
# --------------------------------------------------------------------------- #
def default_batch_fn(batch: Any) -> Batch:
    """``(inputs, targets) -> (inputs, targets, n)``; ``n`` = first dimension of ``inputs``
    (a tensor), else of ``targets`` (a tensor), else ``len(inputs)``."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        kind = f"dict with keys {sorted(map(str, batch))}" if isinstance(batch, Mapping) else type(batch).__name__
        raise ValueError(f"data: a batch must be a pair (inputs, targets), got a {kind}; "
                         "pass batch_fn=lambda batch: (inputs, targets, n)")
    X, y = batch
    for t in (X, y):
        if isinstance(t, Tensor):
            if t.dim() == 0:
                raise ValueError("data: a batch's inputs or targets are 0-d tensors; pass batch_fn to count its samples")
            return X, y, int(t.shape[0])
    try:
        return X, y, len(X)
    except TypeError:
        raise ValueError(f"data: cannot count the samples of a batch of {type(X).__name__} inputs; "
                         "pass batch_fn=lambda batch: (inputs, targets, n)") from None


def _checked(out: Any) -> Batch:
    if not (isinstance(out, tuple) and len(out) == 3):
        what = f"a {type(out).__name__} of {len(out)}" if isinstance(out, (tuple, list)) else f"a {type(out).__name__}"
        raise ValueError(f"batch_fn must return (inputs, targets, n), got {what}")
    inputs, targets, n = out
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"batch_fn: n must be a positive integer (the samples of the batch), got {n!r}")
    return inputs, targets, n


def split(batch: Batch, size: int | None) -> list[Batch]:
    """Pieces of at most ``size`` samples (``[batch]`` when ``size`` is ``None`` or not smaller)."""
    inputs, targets, n = batch
    if size is None or size >= n:
        return [batch]
    if leading_dim((inputs, targets)) != n:
        raise ValueError(f"chunk_size={size}: every tensor of a batch must have its n={n} samples in dim 0")
    return [(tree_map(lambda t: t[i:i + size], inputs), tree_map(lambda t: t[i:i + size], targets),
             min(size, n - i)) for i in range(0, n, size)]


def _is_single(data: Any) -> bool:
    """A single batch: a pair whose first entry is not itself a batch (tuple)."""
    return isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], tuple)


def _checksum(batch: Batch) -> Tensor:
    """``[Σ of every tensor of the batch (float64), n]`` on the CPU: equal batches, equal checksums."""
    total = sum((float(t.detach().to(torch.float64).sum()) for t in tree_leaves(batch[:2])), 0.0)
    return torch.tensor([total, float(batch[2])], dtype=torch.float64)


class BatchSource:
    """The data of an operator: ``(inputs, targets, n)`` chunks on the model's device, and ``N = Σ n``.

    Iterating yields the chunks (for :attr:`streamed` data: one pass over the data, checked
    against the first). :attr:`sizes` lists every chunk's ``n``; :attr:`n_passes` counts the
    passes over streamed data (the construction's included); :attr:`inspected` is
    ``all(inspect(chunk))`` over the chunks (``inspect`` is called once per chunk at construction).
    """

    def __init__(self, data: Any, device: torch.device, dtype: torch.dtype, batch_fn: BatchFn | None = None,
                 chunk_size: int | None = None, materialize: bool | None = None,
                 inspect: Callable[[Batch], bool] | None = None) -> None:
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
        self.device, self.dtype = device, dtype
        self.batch_fn = batch_fn or default_batch_fn
        self.chunk_size = chunk_size
        self.n_passes = 0
        if _is_single(data):
            data, materialize = [data], True
        elif isinstance(data, (list, tuple)):
            materialize = True if materialize is None else materialize
        elif not isinstance(data, Iterable):
            raise ValueError(f"data must be a pair (inputs, targets), a sequence of batches or an iterable of "
                             f"batches, got {type(data).__name__}")
        elif isinstance(data, Iterator) and not materialize:
            raise ValueError("data is a one-shot iterator (it cannot be read once per product): pass a list, "
                             "a re-iterable such as a DataLoader, or materialize=True")
        self.streamed = not materialize
        self.data = data
        self.chunks: list[Batch] | None = None
        self.inspected = True
        self._first: Batch | None = None
        self._reference: Tensor | None = None
        if self.streamed:
            self._stream_once(inspect)
        else:
            self.chunks = [to_device(c, device, dtype) for raw in data
                           for c in split(_checked(self.batch_fn(raw)), chunk_size)]
            self.sizes = [c[2] for c in self.chunks]
            self.inspected = inspect is None or all(inspect(c) for c in self.chunks)
        if not self.sizes:
            raise ValueError("data: no batches")
        self.n_samples = sum(self.sizes)

    def _stream_once(self, inspect: Callable[[Batch], bool] | None) -> None:
        """The construction's pass: sizes, checksums, the first chunk, ``inspect`` on every chunk."""
        sums, self.sizes = [], []
        for raw in self._raw():
            sums.append(_checksum(raw))
            for c in split(raw, self.chunk_size):
                self.sizes.append(c[2])
                if self._first is None or inspect is not None:
                    c = to_device(c, self.device, self.dtype)
                    self._first = c if self._first is None else self._first
                    self.inspected = self.inspected and (inspect is None or inspect(c))
        self._reference = torch.stack(sums) if sums else None

    def _raw(self) -> Iterator[Batch]:
        self.n_passes += 1
        for raw in self.data:
            yield _checked(self.batch_fn(raw))

    def __iter__(self) -> Iterator[Batch]:
        if self.chunks is not None:
            yield from self.chunks
            return
        sums = []
        for raw in self._raw():
            sums.append(_checksum(raw))
            for c in split(raw, self.chunk_size):
                yield to_device(c, self.device, self.dtype)
        self._check_pass(sums)

    def _check_pass(self, sums: list[Tensor]) -> None:
        """One-line ``ValueError`` if this pass's batches differ from the first pass's."""
        ref, now = self._reference, (torch.stack(sums) if sums else None)
        if not (now is not None and ref is not None and now.shape == ref.shape
                and bool(torch.allclose(now, ref, rtol=1e-9, atol=0.0))):
            raise ValueError(
                "data: a pass over the streamed data gave other batches than the first (shuffle=True, random "
                "augmentation or drop_last with shuffling?); use a deterministic loader or materialize=True"
            )

    def first(self) -> Batch:
        """The first chunk (kept from the construction's pass for streamed data until :meth:`forget_first`)."""
        if self.chunks is not None:
            return self.chunks[0]
        assert self._first is not None
        return self._first

    def forget_first(self) -> None:
        """Drop the first chunk kept from the construction's pass (streamed data keeps nothing else)."""
        self._first = None
