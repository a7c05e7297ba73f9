#!/usr/bin/env bash
# Every measurement in README, in the order they were run (needs ../shared; hours on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/mentor_speed.py
python benchmarks/eval_speed.py
python benchmarks/mentor_quality.py --variants official
python benchmarks/baselines.py --models pop bpr
python benchmarks/baselines.py --models lightgcn --lightgcn-regs 1e-4
python benchmarks/mentor_quality.py --variants contrast_scope=batch feature_mask_grad=true
python benchmarks/baselines.py --models lightgcn
python benchmarks/baselines.py --name ml-100k-mm
