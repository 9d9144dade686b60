"""The paper-scale archive: the numbers, stamp and figures of each notebook's ``paper`` run,
committed under ``results/paper/<id>/`` so the book can show the paper's scale without
recomputing it.

An entry holds ``numbers.json`` (what the run recorded), ``stamp.json`` (what produced it:
commit, fingerprints, parameters, device, CPU capability, wall time, date; see
:func:`instab_lib.book.notebooks.make_stamp`) and ``fig-01.png``, ``fig-02.png``, … (the PNG
outputs of the executed notebook, in order), with ``captions.json``: the caption under each
figure (:func:`figure_captions`), so the page can show the archived figures captioned. :func:`create` (``instab archive <id> --preset
paper``) executes the notebook at the preset and writes the entry; :func:`verify` (``instab
verify --label paper``) checks the card's claims on the archived numbers. An entry is *stale*
when the library's fingerprint or the notebook's source or card differ from the code now
(:meth:`Entry.stale_reasons`); the book shows it with the date and commit it came from.

``results/paper/pending.yml`` says, for notebooks without an entry, why (e.g. the preset
needs a GPU); the book lists every missing entry with that reason, or "not run yet".

An entry that cannot be read (``stamp.json`` or ``numbers.json`` missing, truncated, emptied
or garbled: invalid JSON, or numbers that differ from the digest the stamp recorded; a figure
that is not a whole PNG) is treated as missing: :func:`load` says so in one warning line,
:func:`status` gives it as the reason, and :func:`verify` (``instab verify --label paper``)
fails on it. The archive is not recomputed by itself: ``instab archive <id> --preset paper``
writes the entry again.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import shutil
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..experiments import repo_root
from ..experiments.cache_files import Damaged, check_digest, read_json, warn_damaged
from . import claims as claims_mod
from . import notebooks as nbs
from . import provenance

__all__ = ["Entry", "archive_root", "load", "inspect", "has_preset", "missing_reason", "checked_overrides", "create", "verify",
           "pending_reasons", "status", "extract_figures", "figure_captions", "DRY_RUN", "dry_run_overrides", "DryRun", "dry_run"]

NOT_RUN = "not run yet"


def archive_root(preset: str = "paper") -> Path:
    """``results/<preset>/`` (``results/paper/`` for the paper presets)."""
    return repo_root() / "results" / preset


#: The error of a claim whose expression names a number the numbers do not hold.
_MISSING_NUMBER = re.compile(r"NameError: name '(\w+)' is not defined")


@dataclass(frozen=True)
class Entry:
    """One archived run: where it is, its stamp, its numbers and its figures."""

    notebook_id: str
    path: Path
    stamp: dict[str, Any]
    numbers: dict[str, Any]
    figures: list[Path] = field(default_factory=list)

    @property
    def captions(self) -> list[str | None]:
        """The caption under each archived figure (``captions.json``; None for each figure of an
        entry archived before captions were kept)."""
        f = self.path / "captions.json"
        kept = json.loads(f.read_text()) if f.is_file() else []
        return [kept[i] if i < len(kept) else None for i in range(len(self.figures))]

    @property
    def commit(self) -> str:
        return str(self.stamp.get("commit") or "unknown")

    @property
    def created(self) -> str:
        return str(self.stamp.get("finished", "?")).replace("T", " ")

    def stale_reasons(self) -> list[str]:
        """Why the entry no longer describes the code now (empty: current)."""
        from ..experiments import fingerprint

        out = []
        then, now = self.stamp.get("library_fingerprint"), fingerprint.library_fingerprint()
        if then != now:
            out.append(f"the library has changed since (fingerprint {then} then, {now} now)")
        digest = self.stamp.get("source_digest")
        if digest != provenance.source_digest(self.notebook_id):
            out.append("the notebook or its card has changed since")
        return out

    @property
    def stale(self) -> bool:
        return bool(self.stale_reasons())

    def results(self) -> list[claims_mod.ClaimResult]:
        """The card's claims (as they are now) evaluated on the archived numbers (their column is the
        preset's name, ``paper``), less :meth:`unarchived_claims`."""
        return self._evaluated[0]

    def unarchived_claims(self) -> list[str]:
        """Claims of the card this entry cannot decide because they were added (or now read a number)
        after it was made: the entry's notebook or card has changed since, and a claim's expressions
        name a number the entry does not hold. Left out of :meth:`results` (the paper column shows no
        verdict for them, never a pass or a failure); in a current entry a missing number stays an error."""
        return self._evaluated[1]

    @functools.cached_property
    def _evaluated(self) -> tuple[list[claims_mod.ClaimResult], list[str]]:
        """Both, evaluated once per entry (the card and the staleness are read once)."""
        card = nbs.load_card(self.notebook_id)
        column = self.path.parent.name
        claims = list(card["claims"])
        left_out: list[str] = []
        if "the notebook or its card has changed since" in self.stale_reasons():
            for r in claims_mod.evaluate_claims(claims, self.numbers, self.notebook_id):
                m = _MISSING_NUMBER.match(r.error or "")
                if m and m.group(1) not in self.numbers:
                    left_out.append(r.claim_id)
            # evaluated again without them: a precondition the entry cannot decide must not void the others
            claims = [c for c in claims if c["id"] not in left_out]
        return ([replace(r, column=column) for r in claims_mod.evaluate_claims(claims, self.numbers, self.notebook_id)],
                left_out)


def load(notebook_id: str, preset: str = "paper") -> Entry | None:
    """The archived entry of ``notebook_id``, or None when there is none or it cannot be read
    (then one warning line names the damaged file)."""
    entry, damage = inspect(notebook_id, preset)
    if damage is not None:
        _warn(notebook_id, preset, damage)
    return entry


def inspect(notebook_id: str, preset: str = "paper", root: Path | None = None,
            dry_run: bool = False) -> tuple[Entry | None, Damaged | None]:
    """``(entry, None)`` for a readable entry, ``(None, None)`` when there is none, ``(None,
    damage)`` when it cannot be read (:class:`~instab_lib.experiments.cache_files.Damaged`: which
    file and why). Warns about nothing. ``root``: the folder holding the entries (default
    :func:`archive_root`); an entry whose stamp says it is a dry run (:func:`dry_run`) is damaged
    unless ``dry_run`` is true, so one copied into ``results/`` is never taken for an archive."""
    d = (archive_root(preset) if root is None else Path(root)) / notebook_id
    if not (d / "stamp.json").exists() and not (d / "numbers.json").exists():
        return None, None
    try:
        stamp = read_json(d / "stamp.json")
        if stamp.get(DRY_RUN) and not dry_run:
            raise Damaged(d / "stamp.json", "a dry run's entry (tiny parameters), not an archived run")
        digests = stamp.get("files") if isinstance(stamp.get("files"), dict) else {}
        check_digest(d / "numbers.json", digests.get("numbers"))
        numbers = claims_mod.from_jsonable(read_json(d / "numbers.json"))
        figures = sorted(d.glob("fig-*.png"))
        for f in figures:
            _check_png(f)
    except Damaged as damage:
        return None, damage
    return Entry(notebook_id, d, stamp, numbers, figures), None


def _warn(notebook_id: str, preset: str, damage: Damaged) -> None:
    # one call site, so Python shows a given entry's warning once per process
    warn_damaged(damage, f"the archived entry is treated as missing (re-create it: instab archive {notebook_id} "
                         f"--preset {preset})", stacklevel=1)


def _damage_text(notebook_id: str, preset: str, damage: Damaged) -> str:
    return (f"damaged archive entry: {damage.path.name}: {damage.reason} (re-create it: instab archive "
            f"{notebook_id} --preset {preset})")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path: Path) -> None:
    """Raise :class:`Damaged` unless ``path`` is a whole PNG: the signature, then chunks whose
    CRC-32 match, up to ``IEND``."""
    data = path.read_bytes()
    if not data.startswith(_PNG_SIGNATURE):
        raise Damaged(path, "not a PNG (no signature)")
    pos = len(_PNG_SIGNATURE)
    while True:
        end = pos + 12 + int.from_bytes(data[pos:pos + 4], "big")
        if pos + 12 > len(data) or end > len(data):
            raise Damaged(path, "truncated PNG")
        if zlib.crc32(data[pos + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            raise Damaged(path, f"PNG chunk {data[pos + 4:pos + 8]!r} fails its CRC")
        if data[pos + 4:pos + 8] == b"IEND":
            return
        pos = end


def pending_reasons(preset: str = "paper") -> dict[str, str]:
    """``results/<preset>/pending.yml``: notebook id → why it has no entry yet."""
    f = archive_root(preset) / "pending.yml"
    return {str(k): str(v) for k, v in (yaml.safe_load(f.read_text()) or {}).items()} if f.is_file() else {}


def extract_figures(nb_path: Path, dest: Path) -> list[Path]:
    """Write every PNG output of the executed notebook to ``dest/fig-NN.png``, in order."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    out = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                f = dest / f"fig-{len(out) + 1:02d}.png"
                f.write_bytes(base64.b64decode(png))
                out.append(f)
    return out


_CAPTION = re.compile(r"^\s*\*\*Figure\s+\d+")


def figure_captions(nb: Any) -> list[str | None]:
    """One entry per PNG output of a notebook, in order: the caption right after it (the next
    text the page shows, a Markdown cell or a Markdown output, when it starts with
    ``**Figure n``), or None."""
    shown: list[str | None] = []  # None: a figure; a string: a text
    for cell in nb.cells:
        if cell.get("cell_type") == "markdown":
            shown.append(cell.get("source", ""))
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" in data:
                shown.append(None)
            elif "text/markdown" in data:
                shown.append("".join(data["text/markdown"]))
    captions: list[str | None] = []
    for i, item in enumerate(shown):
        if item is None:
            nxt = shown[i + 1] if i + 1 < len(shown) else None
            captions.append(nxt.strip() if nxt is not None and _CAPTION.match(nxt) else None)
    return captions


def checked_overrides(notebook_id: str, preset: str = "paper", device: str | None = None,
                      workers: int | None = None,
                      base: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The overrides of an archive run of ``notebook_id`` (``base``, then ``device`` and ``workers`` for a
    notebook that declares those parameters) and notes for the user, checked like every run's parameters
    (:func:`~instab_lib.book.notebooks.resolve_parameters`): an unknown preset or a bad value
    (``cuda`` where CUDA is not available) raises :class:`~instab_lib.book.notebooks.NotebookError`
    with a one-line reason, before a kernel starts."""
    notes: list[str] = []
    overrides: dict[str, Any] = dict(base or {})
    declared = nbs.declared_parameters(notebook_id) if device or workers is not None else {}
    if device:
        if "device" in declared:
            overrides["device"] = device
        else:
            notes.append(f"{notebook_id} declares no `device` parameter: it runs where its code puts it (CPU)")
    if workers is not None:
        if "workers" in declared:
            overrides["workers"] = workers
        else:
            notes.append(f"{notebook_id} declares no `workers` parameter: it runs its runs as its code does")
    nbs.resolve_parameters(notebook_id, preset, overrides)
    return overrides, notes


def create(notebook_id: str, preset: str = "paper", device: str | None = None, force: bool = False,
           allow_dirty: bool = False, workers: int | None = None) -> tuple[Entry, list[str]]:
    """Execute ``notebook_id`` at ``preset`` and write its entry. Returns the entry and notes
    for the user (e.g. that the notebook declares no ``device`` parameter).

    Refuses (:class:`~instab_lib.book.notebooks.NotebookError`) bad input first
    (:func:`checked_overrides`), then a tree with uncommitted changes unless ``allow_dirty``: an
    entry names the commit it came from.
    """
    from ..experiments import fingerprint

    overrides, notes = checked_overrides(notebook_id, preset, device, workers)
    if fingerprint.git_state().get("dirty") and not allow_dirty:
        raise nbs.NotebookError("the tree has uncommitted changes: commit first (an entry names the commit it "
                                "came from), or pass --allow-dirty")
    record = nbs.execute(notebook_id, preset=preset, overrides=overrides, force=force, label=preset)
    _write_entry(record, archive_root(preset))
    entry = load(notebook_id, preset)
    assert entry is not None
    return entry, notes


def _write_entry(record: nbs.RunRecord, root: Path, stamp_extra: dict[str, Any] | None = None) -> Path:
    """``root/<id>/``: the executed run's numbers, stamp (updated by ``stamp_extra``), figures and captions,
    written in a hidden folder first and renamed into place."""
    import nbformat

    _, _, stamp_path = nbs.output_paths(record.notebook_id, record.label)
    tmp = root / f".{record.notebook_id}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(record.numbers_path, tmp / "numbers.json")
    if stamp_extra:
        stamp = {**json.loads(stamp_path.read_text()), **stamp_extra}
        (tmp / "stamp.json").write_text(json.dumps(stamp, indent=1, default=str))
    else:
        shutil.copy2(stamp_path, tmp / "stamp.json")
    extract_figures(record.notebook_path, tmp)
    captions = figure_captions(nbformat.read(record.notebook_path, as_version=4))
    (tmp / "captions.json").write_text(json.dumps(captions, indent=1, ensure_ascii=False))
    dest = root / record.notebook_id
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


# --------------------------------------------------------------------------- dry runs
#: The card's block of parameter overrides for a dry run, and the stamp field that marks a dry run's entry.
DRY_RUN = "dry_run"


def dry_run_overrides(notebook_id: str, preset: str = "paper", device: str | None = None,
                      workers: int | None = None) -> tuple[dict[str, Any], list[str]]:
    """The overrides of a dry run of ``notebook_id`` at ``preset``: the card's ``dry_run:`` block (a tiny
    grid), then ``device`` and ``workers`` as :func:`checked_overrides` adds them, the merged parameters
    checked by the card's specs and constraints. A card without a ``dry_run:`` block, or a block the
    specs refuse, raises :class:`~instab_lib.book.notebooks.NotebookError` in one line, before compute."""
    card = nbs.load_card(notebook_id)
    block = card.get(DRY_RUN)
    if not block:
        raise nbs.NotebookError(f"{notebook_id}: its card declares no `{DRY_RUN}:` block (parameter overrides for a "
                                "tiny run of the preset): nothing to dry-run")
    if not isinstance(block, dict):
        raise nbs.NotebookError(f"{notebook_id}.yaml: `{DRY_RUN}:` must map parameter names to values, got "
                                f"{type(block).__name__}")
    try:
        return checked_overrides(notebook_id, preset, device, workers, base=block)
    except nbs.NotebookError as exc:
        raise nbs.NotebookError(f"dry run of {notebook_id} at {preset} (the preset updated by the card's "
                                f"`{DRY_RUN}:` block): {str(exc).splitlines()[0]}") from None


@dataclass(frozen=True)
class DryRun:
    """What :func:`dry_run` did: the overrides, where the entry went, what the checks found."""

    notebook_id: str
    preset: str
    overrides: dict[str, Any]
    path: Path
    seconds: float
    entry: Entry | None
    problems: list[str]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line: passed or failed, the time, where the entry is and what was checked."""
        p = {**self.overrides, **(self.entry.stamp.get("resolved_parameters") or {} if self.entry else {})}
        what = (f"{self.notebook_id}: dry run of the {self.preset} preset {'passed' if self.ok else 'FAILED'} in "
                f"{self.seconds:.0f} s (the card's {DRY_RUN} block; device {p.get('device', 'as declared')}, "
                f"workers {p.get('workers', 'as declared')}); entry in {self.path}")
        if self.entry is not None:
            n = len(self.entry.results())
            what += (f": stamp, {len(self.entry.numbers)} numbers and {len(self.entry.figures)} figures readable, "
                     f"{n} claim(s) evaluated")
        return what + ("; " + "; ".join(self.problems) if self.problems else "") + "; nothing written in results/"


def dry_run(notebook_id: str, preset: str = "paper", device: str | None = None, workers: int | None = None,
            dest: Path | None = None) -> DryRun:
    """Execute ``notebook_id`` at ``preset`` with the card's ``dry_run:`` overrides (:func:`dry_run_overrides`),
    on fresh run caches, write its entry into ``dest/<preset>/<id>/`` (default: a new temporary folder,
    never ``results/``) with ``"dry_run": true`` in its stamp, and check it as ``instab verify`` checks an
    archived entry: the structure (stamp, numbers and their digest, whole PNGs), the stamp (status ok, the
    preset, current: no stale reason) and every claim of the card evaluated on the numbers without an error.
    The claims' verdicts at this scale mean nothing and are not checked. Raises
    :class:`~instab_lib.book.notebooks.NotebookError` before compute on bad input, and when the notebook fails."""
    import tempfile

    overrides, notes = dry_run_overrides(notebook_id, preset, device, workers)
    dest = Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix=f"instab-dry-run-{notebook_id}-"))
    results_dir = (repo_root() / "results").resolve()
    if dest.resolve() == results_dir or results_dir in dest.resolve().parents:
        raise nbs.NotebookError(f"a dry run writes no entry in {results_dir}: give another folder")
    root = dest / preset
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="instab-dry-run-runs-") as runs, \
            nbs._environ(INSTAB_RUNS=runs):  # fresh runs: the worker processes really start
        record = nbs.execute(notebook_id, preset=preset, overrides=overrides, force=True, label=f"dry-run-{preset}")
    _write_entry(record, root, {DRY_RUN: True})
    entry, damage = inspect(notebook_id, preset, root=root, dry_run=True)
    problems: list[str] = []
    if damage is not None:
        problems.append(_damage_text(notebook_id, preset, damage))
    else:
        assert entry is not None
        stamp = entry.stamp
        if stamp.get("status") != "ok" or stamp.get("preset") != preset:
            problems.append(f"stamp: status {stamp.get('status')!r}, preset {stamp.get('preset')!r}")
        problems.extend(f"stamp: {r}" for r in entry.stale_reasons())
        problems.extend(f"claim {r.claim_id}: {r.error}" for r in entry.results() if r.error is not None)
    return DryRun(notebook_id, preset, overrides, root / notebook_id, record.seconds, entry, problems, notes)


def has_preset(notebook_id: str, preset: str) -> bool:
    """Whether the card of ``notebook_id`` declares ``preset``: only such a notebook can have an entry in
    ``results/<preset>/``, so only such a notebook is *missing* when it has none."""
    return preset in nbs.load_card(notebook_id)["presets"]


def missing_reason(notebook_id: str, preset: str = "paper", reasons: Mapping[str, str] | None = None) -> str:
    """Why ``notebook_id`` has no entry in ``results/<preset>/``: its line in the preset's ``pending.yml``
    (``reasons``: :func:`pending_reasons`, read once by a caller asking for many), else :data:`NOT_RUN` for a
    card that declares the preset and "its card has no <preset> preset" for one that does not."""
    reason = (pending_reasons(preset) if reasons is None else reasons).get(notebook_id)
    return reason or (NOT_RUN if has_preset(notebook_id, preset) else f"its card has no {preset} preset")


def verify(ids: Sequence[str] | None = None, preset: str = "paper") -> tuple[list[claims_mod.ClaimResult], list[str]]:
    """The claims of the archived entries (default: every notebook of the table of contents)
    on their numbers, and the ids without an entry. An id asked for by name that has no entry
    fails (a missing number is never a pass); without names, missing entries are only listed, and
    only those of cards that declare the preset (:func:`has_preset`: ``--label cpu`` does not list
    the notebooks without a cpu preset). A damaged entry always fails, with one row naming the damaged file."""
    explicit = bool(ids)
    results: list[claims_mod.ClaimResult] = []
    missing: list[str] = []
    for nid in (list(ids) if ids else nbs.toc_notebooks()):
        entry, damage = inspect(nid, preset)
        if damage is not None:  # damaged: a failing row, whether asked for by name or not
            results.append(claims_mod.ClaimResult(nid, "-", "archived entry", None, False,
                                                  _damage_text(nid, preset, damage)))
            continue
        if entry is None:
            if not explicit and not has_preset(nid, preset):
                continue
            missing.append(nid)
            if explicit:
                results.append(claims_mod.ClaimResult(nid, "-", f"no archived {preset} run", None, False,
                                                      f"not archived ({missing_reason(nid, preset)})"))
            continue
        results.extend(entry.results())
    return results, missing


def status(preset: str = "paper") -> list[dict[str, Any]]:
    """One row per notebook of the table of contents that has an entry or declares ``preset``: its entry
    (or None), the reason it is missing, whether it is stale and why, and the page verdict on the archived numbers."""
    reasons = pending_reasons(preset)
    rows = []
    for nid in nbs.toc_notebooks():
        entry, damage = inspect(nid, preset)
        if entry is None and damage is None and not has_preset(nid, preset):
            continue  # no such preset: nothing to archive, so nothing missing
        reason = reasons.get(nid, NOT_RUN)
        if damage is not None:
            _warn(nid, preset, damage)
            reason = _damage_text(nid, preset, damage)
        row: dict[str, Any] = {"notebook": nid, "entry": entry, "reason": reason, "stale": [], "verdict": None}
        if entry is not None:
            row["stale"] = entry.stale_reasons()
            row["verdict"] = claims_mod.page_verdict(entry.results())
        rows.append(row)
    return rows
