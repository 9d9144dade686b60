"""The book's figures are made for its column, and every learning rate a page uses has one
colour and marker (instab_lib.experiments.plotting): the table covers every η of every notebook's
parameters and presets and of the shared runs; learning rates shown together are told apart."""

from __future__ import annotations

import ast
import functools
import re

import matplotlib
import numpy as np
import pytest

from instab_lib.book import cards
from instab_lib.experiments import plotting, shared_runs

matplotlib.use("Agg")

#: A parameter (or preset key) that holds learning rates: eta, etas, lr, eta0, b3_etas, dln_eta, eta_small, …
_ETA_NAME = re.compile(r"(^|_)(eta|etas|lr|eta0)(_|$)")


def _numbers(value) -> list[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _numbers(v)]
    return []


def _parameter_etas(nid: str) -> dict[str, set[float]]:
    """The learning rates of a notebook's parameter cell and of each preset, one set per figure group."""
    src = (cards.notebooks_dir() / f"{nid}.py").read_text()
    cell = re.search(r'# %% tags=\["parameters"\]\n(.*?)\n# %%', src, re.S).group(1)
    groups = {nid: set()}
    for node in ast.parse(cell).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if _ETA_NAME.search(name) and not name.startswith("n_"):
                try:
                    groups[nid] |= set(_numbers(ast.literal_eval(node.value)))
                except ValueError:
                    pass
    for preset, values in (cards.load_card(nid).get("presets") or {}).items():
        etas = {e for k, v in (values or {}).items() if _ETA_NAME.search(k) for e in _numbers(v)}
        if etas:
            groups[f"{nid}:{preset}"] = etas
    return groups


@functools.lru_cache(maxsize=1)
def _groups() -> dict[str, set[float]]:
    """Sets of learning rates that appear together in a figure (built once: every shared
    experiment's configs at both scales take seconds; callers must not mutate the sets)."""
    groups: dict[str, set[float]] = {}
    for nid in cards.notebook_ids():
        groups.update(_parameter_etas(nid))
    for name in shared_runs.EXPERIMENTS:
        for scale in shared_runs.SCALES:
            groups[f"{name}:{scale}"] = {float(c.lr) for c in shared_runs.get(name, scale).configs()}
    small, big = shared_runs.FMNIST_ETA_SMALL, shared_runs.FMNIST_ETA
    groups["ladder, mechanism, reduced"] = set(shared_runs.FMNIST_LADDER_ETAS) | {big, small}
    groups["A Fig 4"] = set(shared_runs.FMNIST_FLATTENING["eta0"]) | {small}
    for scale in shared_runs.SCALES:
        groups[f"sgd and continuation:{scale}"] = groups[f"fmnist_sgd:{scale}"] | {shared_runs.SGD_LASTING_LR}
    return {k: v for k, v in groups.items() if v}


def _lab(colour: str) -> np.ndarray:
    rgb = np.array(matplotlib.colors.to_rgb(colour))
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ lin
    f = np.cbrt(np.maximum(xyz / np.array([0.95047, 1.0, 1.08883]), 216 / 24389))
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_every_learning_rate_of_the_book_has_a_style():
    used = set().union(*_groups().values())
    assert len(used) > 30 and 0.1 in used and 0.0095 in used and 2.26 in used
    missing = sorted(e for e in used if round(e, 10) not in {round(k, 10) for k in plotting.ETA_STYLES})
    assert not missing, f"learning rates without a style in plotting.ETA_STYLES: {missing}"
    for e in used:
        assert plotting.eta_style(e) == plotting.ETA_STYLES[plotting._key(e)]


def test_styles_are_unique_and_learning_rates_shown_together_are_told_apart():
    styles = list(plotting.ETA_STYLES.values())
    assert len(set(styles)) == len(styles), "two learning rates share colour and marker"
    close = []
    for name, etas in _groups().items():
        etas = sorted(etas)
        for i, a in enumerate(etas):
            for b in etas[i + 1:]:
                dist = float(np.linalg.norm(_lab(plotting.eta_style(a).color) - _lab(plotting.eta_style(b).color)))
                if dist < 15:
                    close.append(f"{name}: η = {a:g} and {b:g} (ΔE = {dist:.1f})")
    assert not close, "\n".join(close)


def test_the_dln_keeps_the_authors_colours():
    red, orange, green, blue = (matplotlib.colors.to_hex(c) for c in plotting.DLN_RUN_COLORS)
    assert [plotting.eta_style(e).color for e in (0.001, 0.0095, 0.011, 0.013)] == [red, orange, green, blue]


def test_an_unknown_learning_rate_is_a_one_line_error():
    with pytest.raises(KeyError, match=r"η = 0.0123 has no colour yet: add it once"):
        plotting.eta_style(0.0123)
    assert plotting.eta_style(0.1 + 1e-12) == plotting.eta_style(0.1)  # float noise is the same η


def test_figures_fit_the_column():
    import matplotlib.pyplot as plt

    plotting.apply_style()
    fig, axes = plotting.figure(2, 2)
    try:
        assert fig.get_size_inches()[0] * fig.dpi == pytest.approx(650)
        assert axes.shape == (2, 2)
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="1 to 2 panels a row, got 3"):
        plotting.figure(1, 3)
    # 10-point tick labels read at about 14 px on screen at the book's dpi
    assert matplotlib.rcParams["xtick.labelsize"] * plotting.FIG_DPI / 72 >= 12
