#!/usr/bin/env bash
# The test command (README's quick start #2 calls this after setup). Fails when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_ENABLE_ONEDNN_OPTS=0 TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
[ $# -gt 0 ] || set -- tests
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
