"""Every registered model on ml-100k-mm: MMRec's grid chosen on valid, then 3 seeds.

Runs ``mentor benchmark --models <all, cheapest first> --grid <file> --trials N --seeds 3`` on
``../shared/data/ml-100k-mm`` (genre + text features) into ``runs/bench/ml100k-all``:

- every model's grid is its registered one (MMRec's YAML grid; MENTOR's official grid), written
  to ``grids.json`` in the benchmark folder; MENTOR's also fixes the quick start's semantic graph
  weights (genre in the image role, 0.1; text 0.9), as one-valued keys;
- a grid with more distinct combinations than ``--trials`` is searched with that many,
  proposed by TPE on valid (only SLMRec's, 80 distinct of 320 at the default 30);
- MENTOR's finished runs of ``mentor_tuned.py`` (the same settings) are copied in and reused.

Models go cheapest first, so an interrupted benchmark has the most rows; it resumes where it
stopped (finished runs are reused by identity). Copies ``results.{md,json,png}`` to
``benchmarks/results/benchmark_ml100k_all.*``.

Usage: python benchmarks/all_models.py [--models NAME,...] [--trials 30] [--seeds 3]
                                       [--workers 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from common import ML100K_MENTOR_RUNS, RESULTS, ROOT, SHARED

from mentor.registry import get_model, model_names

#: cheapest first (s/epoch and grid size on ml-100k-mm; MENTOR's runs are reused)
ORDER = [
    "pop",
    "bpr",
    "vbpr",
    "mentor",
    "lightgcn",
    "layergcn",
    "freedom",
    "lattice",
    "bm3",
    "dualgnn",
    "slmrec",
    "mmgcn",
    "mmssl",
]
OUT = ROOT / "runs" / "bench" / "ml100k-all"
SHARED_SETS = ['data.modalities=["genre", "text"]']
MENTOR_FIXED = {"model.semantic_graph_weights": [{"genre": 0.1, "text": 0.9}]}


def grids() -> dict[str, dict[str, list]]:
    """Each model's registered grid; MENTOR's with its fixed semantic graph weights."""
    out = {name: dict(get_model(name).grid) for name in model_names()}
    out["mentor"] = {**out["mentor"], **MENTOR_FIXED}
    return out


def reuse_mentor_runs(out: Path) -> None:
    """Copy ``mentor_tuned.py``'s finished MENTOR runs in (reused when the identity matches)."""
    target = out / "runs" / "mentor"
    for run in sorted(ML100K_MENTOR_RUNS.glob("runs/mentor/*")):
        if (run / "metrics.json").exists() and not (target / run.name).exists():
            shutil.copytree(run, target / run.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(ORDER))
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    missing = sorted(set(model_names()) - set(ORDER))
    if missing:
        raise SystemExit(f"ORDER lacks {missing}: add them")
    args.out.mkdir(parents=True, exist_ok=True)
    grid_file = args.out / "grids.json"
    grid_file.write_text(json.dumps(grids(), indent=2) + "\n")
    reuse_mentor_runs(args.out)
    data = SHARED / "data" / "ml-100k-mm"
    cmd = [sys.executable, "-m", "mentor.cli", "benchmark", "--data", str(data)]
    cmd += ["--models", args.models, "--grid", str(grid_file), "--trials", str(args.trials)]
    cmd += ["--seeds", str(args.seeds), "--out", str(args.out)]
    cmd += ["--workers", str(args.workers), "--threads", str(args.threads)]
    for assignment in SHARED_SETS:
        cmd += ["--set", assignment]
    subprocess.run(cmd, check=True)
    for suffix in ("md", "json", "png"):
        shutil.copyfile(args.out / f"results.{suffix}", RESULTS / f"benchmark_ml100k_all.{suffix}")


if __name__ == "__main__":
    main()
