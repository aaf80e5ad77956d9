#!/usr/bin/env bash
# The test suite on a fresh machine (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec .venv/bin/python -m pytest -q "$@"
