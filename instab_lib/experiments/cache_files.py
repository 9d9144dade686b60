"""The files of the caches: written atomically, read back whole or reported as damaged.

Three caches keep results between sessions: the run cache (:mod:`instab_lib.experiments.train`),
the execution cache of the notebooks (:mod:`instab_lib.book.notebooks`) and the paper-scale archive
(:mod:`instab_lib.book.archive`). Our own writes are atomic (:func:`atomic_write_bytes`: a
temporary file, then ``os.replace``), so a file that cannot be read was damaged from outside: a
broken disk, a partial copy, a restored CI cache. Such an entry is treated as missing: the reader
raises :class:`Damaged` (which file, and why), the cache says so in one warning line
(:func:`warn_damaged`) and recomputes the entry (the archive, which is never recomputed by
itself, names it in ``instab verify``).

"Cannot be read" covers what a parser notices (a truncated zip, invalid JSON or UTF-8, a missing
key) and what it does not: a file's bytes are checked against the SHA-256 digest recorded when it
was written (:func:`check_digest`), because ``torch.load`` reads a garbled tensor without
complaint. A file written before its reader needs it (a training checkpoint) carries its digest
in its first line (:func:`write_sealed` / :func:`read_sealed`).

Inside a notebook executed by the book's runner the warning would land on the page, for readers
and cached with the page; there the runner sets :data:`CACHE_LOG_ENV` to a file, the line is
appended to it instead, and the runner prints it on its own stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

__all__ = ["Damaged", "CacheDamagedWarning", "CACHE_LOG_ENV", "atomic_write_bytes", "file_digest",
           "check_digest", "read_json", "write_sealed", "read_sealed", "warn_damaged", "entry_lock"]

#: When set (by the notebook runner), damage notices are appended to this file instead of warned.
CACHE_LOG_ENV = "INSTAB_CACHE_LOG"
_SEAL = b"instab-sealed sha256 "


class Damaged(Exception):
    """A cache file that cannot be read: ``path`` and ``reason`` (one line)."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())[:200]
        super().__init__(f"{self.path}: {self.reason}")


class CacheDamagedWarning(UserWarning):
    """A cache entry could not be read and is recomputed (or, for the archive, reported)."""


def warn_damaged(damage: Damaged, action: str, stacklevel: int = 2) -> None:
    """One line: ``damaged cache file <path> (<reason>): <action>``, as a
    :class:`CacheDamagedWarning`, or appended to the file named by :data:`CACHE_LOG_ENV`."""
    line = f"damaged cache file {damage.path} ({damage.reason}): {action}"
    log = os.environ.get(CACHE_LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        return
    warnings.warn(line, CacheDamagedWarning, stacklevel=stacklevel + 1)


def atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> str:
    """Write ``path`` through ``write(file)`` into a temporary file beside it, flush it to disk and
    move it into place (``os.replace``); returns the SHA-256 hex digest of what was written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    digest = file_digest(tmp)
    os.replace(tmp, path)
    return digest


def file_digest(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_digest(path: Path, expected: str | None) -> None:
    """Raise :class:`Damaged` unless ``path`` exists and (when ``expected`` is given) its bytes
    have that SHA-256 digest."""
    if not path.is_file():
        raise Damaged(path, "missing")
    if expected is not None and file_digest(path) != expected:
        raise Damaged(path, "its bytes differ from the digest recorded when it was written")


def read_json(path: Path, required: Iterable[str] = ()) -> dict[str, Any]:
    """A JSON object read from ``path`` that has the keys ``required``; :class:`Damaged` otherwise."""
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise Damaged(path, "missing") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise Damaged(path, f"{type(exc).__name__}: {exc}") from None
    if not isinstance(value, dict):
        raise Damaged(path, f"a JSON {type(value).__name__}, not an object")
    missing = [k for k in required if k not in value]
    if missing:
        raise Damaged(path, f"no {', '.join(missing)}")
    return value


def write_sealed(path: Path, payload: bytes) -> None:
    """Write ``payload`` atomically after a first line holding its SHA-256 digest."""
    head = _SEAL + hashlib.sha256(payload).hexdigest().encode() + b"\n"
    atomic_write_bytes(path, lambda f: (f.write(head), f.write(payload)))


def read_sealed(path: Path) -> bytes:
    """The payload of a file written by :func:`write_sealed`; :class:`Damaged` when it is missing,
    has no seal, or its bytes differ from the sealed digest."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise Damaged(path, "missing") from None
    head, sep, payload = data.partition(b"\n")
    if not sep or not head.startswith(_SEAL):
        raise Damaged(path, "no digest line (truncated, emptied or overwritten)")
    if hashlib.sha256(payload).hexdigest().encode() != head[len(_SEAL):]:
        raise Damaged(path, "its bytes differ from the digest sealed in it")
    return payload


@contextmanager
def entry_lock(entry: Path | None) -> Iterator[None]:
    """An exclusive lock on ``<entry>.lock`` beside a cache entry (advisory, ``fcntl.flock``; none
    for ``None``): two processes asking for the same entry, one computes, the other reads it back."""
    if entry is None:
        yield
        return
    import fcntl

    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.parent / f"{entry.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
