"""Grid search over hyper-parameters, selected on the validation split only.

Every combination trains in its own run folder (``<out>/<index>-<key=value,...>``); finished
combinations are skipped, so an interrupted search resumes. The best combination is the one with
the highest valid metric; its test metrics are reported as they are, never used for selection.
"""

from __future__ import annotations

import copy
import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mentor.config import apply_override, parse_value, resolve_config
from mentor.errors import MentorError
from mentor.train.checkpoint import atomic_write_text


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    """``["model.n_layers=[1,2]", "model.reg_weight=1e-4"]`` -> ``{key: [values]}``."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        if not sep:
            raise MentorError(f"--grid {spec!r}: expected KEY=[v1,v2,...]")
        value = parse_value(raw)
        grid[key.strip()] = value if isinstance(value, list) else [value]
        if not grid[key.strip()]:
            raise MentorError(f"--grid {key}: the list of values is empty")
    return grid


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of the grid, in a stable order."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def run_name(index: int, combo: dict[str, Any]) -> str:
    """Folder name of one combination."""
    text = ",".join(f"{k.split('.')[-1]}={v}" for k, v in combo.items())
    return f"{index:03d}-{text}"


def _is_run_of(run: Path, suffix: str) -> bool:
    """Whether folder ``run`` is ``<index>-<suffix>``."""
    index, _, rest = run.name.partition("-")
    return index.isdigit() and rest == suffix


def grid_search(
    model: str,
    base: dict[str, Any],
    grid: dict[str, list[Any]],
    out: Path,
    workers: int = 1,
    threads: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every combination (``workers`` at a time, each in a subprocess) and pick on valid.

    Args:
        model: registered model name.
        base: nested configuration shared by all runs (sections data/model/train/eval).
        grid: dotted key -> values.
        out: search folder.
        workers: runs in parallel; ``threads`` torch threads per run (0 = default).
    Returns:
        The summary written to ``out/search.json``.
    """
    combos = combinations(grid)
    trees = []
    for combo in combos:
        tree = copy.deepcopy(base)
        for key, value in combo.items():
            apply_override(tree, f"{key}={json.dumps(value)}")
        if threads:
            tree.setdefault("train", {})["threads"] = threads
        config = resolve_config(model, copy.deepcopy(tree))  # validates before any training
        trees.append((tree, config))
    out.mkdir(parents=True, exist_ok=True)
    metric = trees[0][1].eval.valid_metric

    def train(index: int) -> dict[str, Any]:
        combo = combos[index]
        tree, _ = trees[index]
        run = out / run_name(index, combo)
        suffix = run.name.split("-", 1)[1]
        done = [p for p in sorted(out.glob(f"*-{suffix}")) if (p / "metrics.json").exists()]
        if done and _is_run_of(done[0], suffix):  # the same combination from an earlier grid
            run = done[0]
        if not (run / "metrics.json").exists():
            config_file = out / f".config-{index:03d}.json"
            atomic_write_text(config_file, json.dumps({"model_name": model, **tree}))
            resume = ["--resume", str(run)] if (run / "checkpoint.safetensors").exists() else []
            cmd = [sys.executable, "-m", "mentor.cli", "train", "--quiet"]
            cmd += resume or ["--config", str(config_file), "--out", str(run)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            config_file.unlink(missing_ok=True)
            if proc.returncode != 0:
                raise MentorError(f"{run}: training failed: {proc.stderr.strip().splitlines()[-1]}")
        metrics = json.loads((run / "metrics.json").read_text())
        log(f"{run.name}: valid {metric} {metrics['valid'].get(metric, float('nan')):.4f}")
        return {"params": combo, "run": run.name, **metrics}

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(train, range(len(combos))))
    best = max(results, key=lambda r: r["valid"].get(metric, float("-inf")))
    summary = {"model": model, "valid_metric": metric, "best": best, "runs": results}
    atomic_write_text(out / "search.json", json.dumps(summary, indent=2) + "\n")
    return summary
