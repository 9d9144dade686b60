"""The book builds without warnings, and opens in headless Chromium with its figures and math visible."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from instab_lib import notebooks as nbs

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        message = "Chromium is not installed (Debian: apt-get install chromium; `make test` does it as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return exe


@pytest.fixture(scope="module")
def html():
    return nbs.build_book(progress=False)  # -W --keep-going: any Sphinx warning fails here


@pytest.mark.book
def test_every_page_is_built(html):
    for f in nbs.toc_files():
        assert (html / f"{f}.html").exists(), f
    claims_page = (html / "generated" / "claims.html").read_text()
    assert "dln_rotations" in claims_page and "FAIL" not in claims_page


@pytest.mark.book
def test_figure_page_renders_in_a_browser(html, tmp_path):
    page = html / "notebooks" / "dln_rotations.html"
    images = re.findall(r'src="\.\./(_images/[^"]+\.png)"', page.read_text())
    assert len(images) >= 2 and all((html / im).exists() for im in images)
    exe = _chromium()
    common = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "mjx-container" in dom, "MathJax did not typeset the page (is book/_mathjax staged?)"
    shot = nbs.build_dir() / "screenshots" / "dln_rotations.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.unlink(missing_ok=True)
    subprocess.run([*common, "--window-size=1400,7000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (7000, 1400)
    assert pixels.std() > 20, "the screenshot is blank"
