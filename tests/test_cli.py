"""The `instab` command: listing, running with parameters, verifying, and one-line errors for bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from instab_lib.book import notebooks as nbs

ROOT = nbs.repo_root()


def instab(*args, env=None):
    return subprocess.run([sys.executable, "-m", "instab_lib.book.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=600)


def test_list_names_every_notebook_with_figure_and_presets():
    out = instab("list")
    assert out.returncode == 0
    for nid in nbs.notebook_ids():
        assert nid in out.stdout
    assert "A Fig 1" in out.stdout and "paper" in out.stdout


@pytest.mark.parametrize(
    "args, reason",
    [
        (["run", "no_such_notebook"], "unknown notebook 'no_such_notebook'"),
        (["run", "dln_rotations", "--preset", "huge"], "no preset 'huge'"),
        (["run", "dln_rotations", "-p", "learning_rate", "0.1"], "learning_rate not declared"),
        (["run", "dln_rotations", "-p", "etas", "[-0.01, 0.011]"], "etas[0] must be > 0"),
        (["run", "dln_rotations", "-p", "steps", "-5"], "steps must be ≥ 1"),
        (["run", "dln_rotations", "-p", "steps", "2.5"], "steps must be an integer"),
        (["run", "dln_rotations", "-p", "theta0", "[1.0]"], "theta0 must hold at least 2 value(s)"),
        (["run", "dln_flatness_sweep", "-p", "eta_min", "0.5"], "need eta_min < eta_max"),
        (["verify", "no_such_notebook"], "unknown notebook"),
        (["archive"], "name the notebooks to archive, or pass --all"),
        (["archive", "no_such_notebook"], "unknown notebook 'no_such_notebook'"),
        (["archive", "dln_rotations", "--preset", "huge", "--allow-dirty"], "no preset 'huge'"),
    ],
)
def test_bad_input_exits_nonzero_with_a_one_line_reason(args, reason):
    out = instab(*args)
    assert out.returncode == 2
    first = out.stderr.strip().splitlines()[0]
    assert first.startswith("instab: ") and reason in first, out.stderr


@pytest.mark.parametrize("nid", nbs.notebook_ids())
def test_every_parameter_is_specified_in_the_card_and_checked_before_a_kernel_starts(nid, monkeypatch):
    """Each declared parameter has a spec; a wrong type for any of them fails in resolve_parameters,
    i.e. before papermill is called."""
    import papermill

    card = nbs.load_card(nid)
    declared = nbs.declared_parameters(nid)
    assert set(card["parameters"]) == set(declared), "every notebook parameter needs a spec in the card"
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a kernel was started"))
    for name, spec in card["parameters"].items():
        bad = "not a number" if spec["type"] in ("int", "float", "list", "bool", "dict") else 12345
        with pytest.raises(nbs.NotebookError, match=f"{nid}: {name}"):
            nbs.execute(nid, overrides={name: bad}, progress=False)


@pytest.mark.notebooks
def test_run_with_parameters_reports_failing_claims():
    """Only stable learning rates: the figure no longer shows the effect, and the check says so."""
    out = instab("run", "dln_rotations", "-p", "etas", "[0.001, 0.0095, 0.0099]", "-p", "steps", "2000")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "custom-" in out.stdout and "FAIL" in out.stdout
    again = instab("run", "dln_rotations", "-p", "etas", "[0.001, 0.0095, 0.0099]", "-p", "steps", "2000")
    assert "up to date" in again.stdout


@pytest.mark.notebooks
def test_plain_papermill_runs_the_paired_notebook(tmp_path):
    assert instab("sync").returncode == 0
    numbers = tmp_path / "numbers.json"
    out = subprocess.run(
        [sys.executable, "-m", "papermill", "notebooks/dln_rotations.ipynb", str(tmp_path / "out.ipynb"),
         "-p", "steps", "300", "--cwd", "notebooks", "--no-progress-bar"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "INSTAB_NUMBERS": str(numbers)}, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    recorded = json.loads(numbers.read_text())
    assert recorded["two_over_S0"] == pytest.approx(0.009996, abs=1e-6)
    assert Path(ROOT / "notebooks" / "dln_rotations.ipynb").exists()


def test_verify_exits_zero_when_a_paper_claim_is_not_reproduced_and_expectations_print_the_verdicts():
    """`instab verify` fails only on a failing check or missing numbers: the archive holds claims that are
    not reproduced (or contradicted), and it exits 0. `instab expectations` prints the computed verdicts as the
    expectation file's YAML (for a deliberate update), and they are the ones the file expects."""
    import yaml

    from test_notebooks import expectations

    out = instab("verify", "--label", "paper")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "not reproduced" in out.stdout and "contradicted" in out.stdout and "paper: " in out.stdout
    printed = instab("expectations", "--label", "paper")
    assert printed.returncode == 0, printed.stderr
    got = yaml.safe_load(printed.stdout)["paper"]
    want = expectations("paper")
    assert set(got) == set(want)
    for nid, verdicts_ in got.items():
        for cid, word in verdicts_.items():
            allowed = want[nid][cid]
            assert word in ([allowed] if isinstance(allowed, str) else allowed), (nid, cid, word)
    bad = instab("expectations", "no_such_notebook")
    assert bad.returncode == 2 and "unknown notebook" in bad.stderr
