#!/usr/bin/env bash
# Creates (or reuses) the project's virtualenv and installs the pinned requirements.
# The virtualenv is cached outside the clone by the hash of the requirements, so a fresh clone
# (CI) reuses it; .venv is a link to it.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || { echo "ERROR: $PYTHON not found; Visus needs Python 3.11." >&2; exit 1; }
hash=$(cat requirements.txt requirements-dev.txt | "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')
cache=${VISUS_VENV_CACHE:-$HOME/.cache/visus}
target="$cache/venv-$hash"

if [ -f .venv/.visus-hash ] && [ "$(cat .venv/.visus-hash)" = "$hash" ]; then
  exit 0
fi
mkdir -p "$cache"
# One install at a time per cache: a second checkout bootstrapping meanwhile waits for the first instead of
# deleting its half-built virtualenv (the stamp is only written when an install has finished).
exec 9>"$cache/.install.lock"
flock 9
if [ ! -f "$target/.visus-hash" ]; then
  echo "Installing Python packages into $target (first time: a few minutes; torch is large)..."
  # Built in place under its final name (scripts' shebangs point at it); the stamp written last
  # marks it complete, so an interrupted install is redone.
  rm -rf "$target"
  "$PYTHON" -m venv "$target"
  if ! "$target/bin/python" -m pip install --quiet -r requirements-dev.txt; then
    echo "ERROR: installing requirements failed (see above)." >&2
    rm -rf "$target"; exit 1
  fi
  echo "$hash" > "$target/.visus-hash"
fi
rm -rf .venv
ln -s "$target" .venv
echo "Using virtualenv $target"
