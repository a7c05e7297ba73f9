"""The main job: MovieLens-100K -> MMRec layout with features -> train -> table -> export."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from mentor.config import RunConfig, resolve_config
from mentor.data.dataset import load_dataset
from mentor.errors import MentorError
from mentor.paths import cache_dir
from mentor.runs import export_topk, load_run, read_run_config
from mentor.table import format_table
from mentor.training.loop import fit
from mentor.training.runinfo import read_run_info, recorded_identity, run_identity

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


def _same_settings(run: Path, config: RunConfig, fingerprint: dict[str, str]) -> bool:
    """Whether ``run`` was made with ``config`` on the data of checksums ``fingerprint``, by
    whatever code: its stored configuration and data (those it recorded, else the current
    ones) hashed with this code."""
    info = read_run_info(run)
    stored = info["data_fingerprint"] if info else fingerprint
    return run_identity(read_run_config(run), stored) == run_identity(config, fingerprint)


def run_quickstart(out: Path | None, models: list[str], quiet: bool = False) -> dict[str, dict]:
    """Prepare MovieLens-100K (cached), train ``models`` and the popularity baseline, print test
    metrics side by side and export the top-20 of the last model. Returns test metrics by model.

    A run in ``out`` is reused (or, interrupted, resumed) only when its ``run.json`` records the
    identity this code computes for the wanted settings and data; one with the same settings and
    data made by other code (another version, changed model or training code) is trained again,
    and one with other settings or data is refused."""
    from mentor.prepare.movielens import prepare_movielens

    out = out or Path("mentor-quickstart")
    data = prepare_movielens(cache_dir() / "datasets" / "ml-100k-mm", progress=not quiet)
    print(f"data: {data}")
    dataset = load_dataset(data)
    fingerprint = dataset.fingerprint()
    results: dict[str, dict] = {}
    order = ["pop", *[m for m in models if m != "pop"]]
    for name in order:
        run = out / name
        tree = {"data": {"path": str(data.absolute())}, **SETTINGS.get(name, {})}
        config = resolve_config(name, tree)
        ours = recorded_identity(run) == run_identity(config, fingerprint)
        if ours and (run / "metrics.json").exists():
            print(f"{name}: reusing finished run {run}")
            metrics = json.loads((run / "metrics.json").read_text())
        else:
            if (run / "config.json").exists() and not ours:
                if not _same_settings(run, config, fingerprint):
                    raise MentorError(
                        f"{run}: holds a run with other settings or data than this quick start; "
                        "remove it or give another --out"
                    )
                print(f"{name}: {run} was trained by other mentor code; training it again")
                shutil.rmtree(run)
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
