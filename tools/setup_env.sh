#!/usr/bin/env bash
# Create .venv (if missing) and install saccade_zoo with its test requirements into it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps -e .
# Optional, for speed: tcmalloc (the tools and tests use it where installed; TensorFlow trains 1.6-1.8x faster on CPU
# with it, tools/_malloc.py). Installed with apt where we are root; otherwise say how, and carry on without it.
if [ -z "$(.venv/bin/python tools/_malloc.py)" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q libtcmalloc-minimal4 > /dev/null 2>&1 \
      || (apt-get update -q > /dev/null 2>&1 && apt-get install -y -q libtcmalloc-minimal4 > /dev/null 2>&1) \
      || echo "note: could not install libtcmalloc-minimal4; training runs 1.6-1.8x slower without it" >&2
  else
    echo "note: for 1.6-1.8x faster training on CPU, install tcmalloc: sudo apt-get install libtcmalloc-minimal4" >&2
  fi
fi
