"""The main job: MovieLens-100K -> MMRec layout with features -> train -> table -> export."""

from __future__ import annotations

import time
from pathlib import Path

from mentor.config import resolve_config
from mentor.data.dataset import load_dataset
from mentor.paths import cache_dir
from mentor.runs import export_topk, load_run
from mentor.table import format_table
from mentor.training.loop import fit

#: per-model settings of the quick start (MENTOR: the official hyper-parameters, with genre
#: features in the image role of the semantic graph, as in the equivalence benchmark)
SETTINGS = {
    "pop": {},
    "lightgcn": {"model": {"n_layers": 2, "reg_weight": 1e-4}},
    "bpr": {"model": {"reg_weight": 1e-4}},
    "mentor": {"model": {"semantic_graph_weights": {"genre": 0.1, "text": 0.9}}},
}


def run_quickstart(out: Path | None, models: list[str], quiet: bool = False) -> dict[str, dict]:
    """Prepare MovieLens-100K (cached), train ``models`` and the popularity baseline, print test
    metrics side by side and export the top-20 of the last model. Returns test metrics by model."""
    from mentor.prepare.movielens import prepare_movielens

    out = out or Path("mentor-quickstart")
    data = prepare_movielens(cache_dir() / "datasets" / "ml-100k-mm", progress=not quiet)
    print(f"data: {data}")
    dataset = load_dataset(data)
    results: dict[str, dict] = {}
    order = ["pop", *[m for m in models if m != "pop"]]
    for name in order:
        run = out / name
        if (run / "metrics.json").exists():
            print(f"{name}: reusing finished run {run}")
            import json

            metrics = json.loads((run / "metrics.json").read_text())
        else:
            tree = {"data": {"path": str(data)}, **SETTINGS.get(name, {})}
            config = resolve_config(name, tree)
            start = time.perf_counter()
            metrics = fit(
                config,
                dataset,
                run,
                resume=(run / "checkpoint.safetensors").exists(),
                progress=not quiet,
            )
            print(
                f"{name}: best valid epoch {metrics['best_epoch']} of {metrics['epochs_run']}, "
                f"{time.perf_counter() - start:.0f} s"
            )
        results[name] = metrics["test"]
    keys = ["recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@20", "hit@20"]
    rows = [[name, *(m[k] for k in keys)] for name, m in results.items()]
    print(f"\nTest metrics on MovieLens-100K (MMRec protocol), {dataset.n_users} users:")
    print(format_table(["model", *keys], rows))
    last = order[-1]
    export = out / f"top20-{last}.tsv"
    count = export_topk(load_run(out / last), 20, export)
    print(f"\nwrote the top-20 of {last} for {count} users (MovieLens ids) to {export}")
    return results
