"""Fixtures shared by the test modules: one torch thread, a small fake Fashion-MNIST, and the
headless browser.

The fake data set (IDX files written to tmp; learnable: each class has its own pixel
pattern) lets the training, sweep and landscape tests run without installed data.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch


def pytest_configure(config):
    """Under pytest-xdist (scripts/test.sh runs the unit tests with ``-n auto``): torch threads per worker
    = cores / workers, so the workers do not oversubscribe the cores."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


@pytest.fixture
def one_thread():
    """Small models on a shared 2-core machine: one intra-op thread is far faster.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fake_fmnist(tmp_path_factory) -> str:
    """A folder holding a fake Fashion-MNIST (200 training, 60 test images)."""
    d = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(1)
    patterns = rng.integers(0, 256, (10, 28, 28))
    for split, n in (("train", 200), ("t10k", 60)):
        y = rng.integers(0, 10, n)
        x = np.clip(0.6 * patterns[y] + rng.integers(0, 100, (n, 28, 28)), 0, 255)
        _write_idx(d / f"{split}-images-idx3-ubyte.gz", x)
        _write_idx(d / f"{split}-labels-idx1-ubyte.gz", y)
    return str(d)


@pytest.fixture(scope="session")
def chromium_exe() -> str:
    """Chromium (``$INSTAB_CHROMIUM`` or on PATH), or a skip; under CI (``CI`` set), where the
    set-up installs it, a missing browser is a failure."""
    from instab_lib.book import browser

    exe = browser.find_chromium()
    if exe is None:
        message = "Chromium is not installed (Debian: apt-get install chromium; `make test` does it as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return exe


@pytest.fixture(scope="session")
def built_html():
    """The book built once per session (every notebook executed at its defaults, then Sphinx with
    ``-W --keep-going``: any warning fails), for every module that reads the built pages."""
    from instab_lib.book import build

    return build.build(progress=False)
