"""The shared experiments: one definition each, ensembles at both scales, valid configurations."""

import pytest

from instab_lib import experiments


@pytest.mark.parametrize("name", list(experiments.EXPERIMENTS))
@pytest.mark.parametrize("scale", experiments.SCALES)
def test_every_experiment_is_an_ensemble_of_valid_runs(name, scale):
    ex = experiments.get(name, scale)
    assert ex.name == name and ex.scale == scale
    assert len(ex.seeds) >= (5 if scale == "ci" else 10), "claims are decided on seed ensembles"
    configs = ex.configs()
    from instab_lib.config import config_key

    assert len({config_key(c) for c in configs}) == len(configs) and all(c.dataset == "fashion-mnist" for c in configs)
    assert {c.seed for c in configs} == set(ex.seeds)


def test_the_mechanism_ensemble_is_the_authors_setting():
    ex = experiments.get("fmnist_mechanism")
    c = ex.base
    assert (c.lr, c.epochs, c.n_train, c.model_kwargs, c.loss, c.batch_size) == (0.1, 400, 1000, {"depth": 3, "width": 32},
                                                                                  "ce", None)
    assert c.eval_every == 1 and c.k_top >= 3 and c.snapshot_epochs == tuple(range(401))


def test_flattening_gives_every_run_the_same_budget():
    exps = experiments.fmnist_flattening("ci")
    budgets = {e.base.epochs - e.base.lr_schedule["epochs"][0] for e in exps}
    assert budgets == {experiments.FMNIST_FLATTENING["budget"]}
    assert all(e.base.lr_schedule["values"] == [experiments.FMNIST_ETA_SMALL] for e in exps)


def test_unknown_names_and_scales_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown experiment"):
        experiments.get("fmnist_nothing")
    with pytest.raises(ValueError, match="unknown scale"):
        experiments.get("fmnist_limit", "huge")
