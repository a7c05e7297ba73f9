"""The main job: MovieLens-100K -> MMRec layout with features -> train -> table -> export."""

from __future__ import annotations

import json
import time
from pathlib import Path

from mentor import __version__
from mentor.config import RunConfig, resolve_config
from mentor.data.dataset import Dataset, load_dataset
from mentor.errors import MentorError
from mentor.paths import cache_dir
from mentor.runs import export_topk, load_run, read_run_config
from mentor.search import run_identity
from mentor.table import format_table
from mentor.training.loop import fit
from mentor.training.runinfo import read_run_info

#: per-model settings of the quick start, chosen on valid on ml-100k-mm (README, "Results"):
#: LightGCN n_layers 3 at reg 1e-4; MENTOR from its official grid (mask_weight_g {1e-4, 1e-3} x
#: temp {0.2, 0.4, 0.6}, ``benchmarks/mentor_tuned.py``): temp 0.4 at the official
#: mask_weight_g 1e-3, with genre features in the image role of the semantic graph as in the
#: equivalence benchmark
SETTINGS = {
    "pop": {},
    "lightgcn": {"model": {"n_layers": 3, "reg_weight": 1e-4}},
    "bpr": {"model": {"reg_weight": 1e-4}},
    "mentor": {
        "model": {
            "semantic_graph_weights": {"genre": 0.1, "text": 0.9},
            "mask_weight_g": 1e-3,
            "temp": 0.4,
        }
    },
}


def _same_run(run: Path, config: RunConfig, dataset: Dataset) -> bool:
    """Whether ``run`` was made with ``config`` on ``dataset`` by this version of mentor."""
    info = read_run_info(run)
    if info is None or info.get("mentor_version") != __version__:
        return False
    stored = read_run_config(run)
    fingerprint = dataset.fingerprint()
    return run_identity(stored, info["data_fingerprint"]) == run_identity(config, fingerprint)


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
        tree = {"data": {"path": str(data.absolute())}, **SETTINGS.get(name, {})}
        config = resolve_config(name, tree)
        if (run / "metrics.json").exists() and _same_run(run, config, dataset):
            print(f"{name}: reusing finished run {run}")
            metrics = json.loads((run / "metrics.json").read_text())
        else:
            if (run / "config.json").exists() and not _same_run(run, config, dataset):
                raise MentorError(
                    f"{run}: holds a run with other settings or data than this quick start; "
                    "remove it or give another --out"
                )
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
