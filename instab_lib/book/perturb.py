"""The perturbation check: every notebook re-executed under other float rounding and other
seeds, each in its own run cache and label, and one table of claim × perturbation.

Perturbations (:func:`perturbations`):

* ``native`` — the build's own run (label ``default``, the default run cache);
* ``kernels-default`` — ``ATEN_CPU_CAPABILITY=default``: torch's portable CPU kernels;
* ``kernels-avx2`` — ``ATEN_CPU_CAPABILITY=avx2`` (only where the processor has AVX2 and
  torch's native choice is something else, e.g. AVX-512);
* ``seeds+1000`` — ``INSTAB_SEED_OFFSET=1000``: every seed of the library shifted
  (:mod:`instab_lib.experiments.seeding`), i.e. an independent ensemble;
* ``init-author`` — ``INSTAB_INIT=author``: the fMNIST models initialised as in the author's
  code (Flax: LeCun-normal kernels, zero biases; :mod:`instab_lib.experiments.initialisation`)
  instead of PyTorch's defaults. It moves S₀, the progressive sharpening and the stability limit,
  so it asks whether a verdict depends on the initialisation.

Each runs as a child process (the kernel variable must be set before torch is imported)
with ``INSTAB_RUNS=_build/perturb/<name>/runs`` and executed notebooks under
``_build/executed/perturb-<name>/``. :func:`run` writes ``results/robustness.json`` after every
column, which the book renders as its Robustness page (:func:`instab_lib.book.robustness.write_page`);
:func:`refresh` re-executes only changed pages in every column when the training code is unchanged.
It is a tool for developers and readers, not part of CI: it costs about four CI runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..experiments import repo_root
from ..experiments.initialisation import INIT_ENV
from . import claims as claims_mod

__all__ = ["Perturbation", "perturbations", "run", "refresh", "table_rows", "outcome_flips", "SEED_SHIFT"]

#: The seed offset of the ``seeds`` perturbation.
SEED_SHIFT = 1000


@dataclass(frozen=True)
class Perturbation:
    """A named change of the numerics environment, with the label its executions get."""

    name: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "default" if not self.env else f"perturb-{self.name}"

    def runs_dir(self) -> Path:
        return repo_root() / "_build" / "perturb" / self.name / "runs"


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def perturbations() -> list[Perturbation]:
    """``native``, ``kernels-default``, ``kernels-avx2`` (when it differs from the native
    kernels and the processor has AVX2), ``seeds+1000`` and ``init-author``."""
    from ..experiments.fingerprint import cpu_capability

    native = cpu_capability().upper()
    out = [Perturbation("native")]
    if native != "DEFAULT":
        out.append(Perturbation("kernels-default", {"ATEN_CPU_CAPABILITY": "default"}))
    if native not in ("AVX2", "DEFAULT") and "avx2" in _cpu_flags():
        out.append(Perturbation("kernels-avx2", {"ATEN_CPU_CAPABILITY": "avx2"}))
    out.append(Perturbation(f"seeds+{SEED_SHIFT}", {"INSTAB_SEED_OFFSET": str(SEED_SHIFT)}))
    out.append(Perturbation("init-author", {INIT_ENV: "author"}))
    return out


def _execute_all(p: Perturbation, ids: Sequence[str], force: bool) -> dict[str, Any]:
    """Execute ``ids`` under ``p`` in a child process; returns its timings and capability."""
    env = dict(os.environ)
    env.update(p.env)
    env.pop("INSTAB_NUMBERS", None)
    if p.env:
        env["INSTAB_RUNS"] = str(p.runs_dir())
    script = ("import json, sys, time\n"
              "from instab_lib.book import notebooks as nbs\n"
              "from instab_lib.experiments import fingerprint\n"
              "ids, label, force = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] == '1'\n"
              "out = {'cpu_capability': fingerprint.cpu_capability(), 'notebooks': {}}\n"
              "for nid in ids:\n"
              "    t = time.perf_counter()\n"
              "    try:\n"
              "        r = nbs.execute(nid, label=label, force=force, progress=False)\n"
              "        out['notebooks'][nid] = {'seconds': r.seconds, 'skipped': r.skipped, 'error': None}\n"
              "    except nbs.NotebookError as e:\n"
              "        out['notebooks'][nid] = {'seconds': time.perf_counter() - t, 'skipped': False, 'error': str(e)}\n"
              "    print(f\"  {label} {nid}: {out['notebooks'][nid]}\", file=sys.stderr, flush=True)\n"
              "print(json.dumps(out))\n")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(list(ids)), p.label, "1" if force else "0"],
                          env=env, cwd=repo_root(), stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"perturbation {p.name}: the runner exited with {proc.returncode}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    info["seconds"] = time.perf_counter() - t0
    return info


def run(ids: Sequence[str] | None = None, force: bool = False, only: Sequence[str] | None = None,
        write: bool = True) -> tuple[list[dict[str, Any]], list[Perturbation], int]:
    """Execute every notebook (``ids``, default: the table of contents) under every
    perturbation (``only``: a subset of their names), check the claims of each, print the
    table and, with ``write``, save ``results/robustness.json`` after every column (a pass
    stopped half-way leaves the columns it finished).

    Returns ``(rows, perturbations, n_failing)`` where ``n_failing`` counts the claims that fail
    in some column: a failing check (identity, illustration, precondition) or missing numbers.
    A scored claim whose outcome differs between columns is a *flip*: reported (``n_flips`` and the
    Robustness page), never a failure.
    """
    from . import notebooks as nbs

    ids = list(ids or nbs.toc_notebooks())
    perts = [p for p in perturbations() if not only or p.name in only]
    if not perts:
        raise ValueError(f"no perturbation named {list(only or [])}; known: {[p.name for p in perturbations()]}")
    t0 = time.perf_counter()
    meta: dict[str, dict[str, Any]] = {}
    results: dict[str, list[claims_mod.ClaimResult]] = {}
    table: list[dict[str, Any]] = []
    for k, p in enumerate(perts):
        print(f"[perturb] {p.name}: executing {len(ids)} notebooks ({p.env or 'native'})", file=sys.stderr, flush=True)
        meta[p.name] = _column_meta(p, _execute_all(p, ids, force))
        results[p.name] = nbs.verify(ids, label=p.label)
        table = table_rows(results, perts[:k + 1])
        if write:
            _write(table, [meta[q.name] for q in perts[:k + 1]], time.perf_counter() - t0)
    n_failing = _n_failing(table)
    _print(table, perts)
    return table, perts, n_failing


def refresh(pages: Sequence[str]) -> tuple[list[dict[str, Any]], list[Perturbation], int]:
    """Bring the committed table up to date after a change to ``pages`` (notebooks, cards, page
    analyses) that leaves the training runs as they were: re-execute only ``pages`` in every
    column of ``results/robustness.json`` (each reads its runs back from its own run cache),
    re-check every notebook's claims in every column and rewrite the table with this commit.

    Refused (``ValueError``) when there is no table, when it does not record the training code's
    fingerprint or that fingerprint has changed since (the columns' runs would be retrained: run
    :func:`run`), or when a page is unknown. Returns ``(rows, perturbations, n_failing)`` as :func:`run`."""
    from . import notebooks as nbs
    from ..experiments import fingerprint
    from .robustness import robustness_path

    path = robustness_path()
    if not path.exists():
        raise ValueError(f"no perturbation table at {path}: run `instab verify --perturb` first")
    old = json.loads(path.read_text())
    then, now = old.get("run_fingerprint"), fingerprint.run_fingerprint()
    if then != now:
        raise ValueError(f"the training code changed since the table was made (run fingerprint {then} then, {now} now): "
                         "a refresh would retrain every column; run `instab verify --perturb`")
    pages = list(pages)
    toc = list(nbs.toc_notebooks())
    unknown = sorted(set(pages) - set(toc))
    if unknown or not pages:
        raise ValueError(f"refresh needs notebooks of the book, got {unknown or 'none'}")
    known = {p.name: p for p in perturbations()}
    cols = [c for c in old["perturbations"] if c["name"] in known]
    perts = [known[c["name"]] for c in cols]
    t0 = time.perf_counter()
    results: dict[str, list[claims_mod.ClaimResult]] = {}
    for k, p in enumerate(perts):
        print(f"[perturb] {p.name}: re-executing {pages}", file=sys.stderr, flush=True)
        info = _execute_all(p, pages, True)
        col = {**cols[k], **_column_meta(p, info)}
        col["seconds"] = round(cols[k].get("seconds", 0.0) + info["seconds"], 1)
        col["notebooks"] = {**cols[k].get("notebooks", {}), **info["notebooks"]}
        col["refreshed"] = sorted(set(cols[k].get("refreshed", [])) | set(pages))  # the rest ran at an earlier commit
        cols[k] = col
        results[p.name] = nbs.verify(toc, label=p.label)
    table = table_rows(results, perts)
    _write(table, cols, old.get("seconds", 0.0) + time.perf_counter() - t0)
    _print(table, perts)
    return table, perts, _n_failing(table)


def _column_meta(p: Perturbation, info: dict[str, Any]) -> dict[str, Any]:
    from ..experiments import fingerprint

    return {"name": p.name, "env": p.env, "label": p.label, "commit": fingerprint.git_state().get("commit"),
            "processor": fingerprint.stamp_fields()["processor"], "cpu_capability": info["cpu_capability"],
            "seconds": round(info["seconds"], 1), "notebooks": info["notebooks"]}


def _n_failing(table: Sequence[dict[str, Any]]) -> int:
    return sum(1 for row in table if not all(v["ok"] for v in row["results"].values()))


def _write(table: list[dict[str, Any]], columns: list[dict[str, Any]], seconds: float) -> None:
    """``results/robustness.json``: the table, its columns and the code it was made with."""
    from ..experiments import fingerprint
    from .robustness import robustness_path

    out = {"created": time.strftime("%Y-%m-%d %H:%M"), **fingerprint.git_state(),
           "library_fingerprint": fingerprint.library_fingerprint(), "run_fingerprint": fingerprint.run_fingerprint(),
           "processor": fingerprint.stamp_fields()["processor"], "seconds": round(seconds, 1),
           "n_failing": _n_failing(table), "n_flips": len(outcome_flips(table)), "perturbations": columns,
           "claims": table}
    path = robustness_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"[perturb] wrote {path} ({', '.join(c['name'] for c in columns)})", file=sys.stderr)


def table_rows(results: dict[str, Sequence[claims_mod.ClaimResult]],
               perts: Sequence[Perturbation]) -> list[dict[str, Any]]:
    """One row per claim: its kind and, per perturbation, its outcome, verdict word, whether it is
    in order for CI (``ok``), its value and margin (the format of ``results/robustness.json``)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for p in perts:
        for r in results[p.name]:
            row = rows.setdefault((r.notebook, r.claim_id), {"notebook": r.notebook, "claim": r.claim_id,
                                                               "kind": r.kind, "results": {}})
            row["results"][p.name] = {"outcome": r.outcome, "verdict": r.verdict, "ok": r.ok,
                                      "value": r.error or r.value_str(),
                                      "margin": r.margin if r.margin is not None and r.margin == r.margin else None}
    return list(rows.values())


def outcome_flips(table: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows whose outcome differs between columns."""
    return [row for row in table if len({v["outcome"] for v in row["results"].values()}) > 1]


def _print(table: Sequence[dict[str, Any]], perts: Sequence[Perturbation]) -> None:
    names = [p.name for p in perts]
    head = ["notebook", "claim", "kind", *names]
    body = [[row["notebook"], row["claim"], row["kind"],
             *[(row["results"].get(n, {}).get("verdict", "—")) for n in names]] for row in table]
    widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("  ".join("-" * w for w in widths))
    for r in body:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
