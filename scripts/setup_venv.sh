#!/usr/bin/env bash
# Create .venv with the torch this project is tested on (2.13.0), plus the pack's packages and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check torch==2.13.0 -r requirements-test.txt
