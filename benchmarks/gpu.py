"""Every model on a CUDA card in one prepared run: seconds per epoch and peak GPU memory.

For each registered model on (a) MovieLens-100K in MMRec layout (``../shared/data/ml-100k-mm``)
and (b) Amazon Baby interactions with seeded random image (4096-d) and text (384-d) features,
trains ``--epochs`` epochs with the model's defaults (validation only after the last epoch) and
records the median seconds per training epoch and the peak GPU memory torch held; MENTOR also
with its contrastive products in float32 and in bfloat16. Rows run in one process (the peak is
reset between them), in order of expected cost, and stop before ``--budget`` seconds are spent
(the rows left are listed as skipped). Writes ``gpu.json`` (date, machine, card, version,
command, rows) into ``--out``.

``--dry-run`` runs the same code on a tiny synthetic data set (one epoch per row), e.g. with
``--device cpu`` to check the script without a GPU. Usage::

    bash benchmarks/gpu.sh [--device cuda] [--epochs 2] [--budget 420] [--out DIR] [--dry-run]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MENTOR_DTYPES = {
    "float32": "model.contrast_dtype=float32",
    "bfloat16": "model.contrast_dtype=bfloat16",
}
#: settings that make a model run on ml-100k-mm's features (genre plays the image role)
ML_SETS = {"mentor": ['model.semantic_graph_weights={"genre": 0.1, "text": 0.9}']}


def tiny_dataset(folder: Path, n_users: int = 40, n_items: int = 60) -> Path:
    """A seeded MMRec-layout folder with 8-d image and 6-d text features."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    lines = ["userID\titemID\tx_label"]
    for user in range(n_users):
        items = rng.choice(n_items, size=8, replace=False)
        labels = [0] * 6 + [1, 2]
        lines += [f"{user}\t{i}\t{label}" for i, label in zip(items, labels, strict=True)]
    (folder / "tiny.inter").write_text("\n".join(lines) + "\n")
    np.save(folder / "image_feat.npy", rng.random((n_items, 8), dtype=np.float32))
    np.save(folder / "text_feat.npy", rng.standard_normal((n_items, 6), dtype=np.float32))
    return folder


def baby_shapes(shared: Path, folder: Path) -> Path:
    """Baby interactions with seeded random features of the real shapes."""
    folder.mkdir(parents=True)
    source = shared / "data" / "amazon-baby"
    for name in ("baby.inter", "u_id_mapping.tsv", "i_id_mapping.tsv"):
        (folder / name).symlink_to(source / name)
    rng = np.random.default_rng(2026)
    np.save(folder / "image_feat.npy", rng.random((7050, 4096), dtype=np.float32))
    np.save(folder / "text_feat.npy", rng.standard_normal((7050, 384), dtype=np.float32))
    return folder


def plan(data: dict[str, Path]) -> list[tuple[str, str, str, list[str]]]:
    """(data set, model, variant, --set assignments) of every row, cheapest data set first."""
    from mentor.registry import all_models

    rows = []
    for name in data:
        for spec in all_models():
            extra = ML_SETS.get(spec.name, []) if name == "ml-100k-mm" else []
            if spec.name == "mentor":
                for dtype, assignment in MENTOR_DTYPES.items():
                    rows.append((name, spec.name, dtype, [*extra, assignment]))
            else:
                rows.append((name, spec.name, "default", extra))
    return rows


def run_row(model: str, data: Path, sets: list[str], epochs: int, device: str) -> dict:
    """Train ``model`` for ``epochs`` epochs; seconds per epoch (median) and peak memory."""
    import torch

    import mentor

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        metrics = mentor.train(
            model, data, Path(tmp) / "run", overrides=[*sets, f"train.eval_every={epochs}"],
            epochs=epochs, patience=1000, device=device, progress=False, log=lambda _: None,
        )  # fmt: skip
        history = Path(tmp) / "run" / "history.csv"
        seconds = [  # the popularity ranker trains nothing and has no history
            float(line.split(",")[2]) for line in history.read_text().splitlines()[1:]
        ] if history.is_file() else [0.0]  # fmt: skip
    return {
        "seconds_per_epoch": statistics.median(seconds),
        "epoch_seconds": seconds,
        "peak_device_mb": metrics.get("peak_memory_mb", {}).get("device"),
        "peak_rss_mb": metrics.get("peak_memory_mb", {}).get("rss"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for all rows")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--dry-run", action="store_true", help="tiny synthetic data, 1 epoch")
    args = parser.parse_args()
    import torch

    from mentor import __version__
    from mentor.hardware import describe_machine

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu --dry-run to check the script")
    began = time.monotonic()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.dry_run:
            data = {"tiny": tiny_dataset(Path(tmp) / "tiny")}
            epochs = 1
        else:
            if not (args.shared / "data").is_dir():
                raise SystemExit(f"{args.shared}/data not found: pass --shared PATH")
            data = {
                "ml-100k-mm": args.shared / "data" / "ml-100k-mm",
                "baby": baby_shapes(args.shared, Path(tmp) / "baby"),
            }
            epochs = args.epochs
        for name, model, variant, sets in plan(data):
            row = {"data": name, "model": model, "variant": variant, "epochs": epochs}
            if time.monotonic() - began > args.budget:
                rows.append({**row, "skipped": "time budget"})
                continue
            try:
                row.update(run_row(model, data[name], sets, epochs, args.device))
            except Exception as exc:  # one failing row must not lose the others
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            rows.append(row)
            shown = row.get("seconds_per_epoch")
            print(f"{name:<11} {model:<9} {variant:<9} "
                  f"{'-' if shown is None else f'{shown:.3f}'} s/epoch", flush=True)  # fmt: skip
    card = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": describe_machine(),
        "device": card,
        "version": __version__,
        "command": "bash benchmarks/gpu.sh " + " ".join(sys.argv[1:]),
        "seconds": round(time.monotonic() - began, 1),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out / 'gpu.json'} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
