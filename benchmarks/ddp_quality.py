"""Full runs with 1 and 2 data-parallel processes on ml-100k-mm: the same quality.

LightGCN or MENTOR with the settings chosen on valid for ml-100k-mm (README's benchmark), seeds
999, 1 and 2, trained to early stopping once in one process and once in two (``mentor train
--nproc 2``, gloo, one torch thread per process). Rounding differences grow over hundreds of
epochs, so the two are compared as distributions: means and sample sd of test Recall@20 and
NDCG@20 over seeds, and the best epochs. ``--parallel`` runs the one-process seeds two at a time
(quality only: their seconds per epoch then share the cores). Writes
benchmarks/results/ddp_quality.json for LightGCN, ddp_quality_MODEL.json for another model.
Usage: python benchmarks/ddp_quality.py [--model lightgcn|mentor] [--seeds 999 1 2] [--parallel]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import ML100K_LIGHTGCN_SETS, ML100K_MENTOR_SETS, RESULTS, SHARED, stamp

#: the settings chosen on valid for ml-100k-mm (README's benchmark table)
SETS = {
    "lightgcn": ML100K_LIGHTGCN_SETS,
    "mentor": [*ML100K_MENTOR_SETS, "model.mask_weight_g=0.001", "model.temp=0.4"],
}


def train(model: str, data: Path, out: Path, seed: int, nproc: int) -> dict:
    """One run to early stopping; its metrics.json."""
    cmd = [sys.executable, "-m", "mentor", "train", "--model", model, "--data", str(data)]
    cmd += ["--out", str(out), "--seed", str(seed), "--quiet", "--nproc", str(nproc)]
    cmd += ["--set", "train.threads=1"]
    for assignment in SETS.get(model, []):
        cmd += ["--set", assignment]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lightgcn")
    parser.add_argument("--seeds", type=int, nargs="+", default=[999, 1, 2])
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "ml-100k-mm")
    parser.add_argument("--parallel", action="store_true", help="one-process seeds two at a time")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for nproc in (1, 2):
            runs = []
            lanes = 2 if args.parallel and nproc == 1 else 1
            with ThreadPoolExecutor(max_workers=lanes) as pool:
                trained = list(
                    pool.map(
                        lambda seed, n=nproc: train(
                            args.model, args.data, Path(tmp) / f"{n}-{seed}", seed, n
                        ),
                        args.seeds,
                    )
                )
            for seed, m in zip(args.seeds, trained, strict=True):
                runs.append(
                    {
                        "seed": seed,
                        "recall@20": m["test"]["recall@20"],
                        "ndcg@20": m["test"]["ndcg@20"],
                        "best_epoch": m["best_epoch"],
                        "seconds_per_epoch": m["seconds_per_epoch"],
                    }
                )
                print(nproc, runs[-1], flush=True)
            summary = {
                key: [statistics.mean(r[key] for r in runs), statistics.stdev(r[key] for r in runs)]
                for key in ("recall@20", "ndcg@20")
            }
            rows.append({"processes": nproc, "runs": runs, "summary": summary})
    result = {**stamp(), "model": args.model, "data": args.data.name, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "ddp_quality.json" if args.model == "lightgcn" else f"ddp_quality_{args.model}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["rows"], indent=1))


if __name__ == "__main__":
    main()
