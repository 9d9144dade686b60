#!/usr/bin/env python
"""Compare the recorded numbers of two builds, notebook by notebook, for exact equality.

A refactor must change no number: execute every notebook before and after the change (each
in its own checkout, so each has its own ``_build``), then

    python scripts/compare_numbers.py BEFORE/_build/executed/default AFTER/_build/executed/default

prints, per notebook, whether every recorded number is identical (bit for bit, NaN equal to
NaN), and lists the names that differ with both values. Names that hold wall-clock times
can be skipped with ``--ignore``. Exit status 1 when anything differs or is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _load(path: Path) -> dict:
    raw = json.loads(path.read_text())

    def back(v):
        if v in ("nan", "inf", "-inf"):
            return float(v)
        if isinstance(v, list):
            return [back(x) for x in v]
        if isinstance(v, dict):
            return {k: back(x) for k, x in v.items()}
        return v

    return back(raw)


def compare(before: Path, after: Path, ignore: set[str]) -> int:
    ids = sorted({p.name.removesuffix(".numbers.json") for d in (before, after) for p in d.glob("*.numbers.json")})
    bad = 0
    for nid in ids:
        fa, fb = before / f"{nid}.numbers.json", after / f"{nid}.numbers.json"
        if not fa.exists() or not fb.exists():
            print(f"{nid}: MISSING in {'before' if not fa.exists() else 'after'}")
            bad += 1
            continue
        a, b = _load(fa), _load(fb)
        names = sorted((set(a) | set(b)) - ignore)
        diff = [n for n in names if n not in a or n not in b or not _same(a[n], b[n])]
        if diff:
            bad += 1
            print(f"{nid}: {len(diff)} of {len(names)} recorded numbers differ")
            for n in diff:
                print(f"    {n}: {str(a.get(n, '<absent>'))[:100]}  →  {str(b.get(n, '<absent>'))[:100]}")
        else:
            print(f"{nid}: all {len(names)} recorded numbers identical")
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--ignore", nargs="*", default=[], help="recorded names to skip (e.g. timings)")
    a = p.parse_args()
    return compare(a.before, a.after, set(a.ignore))


if __name__ == "__main__":
    sys.exit(main())
