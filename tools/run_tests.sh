#!/usr/bin/env bash
# The test command (README's quick start #2 calls this after setup). Fails when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_ENABLE_ONEDNN_OPTS=0 TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
[ $# -gt 0 ] || set -- tests
# Two worker processes (pytest-xdist), each test file on one worker (its module fixtures are built once);
# SACCADE_ZOO_TEST_WORKERS=0 runs everything in this process.
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "${SACCADE_ZOO_TEST_WORKERS:-2}" --dist loadfile --durations=15 "$@"
