"""Data resolver: fake IDX / ImageFolder copies in tmp, subsets, errors, real data if present."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from instab_lib.experiments import data

CIFAR_CLASSES = data.DATASETS["cifar10"]["classes"]


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def make_fake_fmnist(d: Path, n_train: int = 50, n_test: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrs = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10,
    }
    d.mkdir(parents=True, exist_ok=True)
    for stem, a in arrs.items():
        _write_idx(d / f"{stem}.gz", a)
    return arrs


def make_fake_cifar_jpeg(d: Path, per_class: int = 3) -> None:
    from PIL import Image

    for split in ("train", "test"):
        for ci, c in enumerate(CIFAR_CLASSES):
            (d / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                img = np.full((32, 32, 3), 20 * ci + i, dtype=np.uint8)
                Image.fromarray(img).save(d / split / c / f"{i:04d}.jpg", quality=100)


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No env copy, no Debian copy, no JPEG copy, no download: only what the test makes."""
    monkeypatch.delenv("INSTAB_DATA", raising=False)
    monkeypatch.setattr(data, "DEBIAN_FMNIST", tmp_path / "no-debian")
    monkeypatch.setattr(data, "repo_root", lambda: tmp_path / "repo" / "main")
    return tmp_path


def test_fake_idx_via_argument_and_env(isolated, monkeypatch):
    arrs = make_fake_fmnist(isolated / "fm")
    ds = data.load_dataset("fashion-mnist", n_train=7, n_test=4, data_dir=isolated / "fm",
                           download=False, cache_dir=isolated / "cache")
    assert ds.X_train.shape == (7, 1, 28, 28) and ds.X_train.dtype == torch.float32
    assert ds.y_train.dtype == torch.int64 and ds.y_train.tolist() == list(range(7))
    expected = (arrs["train-images-idx3-ubyte"][:7] / 255.0 - 0.2859) / 0.3530
    np.testing.assert_allclose(ds.X_train[:, 0].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert ds.y_test.tolist() == [0, 3, 6, 9]
    assert "IDX" in ds.source
    # through the environment variable, and cached (a second load reads the npz)
    monkeypatch.setenv("INSTAB_DATA", str(isolated / "fm"))
    r = data.resolve("fmnist")
    assert r.kind == "idx" and "INSTAB_DATA" in r.source
    assert len(list((isolated / "cache").glob("*.npz"))) == 1


def test_balanced_subset_and_classes(isolated):
    make_fake_fmnist(isolated / "fm", n_train=60)
    ds = data.load_dataset("fashion-mnist", n_train=20, balanced=True, data_dir=isolated / "fm",
                           cache_dir=isolated / "cache")
    assert ds.y_train.bincount().tolist() == [2] * 10
    assert ds.y_train.tolist() == [*range(10), *range(10)]  # data-set order kept
    two = data.load_dataset("fashion-mnist", n_train=8, classes=(3, 1), data_dir=isolated / "fm",
                            cache_dir=isolated / "cache")
    assert set(two.y_train.tolist()) == {0, 1} and two.classes == ("Dress", "Trouser")
    with pytest.raises(ValueError, match="multiple of 10"):
        data.load_dataset("fashion-mnist", n_train=15, balanced=True, data_dir=isolated / "fm",
                          cache_dir=isolated / "cache")
    with pytest.raises(ValueError, match="class 0 has"):
        data.load_dataset("fashion-mnist", n_train=100, balanced=True, data_dir=isolated / "fm",
                          cache_dir=isolated / "cache")
    with pytest.raises(ValueError, match="asked for 61"):
        data.load_dataset("fashion-mnist", n_train=61, data_dir=isolated / "fm", cache_dir=isolated / "cache")
    none = data.load_dataset("fashion-mnist", n_train=10, n_test=0, data_dir=isolated / "fm",
                             cache_dir=isolated / "cache")  # n_test=0: no test set, as TrainConfig documents
    assert none.X_test.shape[0] == 0 and none.y_test.shape == (0,)
    with pytest.raises(ValueError, match="non-negative"):
        data.load_dataset("fashion-mnist", n_train=-1, data_dir=isolated / "fm", cache_dir=isolated / "cache")


def test_fake_cifar_jpeg_copy_beside_repo(isolated):
    make_fake_cifar_jpeg(isolated / "repo" / "shared" / "data" / "cifar10-jpeg")
    ds = data.load_dataset("cifar10", n_train=20, n_test=10, cache_dir=isolated / "cache", download=False)
    assert ds.X_train.shape == (20, 3, 32, 32)
    assert ds.y_train.tolist() == [*range(10), *range(10)]  # interleaved class by class
    pix = ds.X_train[11, 0, 0, 0].item() * 0.247 + 0.4914  # class 1, image 1: value 21
    assert abs(pix * 255 - 21) < 2  # JPEG: nearly exact for flat images
    assert "JPEG" in ds.source
    assert ds.y_train.bincount().tolist() == [2] * 10
    bal = data.load_dataset("cifar10", n_train=30, balanced=True, cache_dir=isolated / "cache")
    assert bal.y_train.bincount().tolist() == [3] * 10


def test_missing_data_says_how_to_get_it(isolated):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.resolve("fashion-mnist")
    with pytest.raises(FileNotFoundError, match="cifar10-jpeg"):
        data.resolve("cifar10")
    with pytest.raises(FileNotFoundError, match="holds no fashion-mnist"):
        data.resolve("fashion-mnist", isolated)
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        data.load_dataset("mnist")


def test_bad_idx_file(tmp_path):
    p = tmp_path / "x.gz"
    with gzip.open(p, "wb") as f:
        f.write(b"\x00\x00\x09\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        data.read_idx(p)


@pytest.mark.skipif(not data.DEBIAN_FMNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    ds = data.load_dataset("fashion-mnist", n_train=1000, n_test=200, download=False)
    assert ds.X_train.shape == (1000, 1, 28, 28) and ds.n_test == 200
    assert ds.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]  # the file's first labels
    assert abs(ds.X_train.mean().item()) < 0.05 and abs(ds.X_train.std().item() - 1) < 0.05
    assert "Debian" in ds.source


@pytest.mark.skipif(not (data.repo_root().parent / "shared/data/cifar10-jpeg").is_dir(),
                    reason="CIFAR-10 JPEG copy not present")
def test_real_cifar_jpeg():
    ds = data.load_dataset("cifar10", n_train=5120, n_test=100, balanced=True, download=False)
    assert ds.y_train.bincount().tolist() == [512] * 10
    assert ds.X_train.shape == (5120, 3, 32, 32)
