"""MENTOR speed and memory: seconds per training epoch and peak resident memory.

Runs ``mentor train`` in a fresh subprocess per configuration (so peak memory is that run's own)
on (a) Amazon Baby interactions with seeded random features of the real shapes (image 4096,
text 384) and (b) MovieLens-100K in MMRec layout with real text and genre features, for the
official behaviour (``contrast_scope=all``) in float32 and with the default ``contrast_dtype``,
and for ``contrast_scope=batch``. Writes ``benchmarks/results/mentor_speed.{json,md}``.

Usage: python benchmarks/mentor_speed.py [--shared ../shared] [--baby-epochs 2] [--ml-epochs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, machine

VARIANTS = {
    "official (contrast_scope=all, float32)": ["model.contrast_dtype=float32"],
    "official (contrast_scope=all, default dtype)": [],
    "contrast_scope=batch": ["model.contrast_scope=batch"],
}


def baby_with_random_features(shared: Path, folder: Path) -> Path:
    """Baby interactions plus seeded random image (4096) and text (384) features."""
    src = shared / "data" / "amazon-baby"
    for name in ("baby.inter", "u_id_mapping.tsv", "i_id_mapping.tsv"):
        (folder / name).symlink_to(src / name)
    rng = np.random.default_rng(2026)
    n_items = 7050
    np.save(folder / "image_feat.npy", rng.random((n_items, 4096), dtype=np.float32))
    np.save(folder / "text_feat.npy", rng.standard_normal((n_items, 384), dtype=np.float32))
    return folder


def run_one(data: Path, extra: list[str], epochs: int, device: str) -> dict:
    """Train for ``epochs`` in a subprocess; return s/epoch (median) and peak RSS (GB)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cmd = [
            sys.executable,
            "-m",
            "mentor.cli",
            "train",
            "--model",
            "mentor",
            "--data",
            str(data),
            "--out",
            str(run),
            "--epochs",
            str(epochs),
            "--quiet",
            "--device",
            device,
            "--set",
            "train.patience=1000",
        ]
        for item in extra:
            cmd += ["--set", item]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if status != 0:
            raise SystemExit(f"benchmark run failed: {' '.join(cmd)}\n{proc.stderr.read()}")
        metrics = json.loads((run / "metrics.json").read_text())
        seconds = [
            float(line.split(",")[2]) for line in (run / "history.csv").read_text().splitlines()[1:]
        ]
    return {
        "seconds_per_epoch": metrics["seconds_per_epoch"],
        "epoch_seconds": seconds,
        "peak_rss_gb": usage.ru_maxrss / 1024**2,
        "wall_seconds": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--baby-epochs", type=int, default=2)
    parser.add_argument("--ml-epochs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=["baby", "ml-100k-mm"], help="one data set only")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if not (args.shared / "data").exists():
        raise SystemExit(f"{args.shared}/data not found: pass --shared PATH")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sets = {
            "baby": (baby_with_random_features(args.shared, Path(tmp)), args.baby_epochs, []),
            "ml-100k-mm": (
                args.shared / "data" / "ml-100k-mm",
                args.ml_epochs,
                ['model.semantic_graph_weights={"genre": 0.1, "text": 0.9}'],
            ),
        }
        for name, (data, epochs, base) in sets.items():
            if args.only and name != args.only:
                continue
            for variant, extra in VARIANTS.items():
                result = run_one(data, base + extra, epochs, args.device)
                rows.append({"data": name, "variant": variant, "epochs": epochs, **result})
                print(
                    f"{name:<11} {variant:<45} {result['seconds_per_epoch']:8.2f} s/epoch "
                    f"{result['peak_rss_gb']:5.2f} GB",
                    flush=True,
                )
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    previous = args.out / f"mentor_speed{suffix}.json"
    if args.only and previous.exists():  # keep the other data set's rows of an earlier run
        kept = [r for r in json.loads(previous.read_text())["rows"] if r["data"] != args.only]
        rows = kept + rows
    stamp = {"machine": machine(), "device": args.device, "rows": rows}
    (args.out / f"mentor_speed{suffix}.json").write_text(json.dumps(stamp, indent=2) + "\n")
    lines = [
        f"Machine: {stamp['machine']}",
        "",
        "| data | variant | s/epoch (median) | peak RSS (GB) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['data']} | {r['variant']} | {r['seconds_per_epoch']:.2f} | {r['peak_rss_gb']:.2f} |"
        for r in rows
    ]
    (args.out / f"mentor_speed{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
