#!/usr/bin/env bash
# Create .venv with the CPU torch this project is tested on, plus the pack's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check torch==2.13.0 -r requirements-test.txt
