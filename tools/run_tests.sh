#!/usr/bin/env bash
# The test command (README's quick start #2 calls this after setup). Fails when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_ENABLE_ONEDNN_OPTS=0 TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
# tcmalloc where installed (tools/_malloc.py says why: TensorFlow on CPU trains 1.6-1.8x faster), unless
# SACCADE_ZOO_MALLOC=system; the tools the tests start as subprocesses inherit it.
eval "$(.venv/bin/python tools/_malloc.py --exports)"
[ $# -gt 0 ] || set -- tests
# Two worker processes (pytest-xdist), each test file on one worker (its module fixtures are built once);
# SACCADE_ZOO_TEST_WORKERS=0 runs everything in this process.
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "${SACCADE_ZOO_TEST_WORKERS:-2}" --dist loadfile --durations=15 "$@"
