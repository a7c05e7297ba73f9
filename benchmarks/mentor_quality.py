"""MENTOR quality on MovieLens-100K (MMRec layout, real text + genre features), 3 seeds per variant.

Official settings (genre in the image role of the semantic graph: weights genre 0.1 / text 0.9;
temp 0.2; mask_weight_g 1e-3; early stop on valid Recall@10, patience 20), for the official
behaviour, ``contrast_scope=batch`` and ``feature_mask_grad=true``. Test metrics at the best valid
epoch, next to the official code's figures from ../shared/docs/mentor-reference.md.
Writes ``benchmarks/results/mentor_quality.{json,md}``; runs live in ``runs/mentor-quality`` and
are resumed when present.

Usage: python benchmarks/mentor_quality.py [--variants official batch feature_grad] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import RESULTS, ROOT, SHARED, machine, mean_sd

from mentor.search import grid_search

VARIANTS = {
    "official": {},
    "contrast_scope=batch": {"contrast_scope": "batch"},
    "feature_mask_grad=true": {"feature_mask_grad": True},
}
OFFICIAL_CODE = {  # mentor-reference.md, "Measured here": test at best valid epoch, seeds 999/1/2
    "recall@10": [0.2116, 0.2179, 0.2147],
    "recall@20": [0.3272, 0.3330, 0.3312],
    "ndcg@10": [0.2365, 0.2449, 0.2393],
    "ndcg@20": [0.2656, 0.2738, 0.2690],
}
KEYS = ["recall@10", "recall@20", "ndcg@10", "ndcg@20"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[999, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "ml-100k-mm")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "mentor-quality")
    args = parser.parse_args()
    table = {}
    for variant in args.variants:
        base = {
            "data": {"path": str(args.data)},
            "model": {
                "semantic_graph_weights": {"genre": 0.1, "text": 0.9},
                "temp": 0.2,
                "mask_weight_g": 1e-3,
                **VARIANTS[variant],
            },
            "eval": {"valid_metric": "recall@10"},
        }
        slug = variant.replace("=", "-")
        summary = grid_search(
            "mentor",
            base,
            {"train.seed": args.seeds},
            args.work / slug,
            workers=args.workers,
            threads=args.threads,
        )
        table[variant] = [
            {
                "seed": r["params"]["train.seed"],
                "best_epoch": r["best_epoch"],
                "epochs_run": r["epochs_run"],
                "seconds_per_epoch": r["seconds_per_epoch"],
                "valid_recall@10": r["valid"]["recall@10"],
                **{k: r["test"][k] for k in KEYS},
            }
            for r in summary["runs"]
        ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "mentor_quality.json"
    if path.exists():
        table = {**json.loads(path.read_text())["variants"], **table}
    (RESULTS / "mentor_quality.json").write_text(
        json.dumps({"machine": machine(), "variants": table}, indent=2) + "\n"
    )
    lines = [
        f"Machine: {machine()}",
        "",
        "| variant | seeds | best epoch | " + " | ".join(f"test {k}" for k in KEYS) + " |",
        "|---|---|---|" + "---|" * len(KEYS),
    ]
    lines.append(
        "| official code (reference notes) | 999, 1, 2 | 128, 168, 126 | "
        + " | ".join(mean_sd(OFFICIAL_CODE[k]) for k in KEYS)
        + " |"
    )
    for variant, rows in table.items():
        seeds = ", ".join(str(r["seed"]) for r in rows)
        epochs = ", ".join(str(r["best_epoch"]) for r in rows)
        lines.append(
            f"| {variant} | {seeds} | {epochs} | "
            + " | ".join(mean_sd([r[k] for r in rows]) for k in KEYS)
            + " |"
        )
    (RESULTS / "mentor_quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
