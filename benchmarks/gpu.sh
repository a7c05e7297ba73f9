#!/usr/bin/env bash
# Every model's seconds per epoch and peak GPU memory on ml-100k-mm and Baby shapes, in one run
# (under 8 minutes on an H100); see benchmarks/gpu.py. Check it without a GPU with
#   bash benchmarks/gpu.sh --device cpu --dry-run --out /tmp/gpu
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
exec "$python" "$root/benchmarks/gpu.py" "$@"
