#!/usr/bin/env bash
# Every measurement in README that runs on its own (needs ../shared; days on 2 cores, so run the
# lines you need). The comparisons with the original code need checkouts outside this repository,
# patched as README's speed section lists: MMREC=DIR (enoche/MMRec) and MMSSL=DIR (HKUDS/MMSSL);
# without them those lines are skipped. serve_schemathesis.py (--bundle DIR ...) and
# check_export.py (--run RUN --export FILE) check artefacts you made first; README says how.
set -euo pipefail
cd "$(dirname "$0")/.."

# MENTOR
python benchmarks/mentor_speed.py
python benchmarks/mentor_quality.py --variants official
python benchmarks/mentor_quality.py --variants contrast_scope=batch feature_mask_grad=true
python benchmarks/mentor_tuned.py --seeds 3
python benchmarks/mentor_memory_clothing.py

# baselines and the whole table
python benchmarks/baselines.py --models pop bpr
python benchmarks/baselines.py --models lightgcn --lightgcn-regs 1e-4
python benchmarks/baselines.py --models lightgcn
python benchmarks/baselines.py --name ml-100k-mm
python benchmarks/layergcn_baby.py --seeds 3
python benchmarks/all_models.py --seeds 3

# evaluation, data preparation, new items, serving
python benchmarks/eval_speed.py
python benchmarks/prepare_throughput.py
python benchmarks/poster_modality.py --seeds 3
python benchmarks/cold_start.py
python benchmarks/serve_equals_export.py
python benchmarks/faiss_recall.py
python benchmarks/serve_load.py

# against the original code (outside this repository)
if [[ -n "${MMREC:-}" ]]; then
  python benchmarks/speed_vs_mmrec.py --mmrec "$MMREC" --threads 1
  python benchmarks/quality_vs_mmrec.py --mmrec "$MMREC" --models bpr,vbpr,lattice,dualgnn,slmrec
  python benchmarks/quality_vs_mmrec.py --mmrec "$MMREC" --models layergcn \
    --set layergcn=dropout=0.0 --set layergcn=reg_weight=0.01
  python benchmarks/quality_vs_mmrec.py --mmrec "$MMREC" --models lightgcn,freedom \
    --set lightgcn=reg_weight=0.01 --set freedom=dropout=0.9
  python benchmarks/quality_vs_mmrec.py --mmrec "$MMREC" --models bm3 --seeds 999 1 2 3 4 5
  python benchmarks/quality_vs_mmrec.py --mmrec "$MMREC" --models mmgcn --epochs 30
  if [[ -n "${MMSSL:-}" ]]; then
    python benchmarks/equivalence_b.py --mmrec "$MMREC" --mmssl "$MMSSL"
  fi
fi
