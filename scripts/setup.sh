#!/usr/bin/env bash
# Shared set-up: a virtual environment in .venv with the CPU build of torch 2.13.0 when no torch
# is installed (never a CUDA build pulled in by a version range), then mentor-rec itself.
# Usage: source scripts/setup.sh [extras]   (extras e.g. "dev" or "features,dev")
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-dev}"
python="${PYTHON:-python3}"
if [ ! -x "$root/.venv/bin/python" ]; then
  "$python" -m venv "$root/.venv"
fi
# shellcheck disable=SC1091
. "$root/.venv/bin/activate"
if ! python -c "import torch" >/dev/null 2>&1; then
  pip install --quiet "torch==2.13.0"
fi
pip install --quiet -e "$root[$extras]"
