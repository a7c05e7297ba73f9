"""Grid search over hyper-parameters, selected on the validation split only.

Every combination trains in its own run folder (``<out>/<index>-<key=value,...>-<identity>``);
finished runs whose ``run.json`` records the same identity are reused, so an interrupted search
resumes. The best combination is the one with the highest valid metric; its test metrics are
reported as they are, never used for selection.

A grid too large to train whole can be searched with a budget (``trials``): Optuna's TPE sampler,
seeded, proposes combinations of the same grid in rounds of ``workers``, each round told the valid
metric of the last, until ``trials`` distinct combinations have trained. Given the same grid,
budget and worker count, the proposals are the same on every call, so a sampled search resumes
like a full one.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mentor.config import apply_override, parse_value, resolve_config
from mentor.data.dataset import load_dataset
from mentor.errors import MentorError
from mentor.fsutil import RunLock, atomic_write_text
from mentor.training.runinfo import recorded_identity, run_identity


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    """``["model.n_layers=[1,2]", "model.reg_weight=1e-4"]`` -> ``{key: [values]}``."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        key = key.strip()
        if not sep or not key:
            raise MentorError(f"--grid {spec!r}: expected KEY=[v1,v2,...]")
        if key in grid:
            raise MentorError(
                f"--grid {key}: the key is given twice; list all values in one --grid"
            )
        value = parse_value(raw)
        grid[key] = value if isinstance(value, list) else [value]
        if not grid[key]:
            raise MentorError(f"--grid {key}: the list of values is empty")
    return grid


def distinct_values(values: list[Any]) -> list[Any]:
    """``values`` without repeats (values equal as ``==`` compares them), in their order."""
    return [value for i, value in enumerate(values) if value not in values[:i]]


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of the grid, in a stable order."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def run_label(combo: dict[str, Any]) -> str:
    """A readable, file-system-safe label of one combination (``n_layers=2,reg_weight=0.001``)."""
    text = ",".join(
        f"{k.split('.')[-1]}={json.dumps(v, separators=(',', ':'))}" for k, v in combo.items()
    )
    return _UNSAFE.sub("_", text)[:80] or "default"


_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


def _started(run: Path) -> bool:
    """Whether ``run`` holds a finished or checkpointed run."""
    return (run / "metrics.json").exists() or (run / "checkpoint.safetensors").exists()


def _run_folder(out: Path, name: str, identity: str, log: Callable[[str], None]) -> Path:
    """The folder of the run with ``identity`` in ``out``: an earlier one whose ``run.json``
    records that identity (or one where no run started), else a new ``<name>-<identity>``.

    A folder named with the identity whose run records another (extended by a resume with more
    epochs, or on another device) is no longer the run of that identity and is left alone; the
    new folder then gets a number, ``<name>-2-<identity>``.
    """
    for run in sorted(p for p in out.glob(f"*-{identity}") if p.is_dir()):
        if not _started(run) or recorded_identity(run) == identity:
            return run
        log(
            f"{run.name}: its run.json records another identity (resumed with other settings, "
            "or trained by other code); not reused"
        )
    run, copies = out / f"{name}-{identity}", 1
    while run.exists():
        copies += 1
        run = out / f"{name}-{copies}-{identity}"
    return run


def _failure(run: Path, proc: subprocess.CompletedProcess[str]) -> MentorError:
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    if proc.returncode < 0:
        reason = f"killed by signal {-proc.returncode} (out of memory, or stopped from outside?)"
    elif lines:
        reason = lines[-1].removeprefix("mentor: error: ")
    else:
        reason = f"exited with code {proc.returncode} without a message"
    return MentorError(f"{run}: training failed: {reason}")


def grid_search(
    model: str,
    base: dict[str, Any],
    grid: dict[str, list[Any]],
    out: Path,
    workers: int = 1,
    threads: int = 0,
    log: Callable[[str], None] = print,
    trials: int = 0,
    summary_file: str = "search.json",
) -> dict[str, Any]:
    """Train every combination (``workers`` at a time, each in a subprocess) and pick on valid.

    A combination's folder is ``<out>/<index>-<label>-<identity>``, where the identity hashes the
    resolved configuration, the data's checksums, the code version and the digest of the code
    that computes results (:func:`~mentor.training.runinfo.run_identity`). A finished run whose
    ``run.json`` records the same identity is reused, even from an earlier grid; a half-trained
    one is resumed; anything trained with other settings, data or code, or resumed since with
    more epochs or on another device, is never reused. A value listed twice in ``grid`` counts
    once.

    Args:
        model: registered model name.
        base: nested configuration shared by all runs (sections data/model/train/eval).
        grid: dotted key -> values.
        out: search folder.
        workers: runs in parallel; ``threads`` torch threads per run (0 = default).
        trials: when above 0 and below the number of combinations, train only this many,
            proposed by a seeded TPE sampler (:func:`_sampled`); 0 trains the whole grid.
        summary_file: the summary's file name in ``out``.
    Returns:
        The summary written to ``out/<summary_file>`` (``grid_size``: the grid's distinct
        combinations, ``runs``: those trained).
    """
    if workers < 1:
        raise MentorError(f"--workers must be at least 1, got {workers}")
    if threads < 0:
        raise MentorError(f"--threads must be at least 0, got {threads}")
    if trials < 0:
        raise MentorError(f"--trials must be at least 0 (0: the whole grid), got {trials}")
    if out.exists() and not out.is_dir():
        raise MentorError(f"{out}: exists and is not a folder; give a search folder with --out")
    grid = {key: distinct_values(values) for key, values in grid.items()}
    combos = combinations(grid)
    configs = []
    for combo in combos:
        tree = copy.deepcopy(base)
        for key, value in combo.items():
            apply_override(tree, f"{key}={json.dumps(value)}")
        if threads:
            apply_override(tree, f"train.threads={threads}")
        config = resolve_config(model, tree)  # validates before any training
        if not config.data.path:
            raise MentorError("--data is required: an MMRec-layout data folder")
        config.data.path = str(Path(config.data.path).expanduser().absolute())
        configs.append(config)
    fingerprints: dict[tuple[str, str], dict[str, str]] = {}
    for config in configs:
        key = (config.data.path, json.dumps(config.data.modalities))
        if key not in fingerprints:
            fingerprints[key] = load_dataset(config.data.path, config.data.modalities).fingerprint()
    identities = [
        run_identity(c, fingerprints[(c.data.path, json.dumps(c.data.modalities))]) for c in configs
    ]
    metric = configs[0].eval.valid_metric

    def train(index: int) -> dict[str, Any]:
        combo, config, identity = combos[index], configs[index], identities[index]
        run = _run_folder(out, f"{index:03d}-{run_label(combo)}", identity, log)
        if not (run / "metrics.json").exists():
            config_file = out / f".config-{identity}.json"
            atomic_write_text(config_file, json.dumps(config.to_dict()))
            cmd = [sys.executable, "-m", "mentor.cli", "train", "--quiet"]
            if (run / "checkpoint.safetensors").exists():
                cmd += ["--resume", str(run)]
                if threads:  # a resumed run may use another thread count
                    cmd += ["--set", f"train.threads={threads}"]
            else:
                cmd += ["--config", str(config_file), "--out", str(run)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True)
            finally:
                config_file.unlink(missing_ok=True)
            if proc.returncode != 0:
                raise _failure(run, proc)
        metrics = json.loads((run / "metrics.json").read_text())
        log(f"{run.name}: valid {metric} {metrics['valid'].get(metric, float('nan')):.4f}")
        return {"params": combo, "run": run.name, **metrics}

    def score(result: dict[str, Any]) -> float:
        return float(result["valid"].get(metric, float("-inf")))

    # combinations that compute the same thing (same identity) train once
    canonical = [identities.index(identity) for identity in identities]
    distinct = len(set(canonical))

    with RunLock(out), ThreadPoolExecutor(max_workers=workers) as pool:

        def run(indices: list[int]) -> list[dict[str, Any]]:
            todo = list(dict.fromkeys(canonical[i] for i in indices))
            trained = dict(zip(todo, pool.map(train, todo), strict=True))
            return [{**trained[canonical[i]], "params": combos[i]} for i in indices]

        if 0 < trials < distinct:
            log(f"{model}: {trials} of {distinct} distinct combinations, proposed by TPE on valid")
            results = _sampled(grid, combos, canonical, trials, workers, run, score)
        else:
            results = run(sorted(set(canonical)))
        best = max(results, key=score)
        summary = {
            "model": model,
            "valid_metric": metric,
            "grid_size": distinct,
            "best": best,
            "runs": results,
        }
        atomic_write_text(out / summary_file, json.dumps(summary, indent=2) + "\n")
    return summary


def _sampled(
    grid: dict[str, list[Any]],
    combos: list[dict[str, Any]],
    canonical: list[int],
    trials: int,
    workers: int,
    train: Callable[[list[int]], list[dict[str, Any]]],
    score: Callable[[dict[str, Any]], float],
) -> list[dict[str, Any]]:
    """Train ``trials`` distinct combinations of ``grid`` proposed by Optuna's TPE sampler
    (seed 0), ``workers`` per round, maximising ``score``; results in training order.
    ``canonical[i]`` is the first combination computing the same as combination ``i``.

    Each grid key is a categorical parameter over its value positions, so any value (lists,
    mappings) can be searched. A proposal already trained is told its known score at once and
    does not count; after ``50 * trials`` proposals without reaching the budget (a grid almost
    exhausted) the remaining combinations are taken in grid order.
    """
    try:
        import optuna
    except ImportError:
        raise MentorError(
            "--trials needs Optuna: pip install 'mentor-rec[search]' (or optuna); "
            "or search the whole grid without --trials"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    keys = list(grid)
    position = {
        tuple(grid[k].index(v) for k, v in zip(keys, combo.values(), strict=True)): index
        for index, combo in enumerate(combos)
    }
    sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=min(10, max(1, trials // 2)))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    distributions = {
        k: optuna.distributions.CategoricalDistribution(list(range(len(grid[k])))) for k in keys
    }
    done: dict[int, dict[str, Any]] = {}
    order: list[int] = []
    proposals = 0
    while len(order) < trials:
        batch: list[tuple[Any, int]] = []
        while len(batch) < min(workers, trials - len(order)) and proposals < 50 * trials:
            proposals += 1
            trial = study.ask(distributions)
            index = canonical[position[tuple(trial.params[k] for k in keys)]]
            if index in done:
                study.tell(trial, _finite(score(done[index])))
            elif any(index == queued for _, queued in batch):
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                batch.append((trial, index))
        if not batch:
            batch = [(None, i) for i in sorted(set(canonical)) if i not in done]
            batch = batch[: trials - len(order)]
        for (trial, index), result in zip(batch, train([i for _, i in batch]), strict=True):
            done[index] = result
            order.append(index)
            if trial is not None:
                study.tell(trial, _finite(score(result)))
    return [done[i] for i in order]


def _finite(value: float) -> float:
    """A metric Optuna accepts: a run without the valid metric counts as -1 (worse than any)."""
    return value if value == value and abs(value) != float("inf") else -1.0
