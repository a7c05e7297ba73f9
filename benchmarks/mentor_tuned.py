"""MENTOR tuned on valid over its official grid, next to its fixed defaults, on ml-100k-mm.

Runs ``mentor benchmark --models mentor`` twice on ``../shared/data/ml-100k-mm`` with the quick
start's settings (genre in the image role of the semantic graph, 0.1, text 0.9):

- ``--grid default``: the official grid, ``mask_weight_g`` {1e-4, 1e-3} x ``temp`` {0.2, 0.4, 0.6},
  each combination trained once (seed 999) and chosen on valid Recall@10 (the official
  ``valid_metric``), then the chosen combination trained with 3 seeds;
- ``--grid none``: the official defaults with 3 seeds.

The defaults' runs live in their own folder, shared with ``poster_modality.py``; their seed-999
run is the grid's ``mask_weight_g=1e-3, temp=0.2`` run (the same identity; copy that run folder
into it to reuse it rather than train it twice).

LightGCN (n_layers 3, reg 1e-4, chosen on valid earlier) is the id-only reference.
Writes ``benchmarks/results/mentor_tuned.{json,md}``; runs live in ``runs/`` (resumable).

Usage: python benchmarks/mentor_tuned.py [--seeds 3] [--workers 1] [--threads 1]
                                         [--parts grid defaults lightgcn]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import (
    ML100K_LIGHTGCN_RUNS,
    ML100K_LIGHTGCN_SETS,
    ML100K_MENTOR_DEFAULTS_RUNS,
    ML100K_MENTOR_RUNS,
    ML100K_MENTOR_SETS,
    RESULTS,
    SHARED,
    machine,
    mentor_benchmark,
)


def grid_table(out: Path, model: str) -> list[dict]:
    """Valid score, test Recall@20 and best epoch of every grid combination at seed 999, read
    from the finished run folders."""
    from mentor.registry import get_model

    keys = list(get_model(model).grid)
    rows = []
    for run in sorted((out / "runs" / model).glob("[0-9]*")):
        if not (run / "metrics.json").exists():
            continue
        config = json.loads((run / "config.json").read_text())
        if config["train"]["seed"] != 999:
            continue
        metrics = json.loads((run / "metrics.json").read_text())
        metric = config["eval"]["valid_metric"]
        params = {}
        for key in keys:
            section, name = key.split(".")
            params[key] = config[section][name]
        rows.append(
            {
                "params": params,
                "valid": metrics["valid"][metric],
                "valid_metric": metric,
                "test_recall@20": metrics["test"]["recall@20"],
                "best_epoch": metrics["best_epoch"],
            }
        )
    return rows


#: the rows this script can run, by ``--parts`` name
PARTS = {
    "grid": "mentor (official grid, chosen on valid)",
    "defaults": "mentor (official defaults)",
    "lightgcn": "lightgcn (n_layers 3, reg 1e-4)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "ml-100k-mm")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=list(PARTS),
        default=list(PARTS),
        help="which rows to run (and report); each resumes and reuses finished runs",
    )
    args = parser.parse_args()
    settings = {
        "grid": (ML100K_MENTOR_RUNS, "mentor", "default", ML100K_MENTOR_SETS),
        "defaults": (ML100K_MENTOR_DEFAULTS_RUNS, "mentor", "none", ML100K_MENTOR_SETS),
        "lightgcn": (ML100K_LIGHTGCN_RUNS, "lightgcn", "none", ML100K_LIGHTGCN_SETS),
    }
    rows = {
        PARTS[part]: mentor_benchmark(
            args.data, *settings[part], args.seeds, args.workers, args.threads
        )
        for part in args.parts
    }
    payload = {
        "machine": machine(),
        "seeds": args.seeds,
        "rows": rows,
        "grid": grid_table(ML100K_MENTOR_RUNS, "mentor") if "grid" in args.parts else [],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mentor_tuned.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        f"ml-100k-mm, test metrics, mean ± sample sd over {args.seeds} seeds. "
        f"Machine: {payload['machine']}.",
        "",
        "| model | chosen | test R@20 | test N@20 | best epoch | s/epoch |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        chosen = ", ".join(f"{k}={v}" for k, v in row["chosen"].items()) or "-"
        lines.append(
            f"| {name} | {chosen} | {row['test_recall@20']:.4f} ± {row['test_recall@20_sd']:.4f} | "
            f"{row['test_ndcg@20']:.4f} ± {row['test_ndcg@20_sd']:.4f} | "
            f"{row['best_epoch']:.0f} | {row['seconds_per_epoch']:.2f} |"
        )
    lines += ["", "The grid, seed 999:", "", "| combination | valid | test R@20 | best epoch |"]
    lines.append("|---|---|---|---|")
    for row in payload["grid"]:
        combo = ", ".join(f"{k}={v}" for k, v in row["params"].items())
        lines.append(
            f"| {combo} | {row['valid_metric']} {row['valid']:.4f} | "
            f"{row['test_recall@20']:.4f} | {row['best_epoch']} |"
        )
    (RESULTS / "mentor_tuned.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
