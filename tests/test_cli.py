"""The `instab` command: listing, running with parameters, verifying, and one-line errors for bad input."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from instab_lib.book import cards
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
        # issue 21 (6): bad input before compute
        (["run", "cifar_generalization", "-p", "device", "gpu"], "device must be one of ['cpu', 'cuda', 'auto']"),
        (["run", "clipped_ada", "-p", "batch_sizes", "[64, 2000]"],
         "batch_sizes[1] must be ≤ 1000, got 2000 (a batch size above 1,000 exceeds the training subset)"),
        (["run", "clipped_ada", "-p", "c_ub", "0"], "c_ub must be > 0, got 0"),
        (["run", "clipped_ada", "-p", "adam_ub_c_values", "[0.1, -1]"], "adam_ub_c_values[1] must be > 0"),
        (["run", "cifar_author", "-p", "archs", "[vgg, vgg16]"], "archs[1] must be one of ['vgg', 'resnet20']"),
        (["run", "cifar_author", "-p", "clips", "[1.0, 0]"], "clips[1] must be > 0, got 0"),
        (["run", "cifar_author", "-p", "batch_sizes", "[64, 1024]"], "a batch size must not exceed n_train"),
        (["run", "cifar_author", "-p", "confirmation_seeds", "[0, 5]"],
         "the selection and confirmation seeds must be disjoint"),
        pytest.param(["run", "cifar_generalization", "-p", "device", "cuda"],
                     "device 'cuda' asked for, but CUDA is not available here",
                     marks=pytest.mark.skipif("__import__('torch').cuda.is_available()",
                                              reason="with CUDA the run would start")),
        pytest.param(["archive", "cifar_generalization", "--device", "cuda"],
                     "device 'cuda' asked for, but CUDA is not available here",
                     marks=pytest.mark.skipif("__import__('torch').cuda.is_available()",
                                              reason="with CUDA the archive run would start")),
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


class _KernelStarted(BaseException):
    """Raised by a stubbed papermill: the run got past every check (not an Exception, so the runner
    does not turn it into a failed run)."""


@pytest.fixture
def no_kernel(monkeypatch, tmp_path):
    """papermill.execute_notebook raises :class:`_KernelStarted`; executed notebooks go to tmp."""
    import papermill

    def started(*args, **kwargs):
        raise _KernelStarted

    monkeypatch.setattr(papermill, "execute_notebook", started)
    monkeypatch.setattr(nbs, "build_dir", lambda: tmp_path)
    return tmp_path


def _cuda(monkeypatch, available: bool, count: int = 1) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count if available else 0)


@pytest.mark.parametrize("argv", [
    ["run", "cifar_generalization", "-p", "device", "cuda"],
    ["run", "watch_your_training", "-p", "device", "cuda"],
    ["archive", "cifar_generalization", "--device", "cuda"],  # the device is checked before the dirty tree
    ["archive", "watch_your_training", "cifar_generalization", "--device", "cuda", "--allow-dirty"],
])
def test_cuda_without_a_gpu_is_refused_in_one_line_before_a_kernel_starts(argv, no_kernel, monkeypatch, capsys):
    """Issue 21 (6): `device cuda` on a machine without CUDA exits 2 with one line naming the parameter and
    the reason, and no kernel starts (nor, for `archive` of several notebooks, the first of them)."""
    from instab_lib.book import cli

    _cuda(monkeypatch, False)
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    nid = next(a for a in argv[1:] if a in nbs.notebook_ids())
    assert lines == [f"instab: {nid}: device 'cuda' asked for, but CUDA is not available here "
                     "(torch.cuda.is_available() is False); use cpu or auto (a GPU when there is one)"]
    assert not list(no_kernel.rglob("*.ipynb"))


def test_archive_keep_going_skips_a_refused_notebook_and_goes_on(no_kernel, monkeypatch, capsys):
    """With --keep-going, the notebook whose input is refused is named in one line and the next one runs."""
    from instab_lib.book import cli

    _cuda(monkeypatch, False)
    with pytest.raises(_KernelStarted):
        cli.main(["archive", "cifar_generalization", "descent_lemma", "--device", "cuda", "--allow-dirty",
                  "--keep-going"])
    assert capsys.readouterr().err.strip().splitlines() == [
        "instab: cifar_generalization: device 'cuda' asked for, but CUDA is not available here "
        "(torch.cuda.is_available() is False); use cpu or auto (a GPU when there is one)"]


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_cpu_and_auto_never_need_cuda(device, monkeypatch):
    _cuda(monkeypatch, False)
    assert nbs.resolve_parameters("cifar_generalization", overrides={"device": device}) == {"device": device}
    assert nbs.resolve_parameters("cifar_generalization", "paper")["device"] == "auto"


def test_cuda_proceeds_where_cuda_is_available(no_kernel, monkeypatch):
    """The other half: with CUDA (stubbed here) the same parameters pass every check and the kernel would start;
    a GPU index the machine lacks is refused."""
    _cuda(monkeypatch, True, count=1)
    assert nbs.resolve_parameters("cifar_generalization", overrides={"device": "cuda"}) == {"device": "cuda"}
    with pytest.raises(_KernelStarted):
        nbs.execute("cifar_generalization", overrides={"device": "cuda"}, progress=False)
    with pytest.raises(ValueError, match=re.escape("device 'cuda:1' asked for, but this machine has 1 CUDA")):
        cards.check_parameter("device", "cuda:1", {"type": "str"})


#: Parameters whose names look like a clip but are not one (no sign is wrong for them).
NOT_A_CLIP = {("flatness_theory", "c"): "the third-order coupling of the flatness model"}


@pytest.mark.parametrize("nid", nbs.notebook_ids())
def test_device_architecture_batch_size_and_clip_parameters_are_bounded_in_the_card(nid):
    """Issue 21 (6), for every card: a device parameter lists its choices; an architecture or model is one of
    its choices; a batch size has a `max` (the training subset, when that is fixed in the notebook) or a
    constraint that names it (against a subset-size parameter); a clip c is > 0."""
    card = nbs.load_card(nid)
    constraints = " ".join(c["check"] for c in card.get("constraints") or [])
    for name, spec in card["parameters"].items():
        if name == "device" or re.search(r"arch|model", name):
            assert "choices" in spec, f"{nid}: {name} needs choices"
        if "batch" in name:
            assert "max" in spec or re.search(rf"\b{name}\b", constraints), f"{nid}: {name} needs a bound"
        if re.search(r"(^|_)c($|_)|clip", name) and (nid, name) not in NOT_A_CLIP:
            assert spec.get("min") == 0 and spec.get("exclusive_min"), f"{nid}: the clip {name} must be > 0"


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
