"""The environment is described once for pip and once for conda, identically; CI runs the README's command."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(specs):
    out = {}
    for spec in specs:
        name, _, version = spec.partition("==")
        assert version, f"unpinned dependency {spec!r}"
        out[name.strip().lower()] = version.strip()
    return out


def test_pyproject_and_environment_yml_list_the_same_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_side = _pins(project["dependencies"] + sum(project["optional-dependencies"].values(), []))
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(conda_pip) == pip_side
    assert "python=3.11" in env["dependencies"] and "pip" in env["dependencies"]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(make \w+)$", quick, flags=re.M)
    assert commands == ["make book", "make test"]
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith(("#", "set ", "cd "))]
    assert ci == ["make test"]


def test_notebooks_are_paired_and_ipynb_not_committed():
    assert 'formats = "ipynb,py:percent"' in (ROOT / "notebooks" / "jupytext.toml").read_text()
    assert "notebooks/*.ipynb" in (ROOT / ".gitignore").read_text()


def test_pyproject_installs_every_package_and_the_cli():
    """Every folder of instab_lib with an ``__init__.py`` (the library, its layers, curvature) is installed,
    and the ``instab`` entry point names the book's CLI."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "instab_lib").rglob("__init__.py")}
    assert set(tool["tool"]["setuptools"]["packages"]) == found
    assert tool["project"]["scripts"]["instab"] == "instab_lib.book.cli:main"
