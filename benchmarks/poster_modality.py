"""Does the poster modality help? MENTOR on MovieLens-100K with and without TMDB content.

Prepares ``../shared/data/ml-100k-posters`` with ``mentor data prepare movielens --content`` (text
from title + plot overview, image features from the posters, MovieLens genres), then runs
``mentor benchmark --grid none`` (the official MENTOR settings, 3 seeds) on:

- ``ml-100k-mm``: genre + title text (the equivalence benchmark's data, genre in the image role
  of the semantic graph as there; these runs are shared with ``mentor_tuned.py``);
- ``posters-text``: genre + title/overview text;
- ``posters-image``: genre + title/overview text + poster image features.

LightGCN ignores features, so it is the same on every variant (the interactions and split are
identical byte for byte) and is run once as the id-only reference, with the settings chosen on
valid (n_layers 3, reg 1e-4; runs shared with ``mentor_tuned.py``).
Writes ``benchmarks/results/poster_modality.{json,md}``; runs live in ``runs/posters`` (resumable).

Usage: python benchmarks/poster_modality.py [--seeds 3] [--workers 1] [--threads 2]
                                            [--variants ml-100k-mm posters-text posters-image]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from common import (
    ML100K_LIGHTGCN_RUNS,
    ML100K_LIGHTGCN_SETS,
    ML100K_MENTOR_DEFAULTS_RUNS,
    ML100K_MENTOR_SETS,
    RESULTS,
    ROOT,
    SHARED,
    machine,
    mentor_benchmark,
)

VARIANTS = {
    "ml-100k-mm": ("mm", ["genre", "text"]),
    "posters-text": ("posters", ["genre", "text"]),
    "posters-image": ("posters", ["genre", "text", "image"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    work = ROOT / "runs" / "posters"
    folders = {"mm": SHARED / "data" / "ml-100k-mm", "posters": work / "ml-100k-posters"}
    mentor = [sys.executable, "-m", "mentor.cli"]
    if not (folders["posters"] / "meta.json").exists():
        content = SHARED / "data" / "ml-100k-posters"
        cmd = [*mentor, "data", "prepare", "movielens", "--content", str(content)]
        subprocess.run([*cmd, "--out", str(folders["posters"])], check=True)
    rows = []
    for variant in args.variants:
        source, modalities = VARIANTS[variant]
        weights = {m: round(1.0 / len(modalities), 6) for m in modalities}
        settings = [f"data.modalities={json.dumps(modalities)}"]
        runs = {"mentor": [*settings, f"model.semantic_graph_weights={json.dumps(weights)}"]}
        if variant == "ml-100k-mm":  # shared with mentor_tuned.py: the same runs, reused
            runs = {"mentor": ML100K_MENTOR_SETS, "lightgcn": ML100K_LIGHTGCN_SETS}
        for model, sets in runs.items():
            out = work / f"{variant}-{model}"
            if variant == "ml-100k-mm":
                out = ML100K_MENTOR_DEFAULTS_RUNS if model == "mentor" else ML100K_LIGHTGCN_RUNS
            row = mentor_benchmark(
                folders[source], out, model, "none", sets, args.seeds, args.workers, args.threads
            )
            rows.append({"variant": variant, "modalities": modalities, **row})
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), "seeds": args.seeds, "rows": rows}
    (RESULTS / "poster_modality.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        f"Test metrics, mean ± sample sd over {args.seeds} seeds, official MENTOR settings "
        f"(no tuning). Machine: {payload['machine']}.",
        "",
        "| data | modalities | model | test R@20 | test N@20 | best epoch |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {' + '.join(row['modalities'])} | {row['model']} | "
            f"{row['test_recall@20']:.4f} ± {row['test_recall@20_sd']:.4f} | "
            f"{row['test_ndcg@20']:.4f} ± {row['test_ndcg@20_sd']:.4f} | {row['best_epoch']:.0f} |"
        )
    (RESULTS / "poster_modality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
