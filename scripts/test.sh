#!/usr/bin/env bash
# The tests of `make test` (after scripts/setup.sh), in two pytest runs, and both always run:
#   1. the unit tests (no notebook, no book): pytest-xdist, one worker per core (one torch thread each,
#      tests/conftest.py); 2-3 min on 2 cores against 4-5 min in one process (2026-12-04);
#   2. the notebooks and the book (markers `notebooks` and `book`) in one process, in collection order: every
#      notebook executed at its CI scale with its claims checked, the book built with Sphinx warnings as
#      errors and read in headless Chromium. Its run pools already keep every core busy.
# Extra arguments go to both pytest runs. The exit status is the first failing run's.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
py=.venv/bin/python
"$py" -m pytest -m "not notebooks and not book" -n auto "$@"
unit=$?
"$py" -m pytest -m "notebooks or book" "$@"
book=$?
if [ "$unit" -ne 0 ]; then
  echo "[test] the unit tests failed (exit $unit): see the first pytest run above" >&2
  exit "$unit"
fi
exit "$book"
