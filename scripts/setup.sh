#!/usr/bin/env bash
# Set-up shared by `make book` and `make test`: Python 3.11 virtual environment (.venv),
# the library with the pinned packages of pyproject.toml's `book` and `dev` extras, the data,
# MathJax (for offline math in the book) and, with --browser, Chromium for the tests that open
# the built book.
# Idempotent: a second run only checks. It says plainly what is missing when it cannot fix it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
browser=0
[ "${1:-}" = "--browser" ] && browser=1

log() { printf '[setup] %s\n' "$*"; }
warn() { printf '[setup] WARNING: %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# 1. Python 3.11 and the virtual environment
if [ ! -x .venv/bin/python ]; then
  py="${PYTHON:-}"
  if [ -z "$py" ]; then
    for cand in python3.11 python3; do
      if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        py="$cand"; break
      fi
    done
  fi
  [ -n "$py" ] || die "Python 3.11 is required: install it, or set PYTHON=/path/to/python3.11"
  log "creating .venv with $("$py" --version)"
  "$py" -m venv .venv || die "'$py -m venv' failed (on Debian: apt-get install python3-venv)"
fi

# 2. The library and the pinned packages of the `book` and `dev` extras (the library itself declares
#    only ranges; the extras pin every direct dependency, torch included). Re-installed only when
#    pyproject.toml changes.
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat .venv/.installed 2>/dev/null || true)" != "$want" ]; then
  log "installing the pinned packages into .venv (torch is large: about 2 minutes from a local cache)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[book,dev]' || die "pip install failed: see the messages above"
  echo "$want" > .venv/.installed
fi
log "packages: $(.venv/bin/python -c 'import torch, jupyter_book, papermill; print(f"torch {torch.__version__}, jupyter-book {jupyter_book.__version__}, papermill {papermill.__version__}")')"

# 3. Data: Fashion-MNIST (Debian package) and CIFAR-10 (JPEG copy beside the repo, or a download)
fm=/usr/share/datasets/fashion-mnist
if [ -n "${INSTAB_DATA:-}" ]; then
  log "data: INSTAB_DATA=$INSTAB_DATA is searched first"
fi
if [ -f "$fm/train-images-idx3-ubyte.gz" ]; then
  log "Fashion-MNIST: $fm"
elif can_apt && apt_install dataset-fashion-mnist; then
  log "Fashion-MNIST: installed Debian's dataset-fashion-mnist into $fm"
else
  warn "Fashion-MNIST not found in $fm. Get it with 'sudo apt-get install dataset-fashion-mnist' (Debian/Ubuntu), or set INSTAB_DATA to a folder holding the four IDX files, or let torchvision download it (needs internet)."
fi
if [ -d "$root/../shared/data/cifar10-jpeg/train" ]; then
  log "CIFAR-10: JPEG copy at $(cd "$root/../shared/data/cifar10-jpeg" && pwd) (torchvision's original is used instead when INSTAB_DATA holds it)"
else
  warn "CIFAR-10: no JPEG copy at ../shared/data/cifar10-jpeg; pages that use CIFAR-10 will download the original with torchvision (needs internet) or need INSTAB_DATA."
fi

# 4. MathJax 3 for offline math in the book (one npm tarball, no install)
mj=.venv/share/mathjax-3.2.2.tgz
if [ ! -f "$mj" ]; then
  mkdir -p .venv/share
  if command -v npm >/dev/null 2>&1 && npm pack mathjax@3.2.2 --pack-destination .venv/share >/dev/null 2>&1; then
    log "MathJax: downloaded $mj from the npm registry"
  else
    warn "MathJax: could not get mathjax@3.2.2 with npm (install Node.js/npm, or put the tarball at $mj); the book build needs it."
  fi
fi

# 5. Chromium, for the test that opens every page of the built book (instab_lib.book.browser looks for
#    $INSTAB_CHROMIUM, then chromium, chromium-browser, google-chrome)
if [ "$browser" = 1 ]; then
  found="${INSTAB_CHROMIUM:-}"
  for exe in chromium chromium-browser google-chrome; do
    [ -n "$found" ] && break
    found="$(command -v "$exe" 2>/dev/null || true)"
  done
  if [ -n "$found" ]; then
    log "browser: $found"
  elif can_apt && apt_install chromium; then
    log "browser: installed Debian's chromium"
  else
    warn "Chromium not found (Debian: apt-get install chromium, or set INSTAB_CHROMIUM); the browser tests will say so."
  fi
fi
log "ready"
