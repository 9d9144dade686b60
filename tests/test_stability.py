"""The measured stability limit of a grid of runs."""

import math

import pytest

from instab_lib.experiments import stability


def test_bracket_and_estimate():
    lim = stability.stability_limit([0.01, 0.02, 0.05, 0.1], [40.0, 55.0, 45.0, 44.0])
    # 0.01·40 = 0.4, 0.02·55 = 1.1 < 2; 0.05·45 = 2.25 ≥ 2: unstable from 0.05
    assert lim.largest_stable == 0.02 and lim.smallest_unstable == 0.05 and lim.consistent
    assert lim.estimate == pytest.approx(math.sqrt(0.02 * 0.05))


def test_divergence_and_seeds_count_as_unstable():
    lim = stability.stability_limit([0.01, 0.01, 0.02], [10.0, 250.0, float("nan")], [False, False, True])
    assert lim.smallest_unstable == 0.01 and lim.largest_stable is None and lim.estimate == 0.01


def test_inconsistent_grid_is_flagged():
    lim = stability.stability_limit([0.1, 0.2, 0.4], [30.0, 5.0, 1.0])  # 0.1 unstable, 0.2 and 0.4 stable
    assert lim.smallest_unstable == 0.1 and not lim.consistent


def test_bad_input():
    with pytest.raises(ValueError):
        stability.stability_limit([], [])
    with pytest.raises(ValueError):
        stability.stability_limit([0.1], [1.0, 2.0])
    with pytest.raises(ValueError):
        stability.is_unstable(-0.1, 10.0)
