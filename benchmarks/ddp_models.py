"""Every registered model under ``mentor train --nproc 2`` on ml-100k-mm, next to one process.

For each model: ``--epochs`` epochs (validation after each) with one process and with two
(gloo, one torch thread each), the same seed and settings; records the per-epoch validation
Recall@20 of both, the largest difference, the test metrics and seconds per epoch; a failed run
keeps the tail of its log. Both compute the same batches, but sums over the two processes'
rows round differently from one process's sums, and such differences can grow over epochs of
training and move a few items across a top-20 cut-off. MENTOR runs with
``contrast_dtype=float32`` here (its bfloat16 contrastive products round differently for other
block shapes). Rows of models a call does not run are kept, each with its own stamp. Writes
``benchmarks/results/ddp_models.json``.

Usage: python benchmarks/ddp_models.py [--models all|NAME,...] [--epochs 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import RESULTS, SHARED, stamp

from mentor.registry import get_model, model_names

# Settings every run gets for a model on ml-100k-mm (genre + text features).
EXTRA = {
    "mentor": ["model.contrast_dtype=float32"],
}
# Epochs at most for models whose epochs are long on a CPU.
EPOCHS_AT_MOST = {"mmssl": 1}


def train(model: str, data: Path, out: Path, epochs: int, nproc: int) -> dict:
    """``epochs`` epochs of ``model``; its metrics.json and the valid Recall@20 per epoch."""
    cmd = [sys.executable, "-m", "mentor", "train", "--model", model, "--data", str(data)]
    cmd += ["--out", str(out), "--epochs", str(epochs), "--quiet", "--nproc", str(nproc)]
    cmd += ["--set", "train.threads=1", "--set", "train.eval_every=1"]
    cmd += ["--set", "eval.valid_metric=recall@20"]
    for assignment in EXTRA.get(model, []):
        cmd += ["--set", assignment]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        # the lines that say something (torchrun ends its report with a rule of '=')
        lines = [s for s in (done.stdout + done.stderr).splitlines() if s.strip(" =-")]
        return {
            "error": lines[-1][:200] if lines else f"exit {done.returncode}",
            "log_tail": lines[-30:],
        }
    metrics = json.loads((out / "metrics.json").read_text())
    with (out / "history.csv").open() as handle:
        curve = [float(r["valid_recall@20"]) for r in csv.DictReader(handle)]
    return {"metrics": metrics, "valid_curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="all")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "ml-100k-mm")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    models = model_names() if args.models == "all" else args.models.split(",")
    path = args.out / "ddp_models.json"
    # rows of models this call does not run are kept, each with the stamp that measured it
    earlier = json.loads(path.read_text())["rows"] if path.exists() else []
    rows = [r for r in earlier if r["model"] not in models]
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            if not get_model(model).model_cls.trainable:
                continue
            epochs = min(args.epochs, EPOCHS_AT_MOST.get(model, args.epochs))
            runs = {
                n: train(model, args.data, Path(tmp) / f"{model}-{n}", epochs, n) for n in (1, 2)
            }
            row: dict = {"model": model, "epochs": epochs, "stamp": stamp()}
            if any("error" in r for r in runs.values()):
                row["error"] = {n: r.get("error") for n, r in runs.items()}
                row["log_tail"] = {n: r["log_tail"] for n, r in runs.items() if "log_tail" in r}
            else:
                one, two = runs[1], runs[2]
                row["valid_recall@20"] = {n: r["valid_curve"] for n, r in runs.items()}
                row["max_valid_difference"] = max(
                    abs(a - b) for a, b in zip(one["valid_curve"], two["valid_curve"], strict=True)
                )
                for n, r in runs.items():
                    row[f"test_recall@20_{n}"] = r["metrics"]["test"]["recall@20"]
                    row[f"seconds_per_epoch_{n}"] = r["metrics"]["seconds_per_epoch"]
            rows.append(row)
            print(json.dumps(row), flush=True)
            order = {name: i for i, name in enumerate(model_names())}
            rows.sort(key=lambda r: order.get(r["model"], len(order)))
            payload = {**stamp(), "data": args.data.name, "rows": rows}
            path.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
