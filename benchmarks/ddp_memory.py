"""Data-parallel MENTOR on Baby shapes: seconds per epoch and peak memory per process, 1 vs 2.

Amazon Baby interactions (``../shared/data/amazon-baby``) with seeded random image (4096-d)
and text (384-d) features; MENTOR with its defaults and ``contrast_dtype=float32`` trains
``--epochs`` epochs (validation after the last) once in one process and once in two
(``mentor train --nproc 2``: torchrun, gloo), one torch thread per process. The figures are
each rank's peak resident memory (``peak_memory_mb_per_rank`` of metrics.json) and the median
seconds per epoch. Writes benchmarks/results/ddp_memory.{json,md}. Usage:
python benchmarks/ddp_memory.py [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import RESULTS, SHARED, stamp
from gpu import baby_shapes


def run(data: Path, out: Path, nproc: int, epochs: int) -> dict:
    """One ``mentor train`` of MENTOR with ``nproc`` processes; its metrics.json."""
    cmd = [sys.executable, "-m", "mentor", "train", "--model", "mentor", "--data", str(data)]
    cmd += ["--out", str(out), "--epochs", str(epochs), "--quiet", "--nproc", str(nproc)]
    cmd += ["--set", "model.contrast_dtype=float32", "--set", "train.threads=1"]
    cmd += ["--set", f"train.eval_every={epochs}", "--set", "train.patience=1000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--shared", type=Path, default=SHARED)
    args = parser.parse_args()
    from mentor import __version__

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = baby_shapes(args.shared, Path(tmp) / "baby")
        for nproc in (1, 2):
            metrics = run(data, Path(tmp) / f"run{nproc}", nproc, args.epochs)
            peaks = metrics.get("peak_memory_mb_per_rank") or [metrics["peak_memory_mb"]]
            rows.append(
                {
                    "processes": nproc,
                    "seconds_per_epoch": metrics["seconds_per_epoch"],
                    "peak_rss_mb_per_rank": [round(p["rss"]) for p in peaks],
                    "valid_recall@20": metrics["valid"].get("recall@20"),
                }
            )
            print(rows[-1], flush=True)
    one = rows[0]["peak_rss_mb_per_rank"][0]
    for row in rows:
        row["peak_share_of_one_process"] = [round(p / one, 3) for p in row["peak_rss_mb_per_rank"]]
    result = {
        **stamp(),
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ddp_memory.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"MENTOR on Baby shapes, {args.epochs} epoch(s), float32 contrast, one torch thread per "
        f"process ({result['date']}, {result['machine']}, mentor {__version__}; "
        f"`{result['command']}`)",
        "",
        "| processes | s/epoch | peak RSS per rank (MB) | share of one process |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['processes']} | {row['seconds_per_epoch']:.1f} | "
            f"{', '.join(map(str, row['peak_rss_mb_per_rank']))} | "
            f"{', '.join(f'{s:.0%}' for s in row['peak_share_of_one_process'])} |"
        )
    (RESULTS / "ddp_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
