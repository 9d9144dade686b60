"""Data: one resolver for Fashion-MNIST and CIFAR-10, deterministic subsets, standardisation.

Where the images come from, in this order (the first that has the data set wins):

1. an explicit directory: the ``data_dir`` argument (strict: if it lacks the data set,
   that is an error), then the environment variable ``INSTAB_DATA`` (skipped if it
   lacks this data set). Accepted layouts inside it, directly or in a sub-folder named
   after the data set: the four IDX files (``.gz`` or not; also torchvision's
   ``FashionMNIST/raw``), an ImageFolder tree ``train/<class>/*.jpg`` + ``test/…``, or
   torchvision's ``cifar-10-batches-py``;
2. Fashion-MNIST: Debian's ``/usr/share/datasets/fashion-mnist`` (package
   ``dataset-fashion-mnist``), read directly with gzip + numpy;
3. CIFAR-10: the JPEG copy ``<repo>/../shared/data/cifar10-jpeg`` (ImageFolder layout,
   decoded once with PIL; pixels differ slightly from the original batches);
4. a torchvision download of the original (``download=True``; progress bar) into
   ``<repo>/_build/data-download``;
5. otherwise a ``FileNotFoundError`` that says how to get the data.

Decoded uint8 arrays are cached under ``<repo>/_build/data-cache`` (npz, atomic write),
so the JPEG decode happens once. Returned tensors: ``X`` float32 (N, C, H, W)
standardised per channel, ``X = (x/255 − mean)/std`` with REFERENCE §4.2's constants
(fMNIST mean 0.2859, std 0.3530; CIFAR-10 mean (0.4914, 0.4822, 0.4465), std
(0.247, 0.243, 0.261)), and ``y`` int64 (N,). ``Dataset.source`` says which copy was used.

Subsets (deterministic): the first ``n_train`` training images (the author's choice for
fMNIST), or with ``balanced=True`` the first ``n_train/10`` images of each class (CIFAR-5k
= 512 × 10), kept in data-set order. The test subset is always the first ``n_test`` test
images. A validation subset (``n_val``) is the **last** ``n_val`` images of the training split,
disjoint from the training subset (an error if they would overlap) and from the test split: the
author reports no validation set, so a choice made on it (Clipped-Ada's clip) never sees a test image. The ImageFolder copy has no original order: its images are interleaved class by
class (image 0 of every class, then image 1, …), so "the first n" is balanced there.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import repo_root

__all__ = ["Dataset", "load_dataset", "resolve", "DATASETS", "Resolved", "repo_root"]

DATASETS: dict[str, dict[str, Any]] = {
    "fashion-mnist": {
        "mean": (0.2859,),
        "std": (0.3530,),
        "classes": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "shape": (1, 28, 28),
    },
    "cifar10": {
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.247, 0.243, 0.261),
        "classes": ("airplane", "automobile", "bird", "cat", "deer",
                    "dog", "frog", "horse", "ship", "truck"),
        "shape": (3, 32, 32),
    },
}
_ALIASES = {"fmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "cifar-10": "cifar10", "cifar_10": "cifar10"}
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")
_IDX = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def canonical_name(name: str) -> str:
    """``"fmnist"`` → ``"fashion-mnist"`` etc.; unknown names raise ``ValueError``."""
    key = str(name).lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return key


# ------------------------------------------------------------------------ resolving
@dataclass(frozen=True)
class Resolved:
    """Where a data set was found: ``kind`` ∈ {"idx", "imagefolder", "cifar-python",
    "torchvision"}, its ``path`` and a human-readable ``source``."""

    name: str
    kind: str
    path: Path
    source: str


def _find_idx(d: Path) -> Path | None:
    for cand in (d, d / "fashion-mnist", d / "FashionMNIST" / "raw", d / "fashion-mnist" / "raw"):
        if all(_idx_file(cand, stem) is not None for stem in _IDX.values()):
            return cand
    return None


def _idx_file(d: Path, stem: str) -> Path | None:
    for p in (d / f"{stem}.gz", d / stem):
        if p.is_file():
            return p
    return None


def _find_imagefolder(d: Path) -> Path | None:
    for cand in (d, d / "cifar10-jpeg", d / "cifar10"):
        if (cand / "train").is_dir() and (cand / "test").is_dir():
            classes = DATASETS["cifar10"]["classes"]
            if all((cand / "train" / c).is_dir() for c in classes):
                return cand
    return None


def _find_cifar_python(d: Path) -> Path | None:
    for cand in (d / "cifar-10-batches-py", d / "cifar10" / "cifar-10-batches-py", d):
        if (cand / "data_batch_1").is_file() and (cand / "test_batch").is_file():
            return cand
    return None


def _find_in(d: Path, name: str) -> Resolved | None:
    if name == "fashion-mnist":
        p = _find_idx(d)
        return Resolved(name, "idx", p, f"Fashion-MNIST IDX files in {p}") if p else None
    p = _find_imagefolder(d)
    if p:
        return Resolved(name, "imagefolder", p,
                        f"CIFAR-10 JPEG copy (ImageFolder) in {p}; pixels differ slightly from the original")
    p = _find_cifar_python(d)
    return Resolved(name, "cifar-python", p, f"CIFAR-10 original python batches in {p}") if p else None


def _howto(name: str) -> str:
    if name == "fashion-mnist":
        return ("Fashion-MNIST not found. Get it with `apt-get install dataset-fashion-mnist` "
                f"(installs the IDX files into {DEBIAN_FMNIST}), or put the four IDX files "
                "(train-images-idx3-ubyte.gz, …) in a folder and set INSTAB_DATA=<folder> or pass "
                "data_dir=<folder>, or allow a torchvision download (download=True, needs internet).")
    return ("CIFAR-10 not found. Use the JPEG copy: it is expected at "
            f"{repo_root().parent / 'shared' / 'data' / 'cifar10-jpeg'} (i.e. ../shared/data/cifar10-jpeg "
            "from the repository root, ImageFolder layout train/<class>/*.jpg, test/<class>/*.jpg); or set "
            "INSTAB_DATA=<folder> (or pass data_dir=<folder>) holding that tree or torchvision's "
            "cifar-10-batches-py; or allow a torchvision download (download=True, needs internet).")


def resolve(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = False) -> Resolved:
    """Find data set ``name`` following the order of the module docstring.

    ``download=True`` tries torchvision's download (the original data, with a progress bar)
    before giving up. Raises ``ValueError`` (unknown name) or ``FileNotFoundError`` (no copy;
    the message says how to get one).
    """
    name = canonical_name(name)
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        r = _find_in(d, name) if d.is_dir() else None
        if r is None:
            raise FileNotFoundError(f"data_dir={str(d)!r} holds no {name} copy. " + _howto(name))
        return r
    env = os.environ.get("INSTAB_DATA")
    if env:
        r = _find_in(Path(env).expanduser(), name) if Path(env).expanduser().is_dir() else None
        if r is not None:
            return Resolved(r.name, r.kind, r.path, r.source + " (from INSTAB_DATA)")
    if name == "fashion-mnist":
        p = _find_idx(DEBIAN_FMNIST) if DEBIAN_FMNIST.is_dir() else None
        if p:
            return Resolved(name, "idx", p, f"Fashion-MNIST, Debian package dataset-fashion-mnist ({p})")
    else:
        jp = repo_root().parent / "shared" / "data" / "cifar10-jpeg"
        p = _find_imagefolder(jp) if jp.is_dir() else None
        if p:
            return Resolved(name, "imagefolder", p,
                            "CIFAR-10 JPEG copy (../shared/data/cifar10-jpeg, 1,000 train images per "
                            "class, full test set; pixels differ slightly from the original)")
    for cand in (_download_root(),):
        r = _find_in(cand, name) if cand.is_dir() else None
        if r is not None:
            return Resolved(r.name, r.kind, r.path, r.source.replace("in ", "downloaded by torchvision to ", 1))
    if download:
        return _download(name)
    raise FileNotFoundError(_howto(name))


def _download_root() -> Path:
    return repo_root() / "_build" / "data-download"


def _download(name: str) -> Resolved:
    import torchvision

    root = _download_root()
    root.mkdir(parents=True, exist_ok=True)
    try:
        if name == "fashion-mnist":
            torchvision.datasets.FashionMNIST(str(root), train=True, download=True)
            torchvision.datasets.FashionMNIST(str(root), train=False, download=True)
        else:
            torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    except Exception as e:  # offline machines end here
        raise FileNotFoundError(f"torchvision download of {name} failed ({e}). " + _howto(name)) from e
    r = _find_in(root, name)
    if r is None:  # pragma: no cover - torchvision changed its layout
        raise FileNotFoundError(_howto(name))
    return Resolved(name, r.kind, r.path, f"original {name}, downloaded by torchvision to {r.path}")


# ------------------------------------------------------------------------- decoding
def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a uint8 array (images (N, H, W), labels (N,))."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims}, file has {data.size} values")
    return data.reshape(dims)


def _decode_idx(p: Path) -> dict[str, np.ndarray]:
    arr = {k: read_idx(_idx_file(p, stem)) for k, stem in _IDX.items()}  # type: ignore[arg-type]
    return {"x_train": arr["train_images"][:, None], "y_train": arr["train_labels"],
            "x_test": arr["test_images"][:, None], "y_test": arr["test_labels"]}


def _interleave(per_class: list[list[Path]]) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    for i in range(max(len(c) for c in per_class)):
        for label, c in enumerate(per_class):
            if i < len(c):
                files.append(c[i])
                labels.append(label)
    return files, labels


def _decode_imagefolder(p: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    out: dict[str, np.ndarray] = {}
    classes = DATASETS["cifar10"]["classes"]
    for split in ("train", "test"):
        per_class = [sorted(f for f in (p / split / c).iterdir()
                            if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
                     for c in classes]
        files, labels = _interleave(per_class)
        xs = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
        for i, f in enumerate(files):
            with Image.open(f) as im:
                xs[i] = np.asarray(im.convert("RGB"), dtype=np.uint8)
        out[f"x_{split}"] = xs.transpose(0, 3, 1, 2).copy()
        out[f"y_{split}"] = np.asarray(labels, dtype=np.uint8)
    return out


def _decode_cifar_python(p: Path) -> dict[str, np.ndarray]:
    import pickle

    def load(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for f in files:
            with open(p / f, "rb") as fh:
                d = pickle.load(fh, encoding="latin1")
            xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(d["labels"], dtype=np.uint8))
        return np.concatenate(xs), np.concatenate(ys)

    xtr, ytr = load([f"data_batch_{i}" for i in range(1, 6)])
    xte, yte = load(["test_batch"])
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}


_DECODERS = {"idx": _decode_idx, "imagefolder": _decode_imagefolder, "cifar-python": _decode_cifar_python}


def _cache_file(r: Resolved, cache_dir: Path) -> Path:
    key = hashlib.sha256(f"{r.name}|{r.kind}|{r.path.resolve()}".encode()).hexdigest()[:12]
    return cache_dir / f"{r.name}-{r.kind}-{key}.npz"


def _save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def load_raw(r: Resolved, cache_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The full uint8 arrays ``x_train`` (N, C, H, W), ``y_train`` (N,), ``x_test``, ``y_test``
    of a resolved copy, decoded once and cached as npz (``cache_dir=False``-y: no cache)."""
    cache = Path(cache_dir) if cache_dir is not None else repo_root() / "_build" / "data-cache"
    f = _cache_file(r, cache)
    if f.is_file():
        with np.load(f) as z:
            return {k: z[k] for k in z.files}
    arrays = _DECODERS[r.kind](r.path)
    _save_npz_atomic(f, arrays)
    return arrays


# -------------------------------------------------------------------------- subsets
def subset_indices(y: np.ndarray, n: int | None, *, balanced: bool, n_classes: int = 10) -> np.ndarray:
    """Indices of the first ``n`` items, or (``balanced``) of the first ``n/n_classes`` items
    of each class in data-set order. ``n=None``: all; ``n=0``: none (e.g. no test set).
    Raises if there are too few."""
    if n is None:
        return np.arange(len(y))
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"subset size must be a non-negative integer or None, got {n!r}")
    if n == 0:
        return np.arange(0)
    if not balanced:
        if n > len(y):
            raise ValueError(f"asked for {n} images, the copy has {len(y)}")
        return np.arange(n)
    if n % n_classes:
        raise ValueError(f"balanced subset size must be a multiple of {n_classes}, got {n}")
    per = n // n_classes
    idx = []
    for c in range(n_classes):
        ic = np.flatnonzero(y == c)[:per]
        if len(ic) < per:
            raise ValueError(f"class {c} has {len(ic)} images, {per} asked for")
        idx.append(ic)
    return np.sort(np.concatenate(idx))


def standardise(x: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """uint8 (N, C, H, W) → float32 ``(x/255 − mean_c)/std_c``."""
    t = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (t - m) / s


@dataclass(frozen=True)
class Dataset:
    """A loaded subset. ``X_*``: float32 (N, C, H, W), standardised; ``y_*``: int64 (N,).
    ``source`` names the copy used (shown on book pages)."""

    name: str
    X_train: Tensor
    y_train: Tensor
    X_test: Tensor
    y_test: Tensor
    source: str
    classes: tuple[str, ...]
    X_val: Tensor | None = None  #: (n_val, C, H, W): the last n_val training images (None: no validation split)
    y_val: Tensor | None = None

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    @property
    def n_val(self) -> int:
        return 0 if self.y_val is None else len(self.y_val)


def load_dataset(
    name: str,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    n_val: int = 0,
    balanced: bool = False,
    classes: tuple[int, ...] | None = None,
    data_dir: str | os.PathLike | None = None,
    download: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """Load ``name`` ("fashion-mnist" | "cifar10") as standardised tensors.

    ``classes`` keeps only those labels (relabelled 0…k−1 in the given order, e.g. the
    2-class depth-1 control ``classes=(0, 1)``) before the subset is taken. ``n_val`` > 0 adds
    ``X_val``/``y_val``: the last ``n_val`` images of the (class-filtered) training split,
    a ``ValueError`` if any of them is among the training subset.
    ``download=None``: try a torchvision download as the last resort unless the
    environment sets ``INSTAB_NO_DOWNLOAD=1``. See the module docstring for where the data
    come from, the subsets and the normalisation.
    """
    name = canonical_name(name)
    if isinstance(n_val, bool) or not isinstance(n_val, (int, np.integer)) or n_val < 0:
        raise ValueError(f"n_val must be a non-negative integer, got {n_val!r}")
    if n_val and n_train is None:
        raise ValueError("n_val > 0 needs n_train: the validation images are the last n_val training images, "
                         "disjoint from the first n_train")
    if classes is not None:
        classes = tuple(int(c) for c in classes)
        if len(set(classes)) != len(classes) or not set(classes) <= set(range(10)) or not classes:
            raise ValueError(f"classes must be distinct labels in 0…9, got {classes}")
    if download is None:
        download = os.environ.get("INSTAB_NO_DOWNLOAD", "") not in ("1", "true", "yes")
    r = resolve(name, data_dir, download=download)
    raw = load_raw(r, cache_dir)
    spec = DATASETS[name]
    out = {}
    n_cls = 10
    cls_names = spec["classes"]
    for split, n, bal in (("train", n_train, balanced), ("test", n_test, False)):
        x, y = raw[f"x_{split}"], raw[f"y_{split}"].astype(np.int64)
        if classes is not None:
            keep = np.isin(y, classes)
            remap = {c: i for i, c in enumerate(classes)}
            x, y = x[keep], np.asarray([remap[int(v)] for v in y[keep]], dtype=np.int64)
            n_cls = len(classes)
            cls_names = tuple(spec["classes"][c] for c in classes)
        idx = subset_indices(y, n, balanced=bal, n_classes=n_cls)
        out[f"X_{split}"] = standardise(x[idx], spec["mean"], spec["std"])
        out[f"y_{split}"] = torch.from_numpy(y[idx].copy())
        if split == "train" and n_val:
            first = len(y) - n_val
            if first < 0 or first <= (int(idx.max()) if idx.size else -1):
                raise ValueError(f"a validation split of the last {n_val} training images overlaps the "
                                 f"{len(idx)} training images (the copy has {len(y)}): at most "
                                 f"{len(y) - 1 - (int(idx.max()) if idx.size else -1)} fit after them")
            out["X_val"] = standardise(np.array(x[first:]), spec["mean"], spec["std"])
            out["y_val"] = torch.from_numpy(y[first:].copy())
    return Dataset(name=name, source=r.source, classes=tuple(cls_names), **out)
