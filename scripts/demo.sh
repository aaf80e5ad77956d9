#!/usr/bin/env bash
# The main job on a fresh machine: draw a prompt with the demo model shipped in models/ (CPU is fine).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
prompt=${1:-"a red circle at the top left on a blue background"}
exec .venv/bin/python -m infinity_core generate --prompt "$prompt" --seed 0 --batch 4 --overwrite -o outputs/demo.png
