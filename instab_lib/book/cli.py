"""``instab``: list, run, verify and archive the companion's notebooks, and build the book.

Every failure a user can cause (unknown notebook or preset, an undeclared
parameter, a parameter the notebook rejects, a failing claim) exits non-zero
with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import notebooks as nbs
from .claims import ClaimTable
from .verdicts import SCORED_KINDS, kind_counts

#: Labels whose numbers ``verify`` and ``expectations`` read from the archive (``results/<label>/``) unless
#: ``--executed`` is given: the GPU-sized ``paper`` runs and the CPU-sized ``cpu`` runs.
ARCHIVED_LABELS = ("paper", "cpu")


def _cmd_list(args: argparse.Namespace) -> int:
    rows = [("notebook", "reproduces", "data", "presets", "title")]
    for nid in nbs.notebook_ids():
        card = nbs.load_card(nid)
        rows.append((nid, str(card.get("figure", "")), str(card.get("data", "")).split()[0],
                     ", ".join(card["presets"]), str(card.get("title", ""))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    overrides = {name: nbs.parse_value(value) for name, value in args.param or []}
    record = nbs.execute(args.notebook, preset=args.preset, overrides=overrides, force=args.force,
                         log_output=args.log_output)
    state = "up to date, not rerun" if record.skipped else f"executed in {record.seconds:.1f} s"
    print(f"{record.notebook_id} [{record.label}]: {state}\n  notebook: {record.notebook_path}\n"
          f"  numbers:  {record.numbers_path}")
    table = ClaimTable(nbs.verify([args.notebook], label=record.label))
    print(table)
    return 0 if table.all_passed else 1


def _cmd_verify(args: argparse.Namespace) -> int:
    for nid in args.notebooks:
        nbs.load_card(nid)  # unknown ids fail with a one-line reason
    if args.perturb:
        from . import perturb

        try:
            if args.refresh:
                if args.only or args.force:
                    raise ValueError("--refresh re-executes the named notebooks in every column: no --only or --force")
                _, perts, n_failing = perturb.refresh(args.notebooks)
            else:
                _, perts, n_failing = perturb.run(args.notebooks or None, force=args.force, only=args.only)
        except ValueError as exc:
            raise nbs.NotebookError(str(exc)) from None
        if n_failing:
            print(f"{n_failing} check(s) fail or lack numbers under some perturbation", file=sys.stderr)
            return 1
        print(f"every check passes under {', '.join(p.name for p in perts)} (outcome flips of scored claims: "
              "see results/robustness.json and the Robustness page)")
        return 0
    if args.label in ARCHIVED_LABELS and not args.executed:
        return _verify_archive(args.notebooks, args.label)
    table = ClaimTable(nbs.verify(args.notebooks or None, label=args.label))
    print(table)
    return _summarise(table, f"label {args.label}")


def _summarise(table: ClaimTable, what: str) -> int:
    """Print the counts (paper claims per verdict, our readings and own claims apart, checks) and
    return the exit status: 1 only on a failing check or missing numbers."""
    counts = kind_counts(table.results)
    parts = [f"{kind}: " + ", ".join(f"{n} {w}" for w, n in words.items()) for kind, words in counts.items()
             if kind in SCORED_KINDS]
    checks = [r for r in table.results if not r.scored]
    n_thin = sum(r.thin for r in table.results if r.ok and r.scored and r.outcome == "holds")
    summary = (f"{what}: {'; '.join(parts) or 'no scored claim'}; checks: {sum(r.ok for r in checks)} of "
               f"{len(checks)} pass; {n_thin} scored claim(s) hold with a thin margin < 2σ")
    failed = table.failed
    if failed:
        print(f"{len(failed)} check(s) failed or lack numbers: {', '.join(r.key for r in failed)}; {summary}",
              file=sys.stderr)
        return 1
    print(summary)
    return 0


def _verify_archive(ids: Sequence[str], preset: str = "paper") -> int:
    """``verify --label paper`` (or ``cpu``): the claims on the numbers archived in ``results/<preset>/``, no
    recomputing."""
    from . import archive

    results, missing = archive.verify(ids or None, preset)
    table = ClaimTable(results)
    if results:
        print(table)
    for nid in sorted({r.notebook for r in results}):
        entry, damage = archive.inspect(nid, preset)
        if damage is not None:
            print(f"instab: {nid}: damaged archive entry {damage.path} ({damage.reason}): re-create it with "
                  f"`instab archive {nid} --preset {preset}`", file=sys.stderr)
        elif entry is not None:
            state = "STALE: " + "; ".join(entry.stale_reasons()) if entry.stale else "current"
            print(f"{nid}: archived {entry.created} from commit {entry.commit[:12]} ({state})")
    reasons = archive.pending_reasons(preset)
    for nid in missing:
        print(f"{nid}: no archived {preset} run ({archive.missing_reason(nid, preset, reasons)})")
    n_entries = len({r.notebook for r in results}) - (len(missing) if ids else 0)
    return _summarise(table, f"{n_entries} archived {preset}-preset run(s) checked, {len(missing)} missing")


def _cmd_archive(args: argparse.Namespace) -> int:
    from . import archive

    ids = nbs.toc_notebooks() if args.all else args.notebooks
    if not ids:
        raise nbs.NotebookError("name the notebooks to archive, or pass --all")
    for nid in ids:
        nbs.load_card(nid)  # unknown ids fail before anything runs
    if args.dry_run:
        return _dry_run(ids, args)
    status, runnable = 0, []
    for nid in ids:  # bad input (--device cuda without CUDA, say) fails before the first notebook runs
        try:
            archive.checked_overrides(nid, preset=args.preset, device=args.device, workers=args.workers)
        except nbs.NotebookError as exc:
            if not args.keep_going:
                raise
            print(f"instab: {str(exc).splitlines()[0]}", file=sys.stderr)
            status = 1
        else:
            runnable.append(nid)
    for nid in runnable:
        try:
            entry, notes = archive.create(nid, preset=args.preset, device=args.device, force=args.force,
                                          allow_dirty=args.allow_dirty, workers=args.workers)
        except nbs.NotebookError as exc:
            if not args.keep_going:
                raise
            print(f"instab: {str(exc).splitlines()[0]}", file=sys.stderr)
            status = 1
            continue
        for note in notes:
            print(f"note: {note}")
        table = ClaimTable(entry.results())
        print(f"{nid}: archived in {entry.path} ({len(entry.figures)} figures, "
              f"{float(entry.stamp.get('seconds', 0)):.0f} s)\n{table}")
        status = status or (0 if table.all_passed else 1)
    return status


def _dry_run(ids: Sequence[str], args: argparse.Namespace) -> int:
    """``archive --dry-run``: each notebook at the preset updated by its card's ``dry_run:`` block, archived in a
    temporary folder and checked there (:func:`instab_lib.book.archive.dry_run`); one line each."""
    from . import archive

    for nid in ids:  # a card without a dry_run block (or a bad value) fails before the first notebook runs
        archive.dry_run_overrides(nid, preset=args.preset, device=args.device, workers=args.workers)
    status = 0
    for nid in ids:
        report = archive.dry_run(nid, preset=args.preset, device=args.device, workers=args.workers)
        for note in report.notes:
            print(f"note: {note}")
        print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
        status = status or (0 if report.ok else 1)
    return status


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a number of processes ≥ 0 (0: one per core), got {text!r}")
    return n


def _cmd_expectations(args: argparse.Namespace) -> int:
    """Print the computed verdicts of every scored claim of a label as YAML (``{label: {notebook:
    {claim: verdict}}}``), for a deliberate update of the tests' expectation file."""
    import yaml

    if args.label in ARCHIVED_LABELS and not args.executed:
        from . import archive

        results, _ = archive.verify(args.notebooks or None, args.label)
    else:
        results = nbs.verify(args.notebooks or None, label=args.label)
    failed = [r for r in results if r.error is not None]
    if failed:
        raise nbs.NotebookError(f"no verdict for {', '.join(r.key for r in failed)} (missing numbers or a broken "
                                "expression): run the notebooks first")
    out: dict[str, dict[str, str]] = {}
    for r in results:
        if r.scored:
            out.setdefault(r.notebook, {})[r.claim_id] = r.verdict
    print(yaml.safe_dump({args.label: out}, sort_keys=False, allow_unicode=True, width=120), end="")
    return 0


def _jobs(text: str) -> int:
    try:
        return nbs.parse_jobs(text, "--jobs")
    except nbs.NotebookError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_book(args: argparse.Namespace) -> int:
    from . import build

    html = build.build(strict=not args.no_strict, execute=not args.no_execute, jobs=args.jobs)
    print(f"book built: {html / 'index.html'}")
    return 0


def _cmd_sync(args: argparse.Namespace) -> int:
    nbs.sync_pairs()
    print(f"wrote {len(nbs.notebook_ids())} paired .ipynb files in {nbs.notebooks_dir()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="instab", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every notebook, the figure it reproduces and its presets").set_defaults(func=_cmd_list)
    r = sub.add_parser("run", help="execute one notebook with papermill and check its claims")
    r.add_argument("notebook")
    r.add_argument("--preset", default="default", help="a preset of the notebook's card (default: default)")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="override one parameter (value parsed as YAML, like papermill -p)")
    r.add_argument("--force", action="store_true", help="execute even if an identical run exists")
    r.add_argument("--log-output", action="store_true", help="stream the notebook's output to the terminal")
    r.set_defaults(func=_cmd_run)
    v = sub.add_parser("verify", help="check the claims on the numbers of executed notebooks")
    v.add_argument("notebooks", nargs="*")
    v.add_argument("--label", default="default",
                   help="which run: a preset name or custom-<hash>; `paper` and `cpu` check the archived "
                        "numbers in results/paper/ and results/cpu/ (no recomputing)")
    v.add_argument("--executed", action="store_true",
                   help="with --label paper or cpu: check _build/executed/<label>/ (your own runs) instead of the "
                        "archive")
    v.add_argument("--perturb", action="store_true",
                   help="re-execute every notebook under other CPU kernels and shifted seeds and print "
                        "claim × perturbation (writes results/robustness.json; hours, not part of CI)")
    v.add_argument("--only", nargs="+", metavar="NAME", help="with --perturb: only these perturbations")
    v.add_argument("--force", action="store_true", help="with --perturb: re-execute even if up to date")
    v.add_argument("--refresh", action="store_true",
                   help="with --perturb: re-execute only the named notebooks in every column of the committed "
                        "table (after a change that leaves the training runs as they were) and rewrite it")
    v.set_defaults(func=_cmd_verify)
    b = sub.add_parser("book", help="execute the notebooks of the table of contents and build _build/html")
    b.add_argument("--no-strict", action="store_true", help="do not fail on Sphinx warnings")
    b.add_argument("--no-execute", action="store_true",
                   help="build from the notebooks already executed in _build/executed/default")
    b.add_argument("--jobs", type=_jobs, default=None,
                   help=f"notebooks executed at once (default: ${nbs.JOBS_ENV}, else {nbs.DEFAULT_JOBS}; "
                        "each one's runs use every core)")
    b.set_defaults(func=_cmd_book)
    a = sub.add_parser("archive", help="run notebooks at a preset and archive numbers, stamp and figures "
                                       "in results/<preset>/<id>/")
    a.add_argument("notebooks", nargs="*")
    a.add_argument("--all", action="store_true", help="every notebook of the table of contents")
    a.add_argument("--preset", default="paper", help="the preset to run (default: paper)")
    a.add_argument("--device", help="value of the `device` parameter, for notebooks that declare one (e.g. cuda)")
    a.add_argument("--workers", type=_workers,
                   help="value of the `workers` parameter (processes for the runs, 0: one per core), for notebooks "
                        "that declare one")
    a.add_argument("--dry-run", action="store_true",
                   help="run the preset updated by the card's `dry_run:` block (a tiny grid) into a temporary folder, "
                        "never results/, and check that entry as `instab verify` does")
    a.add_argument("--force", action="store_true", help="execute even if an identical run exists")
    a.add_argument("--allow-dirty", action="store_true", help="archive from a tree with uncommitted changes")
    a.add_argument("--keep-going", action="store_true", help="go on with the next notebook when one fails")
    a.set_defaults(func=_cmd_archive)
    e = sub.add_parser("expectations", help="print the computed verdicts of the scored claims of a label as YAML "
                                            "(to update tests/expectations.yml on purpose)")
    e.add_argument("notebooks", nargs="*")
    e.add_argument("--label", default="default",
                   help="a run label; `paper` and `cpu` read the archive (results/paper/, results/cpu/)")
    e.add_argument("--executed", action="store_true", help="with --label paper or cpu: _build/executed/<label>/ instead")
    e.set_defaults(func=_cmd_expectations)
    sub.add_parser("sync", help="write the paired .ipynb of every notebook").set_defaults(func=_cmd_sync)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except nbs.NotebookError as exc:
        print(f"instab: {str(exc).splitlines()[0]}", file=sys.stderr)
        rest = str(exc).splitlines()[1:]
        if rest:
            print("\n".join(rest), file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
