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

A search can also be shared (``storage``): its combinations become the trials of one Optuna study
in an SQLite file or a PostgreSQL database, named from the grid and the runs' identities, and any
number of processes on any number of machines (the same command started on each) work on it.
Each claims one trial at a time, under a lock the storage holds (a PostgreSQL advisory lock, or a
lock file beside the SQLite file), trains it in this process in the folder its identity names,
reports the valid metric after every evaluation (so trials can be pruned early: ``prune``) and
records the run's metrics in the study. A heartbeat marks the trial alive; a trial whose worker
stopped beating (killed, machine lost) is failed by the next worker that looks and claimed
again, resuming from the run's last checkpoint, while a finished run is never trained again. The
summary is built from the study alone, the same way as a single process's, so every worker
writes the same one.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import itertools
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mentor.config import RunConfig, apply_override, parse_value, resolve_config
from mentor.data.dataset import Dataset, load_dataset
from mentor.errors import MentorError
from mentor.extras import require
from mentor.fsutil import RunLock, atomic_write_text, make_folder
from mentor.training.runinfo import recorded_identity, run_identity

if TYPE_CHECKING:
    import optuna

PRUNERS = ("none", "median", "halving")
HEARTBEAT = 30  # seconds between a worker's heartbeats; a trial is failed after two missed


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


@dataclass
class _Plan:
    """The combinations of one search, each resolved, validated and given its run identity."""

    model: str
    out: Path
    grid: dict[str, list[Any]]
    combos: list[dict[str, Any]]
    configs: list[RunConfig]
    identities: list[str]
    canonical: list[int]  # the first combination that computes the same as each one
    trials: int

    @property
    def metric(self) -> str:
        """The valid metric runs are selected on."""
        return self.configs[0].eval.valid_metric

    @property
    def distinct(self) -> list[int]:
        """The combinations that train, one per identity, in grid order."""
        return sorted(set(self.canonical))

    @property
    def sampled(self) -> bool:
        """Whether a budget below the grid's size makes TPE propose the combinations."""
        return 0 < self.trials < len(self.distinct)

    def folder(self, index: int, log: Callable[[str], None]) -> Path:
        """The run folder of combination ``index`` (see :func:`_run_folder`)."""
        name = f"{index:03d}-{run_label(self.combos[index])}"
        return _run_folder(self.out, name, self.identities[index], log)

    def params(self, index: int) -> dict[str, int]:
        """Combination ``index`` as Optuna parameters: each key's value position."""
        combo = self.combos[index]
        return {key: self.grid[key].index(combo[key]) for key in self.grid}

    def point(self, params: dict[str, Any]) -> int:
        """The training combination of Optuna parameters (value positions)."""
        sizes = [len(values) for values in self.grid.values()]
        index = 0
        for key, size in zip(self.grid, sizes, strict=True):
            index = index * size + int(params[key])
        return self.canonical[index]


def _plan(
    model: str,
    base: dict[str, Any],
    grid: dict[str, list[Any]],
    out: Path,
    threads: int,
    trials: int,
) -> _Plan:
    """Resolve every combination of ``grid`` over ``base`` (validated before any training) and
    compute its run identity; a value listed twice counts once."""
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
    canonical = [identities.index(identity) for identity in identities]
    return _Plan(model, out, grid, combos, configs, identities, canonical, trials)


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
    storage: str | None = None,
    prune: str = "none",
    heartbeat: int = HEARTBEAT,
) -> dict[str, Any]:
    """Train every combination and pick on valid.

    A combination's folder is ``<out>/<index>-<label>-<identity>``, where the identity hashes the
    resolved configuration, the data's checksums, the code version and the digest of the code
    that computes results (:func:`~mentor.training.runinfo.run_identity`). A finished run whose
    ``run.json`` records the same identity is reused, even from an earlier grid; a half-trained
    one is resumed; anything trained with other settings, data or code, or resumed since with
    more epochs or on another device, is never reused. A value listed twice in ``grid`` counts
    once.

    Without ``storage`` and ``prune`` this process runs the search alone, ``workers`` runs at a
    time, each in a subprocess. With either, the search is a shared Optuna study (see the
    module's documentation): ``workers`` processes on this machine (this one and
    ``workers - 1`` started here) claim and train its trials, with any other process that runs
    the same search on the same storage.

    Args:
        model: registered model name.
        base: nested configuration shared by all runs (sections data/model/train/eval).
        grid: dotted key -> values.
        out: search folder.
        workers: runs in parallel; ``threads`` torch threads per run (0 = default).
        trials: when above 0 and below the number of combinations, train only this many,
            proposed by a seeded TPE sampler (:func:`_sampled`); 0 trains the whole grid.
        summary_file: the summary's file name in ``out``.
        storage: the shared study's storage: ``sqlite:///FILE`` (or a file path) or
            ``postgresql://USER@HOST:PORT/DATABASE``; ``None`` with ``prune``:
            ``<out>/study.db``.
        prune: ``none`` (every trial trains to its end: the results of an unshared search),
            ``median`` (Optuna's median rule) or ``halving`` (successive halving), both on the
            valid metric after each evaluation.
        heartbeat: seconds between a shared worker's heartbeats; a trial whose worker missed
            two is claimed again.
    Returns:
        The summary written to ``out/<summary_file>`` (``grid_size``: the grid's distinct
        combinations, ``runs``: those trained; a shared search adds ``study``, its name, and
        with ``prune``, ``pruned``: the trials stopped early, not in ``runs``).
    """
    if workers < 1:
        raise MentorError(f"--workers must be at least 1, got {workers}")
    if threads < 0:
        raise MentorError(f"--threads must be at least 0, got {threads}")
    if trials < 0:
        raise MentorError(f"--trials must be at least 0 (0: the whole grid), got {trials}")
    if prune not in PRUNERS:
        raise MentorError(f"--prune {prune}: use one of {', '.join(PRUNERS)}")
    if heartbeat < 1:
        raise MentorError(f"--heartbeat must be at least 1 second, got {heartbeat}")
    if out.exists() and not out.is_dir():
        raise MentorError(f"{out}: exists and is not a folder; give a search folder with --out")
    shared = storage is not None or prune != "none"
    if shared:
        require("optuna", "search", "--storage" if storage is not None else "--prune")
        where = parse_storage(storage, out)
    elif 0 < trials < math.prod(len(distinct_values(v)) for v in grid.values()):
        # TPE may propose (the plan counts distinct runs, at most this): before the data is read
        require("optuna", "search", "--trials")
    plan = _plan(model, base, grid, out, threads, trials)
    with contextlib.nullcontext() if shared else RunLock(out):  # a shared search: many workers
        if shared:
            summary = _shared_search(plan, where, prune, heartbeat, workers, log)
        else:
            summary = _summary(plan, _local_search(plan, workers, threads, log))
        atomic_write_text(out / summary_file, json.dumps(summary, indent=2) + "\n")
    return summary


def _summary(plan: _Plan, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The search's summary: its runs' results and the best on valid."""
    if not results:
        raise MentorError(f"{plan.out}: every trial was pruned; search again with --prune none")
    metric = plan.metric
    return {
        "model": plan.model,
        "valid_metric": metric,
        "grid_size": len(plan.distinct),
        "best": max(results, key=lambda r: _score(r, metric)),
        "runs": results,
    }


def _score(result: dict[str, Any], metric: str) -> float:
    return float(result["valid"].get(metric, float("-inf")))


def _local_search(
    plan: _Plan, workers: int, threads: int, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Train the plan's combinations in this process's subprocesses, ``workers`` at a time
    (a TPE-proposed budget of them with ``plan.sampled``); their results in order."""
    metric = plan.metric

    def train(index: int) -> dict[str, Any]:
        config, identity = plan.configs[index], plan.identities[index]
        run = plan.folder(index, log)
        if not (run / "metrics.json").exists():
            config_file = plan.out / f".config-{identity}.json"
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
        return {"params": plan.combos[index], "run": run.name, **metrics}

    canonical = plan.canonical
    with ThreadPoolExecutor(max_workers=workers) as pool:

        def run(indices: list[int]) -> list[dict[str, Any]]:
            todo = list(dict.fromkeys(canonical[i] for i in indices))
            trained = dict(zip(todo, pool.map(train, todo), strict=True))
            return [{**trained[canonical[i]], "params": plan.combos[i]} for i in indices]

        if plan.sampled:
            log(
                f"{plan.model}: {plan.trials} of {len(plan.distinct)} distinct combinations, "
                "proposed by TPE on valid"
            )
            return _sampled(
                plan.grid,
                plan.combos,
                canonical,
                plan.trials,
                workers,
                run,
                lambda r: _score(r, metric),
            )
        return run(plan.distinct)


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


# --- a search shared through an Optuna study -------------------------------------------------

_DONE, _BUSY, _FAILED = "done", "busy", "failed"


@dataclass(frozen=True)
class Storage:
    """Where a shared study lives."""

    url: str  # the SQLAlchemy URL Optuna opens
    shown: str  # the storage in messages (no password)
    lock: str  # a PostgreSQL URL (advisory lock) or the lock file beside an SQLite file


def parse_storage(spec: str | None, out: Path) -> Storage:
    """The storage ``--storage`` names: ``sqlite:///FILE`` or a file path (an SQLite file),
    ``postgresql://...`` (also ``postgres://``, ``postgresql+psycopg://``; psycopg 3, the
    ``store`` extra); ``None``: ``<out>/study.db``."""
    if spec is not None and spec.startswith(
        ("postgresql://", "postgres://", "postgresql+psycopg://")
    ):
        require("psycopg", "store", "--storage postgresql://")
        rest = spec.split("://", 1)[1]
        shown = re.sub(r"^([^:/@]+):[^@]*@", r"\1:***@", rest)
        return Storage(
            f"postgresql+psycopg://{rest}", f"postgresql://{shown}", f"postgresql://{rest}"
        )
    if spec is None:
        path = out / "study.db"
    elif spec.startswith("sqlite:///"):
        path = Path(spec[len("sqlite:///") :])
    elif "://" in spec or not spec.strip():
        raise MentorError(
            f"--storage {spec!r}: use sqlite:///FILE, a file path or "
            "postgresql://USER@HOST:PORT/DATABASE"
        )
    else:
        path = Path(spec)
    path = path.expanduser().absolute()
    if path.is_dir():
        raise MentorError(
            f"--storage {spec}: {path} is a folder; give a file, e.g. {path / 'study.db'}"
        )
    make_folder(path.parent)
    return Storage(f"sqlite:///{path}", str(path), f"{path}.lock")


@dataclass
class _Job:
    """What a worker of a shared search needs (picklable, for the processes it starts)."""

    plan: _Plan
    storage: Storage
    study: str
    prune: str
    heartbeat: int


def _study_name(plan: _Plan, prune: str) -> str:
    """The study of a search: named from its model, grid keys, the identities of its runs (the
    settings, the data's checksums, the code), the budget and the pruning rule, so that every
    worker of the same search finds the same study and no other search does."""
    payload = {
        "keys": list(plan.grid),
        "sizes": [len(values) for values in plan.grid.values()],
        "runs": [plan.identities[i] for i in plan.canonical],
        "trials": plan.trials if plan.sampled else 0,
        "prune": prune,
    }
    digest = hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]
    return f"mentor-{plan.model}-{digest}"


def _shared_search(
    plan: _Plan,
    storage: Storage,
    prune: str,
    heartbeat: int,
    workers: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Work on the plan's shared study with ``workers`` processes of this machine until no trial
    is left; the summary of the study's finished trials."""
    import multiprocessing

    job = _Job(plan, storage, _study_name(plan, prune), prune, heartbeat)
    make_folder(plan.out)
    log(f"{plan.model}: study {job.study} in {storage.shown}")
    context = multiprocessing.get_context("spawn")
    helpers = [context.Process(target=_helper, args=(job,)) for _ in range(workers - 1)]
    for helper in helpers:
        helper.start()
    try:
        study = _work(job, log)
    except BaseException:
        for helper in helpers:
            helper.terminate()
        raise
    finally:
        for helper in helpers:
            helper.join()
    for helper in helpers:
        if helper.exitcode:
            log(f"worker process {helper.pid} exited with code {helper.exitcode}")
    results, pruned = _study_results(study, plan)
    summary = {**_summary(plan, results), "study": job.study}
    if prune != "none":
        summary["pruned"] = pruned
    return summary


def _helper(job: _Job) -> None:
    """A worker process started by :func:`_shared_search`: user errors as one line."""
    try:
        _work(job, print)
    except MentorError as exc:
        print(f"mentor: error: {exc}", file=sys.stderr)
        sys.exit(2)


@contextlib.contextmanager
def _turn(storage: Storage, key: str) -> Iterator[None]:
    """Hold the study's lock, so that one worker at a time creates the study or claims a
    trial: a PostgreSQL advisory lock on a connection of its own, or a lock on the file beside
    the SQLite file; the server or the operating system releases it when its holder dies."""
    if storage.lock.startswith("postgresql://"):
        import psycopg

        try:
            connection = psycopg.connect(storage.lock, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise MentorError(
                f"--storage {storage.shown}: cannot connect ({_first(exc)})"
            ) from None
        with connection:
            connection.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
            yield
    else:
        import fcntl

        with open(storage.lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def _first(exc: BaseException) -> str:
    """The first line of an exception's message (or its type)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _open(job: _Job) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """The job's study (created by the first worker) and its storage, with heartbeats."""
    import optuna
    import sqlalchemy.exc

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # heartbeats without Study.optimize: this module beats them itself (_heartbeat)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    sqlite = job.storage.url.startswith("sqlite:")
    pruner: optuna.pruners.BasePruner = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "halving": optuna.pruners.SuccessiveHalvingPruner,
    }[job.prune]()
    try:
        storage = optuna.storages.RDBStorage(
            job.storage.url,
            engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else {},
            heartbeat_interval=job.heartbeat,
            grace_period=2 * job.heartbeat,
        )
        study = optuna.create_study(
            storage=storage,
            study_name=job.study,
            direction="maximize",
            pruner=pruner,
            load_if_exists=True,
        )
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError) as exc:
        raise MentorError(f"--storage {job.storage.shown}: {_first(exc)}") from None
    return study, storage


def _work(job: _Job, log: Callable[[str], None]) -> optuna.Study:
    """Claim and train the study's trials until none is left to claim and none is running
    elsewhere (a running one may yet fail and need this worker); returns the study."""
    from mentor.paths import cache_dir
    from mentor.semantic import SemanticGraphCache

    with _turn(job.storage, job.study):
        study, storage = _open(job)
    datasets: dict[tuple[str, str], Dataset] = {}
    cache = SemanticGraphCache(cache_dir() / "graphs")
    while True:
        with _turn(job.storage, job.study):
            claim, busy = _claim(study, storage, job.plan)
        if claim is not None:
            _run_trial(study, storage, *claim, job, log, datasets, cache)
        elif busy:
            time.sleep(min(job.heartbeat, 5))
        else:
            return study


def _states(trials: list[optuna.trial.FrozenTrial], plan: _Plan) -> dict[int, str]:
    """Each claimed combination's state, in the order first claimed: done (a trial completed
    or was pruned), busy (a trial runs) or failed (its trials failed: to be claimed again)."""
    from optuna.trial import TrialState

    rank = {_FAILED: 0, _BUSY: 1, _DONE: 2}
    states: dict[int, str] = {}
    for trial in trials:
        point = _point(trial, plan)
        if point is None:
            continue
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            state = _DONE
        else:
            state = _BUSY if trial.state == TrialState.RUNNING else _FAILED
        if rank[state] >= rank[states.get(point, _FAILED)]:
            states[point] = state
    return states


def _point(trial: optuna.trial.FrozenTrial, plan: _Plan) -> int | None:
    """The combination of a trial; ``None`` for one not asked yet (waiting) or whose worker
    died before it had every parameter."""
    from optuna.trial import TrialState

    if trial.state == TrialState.WAITING or set(trial.params) != set(plan.grid):
        return None
    return plan.point(trial.params)


def _claim(
    study: optuna.Study, storage: optuna.storages.RDBStorage, plan: _Plan
) -> tuple[tuple[optuna.Trial, int] | None, bool]:
    """Under the study's lock: fail the trials of dead workers, then claim a trial (and its
    combination) to train, if any is left; also whether a trial runs elsewhere.

    A whole grid is claimed in grid order; a budget (``plan.sampled``) takes again the
    combinations whose trials failed, then TPE's proposals until ``plan.trials`` combinations
    are claimed. A proposal of a combination done or running is told at once (its known metric,
    or failed) and does not count; after ``50 * plan.trials`` trials the remaining combinations
    are taken in grid order.
    """
    import optuna
    from optuna.trial import TrialState

    optuna.storages.fail_stale_trials(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if "worker" not in trial.user_attrs:  # its worker died while claiming it
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    trials = study.get_trials(deepcopy=False)
    states = _states(trials, plan)
    asked = len(trials)
    distributions = {
        key: optuna.distributions.CategoricalDistribution(list(range(len(values))))
        for key, values in plan.grid.items()
    }
    while True:
        failed = [point for point, state in states.items() if state == _FAILED]
        unclaimed = [point for point in plan.distinct if point not in states]
        if not plan.sampled:
            wanted = min(failed + unclaimed, default=None)
        elif failed:
            wanted = failed[0]
        elif len(states) >= plan.trials:
            wanted = None
        elif asked < 50 * plan.trials:
            wanted = -1  # a proposal of TPE
        else:
            wanted = next(iter(unclaimed), None)
        if wanted is None:
            return None, _BUSY in states.values()
        if wanted >= 0:
            study.enqueue_trial(plan.params(wanted))
        else:
            study.sampler = optuna.samplers.TPESampler(
                seed=asked, n_startup_trials=min(10, max(1, plan.trials // 2))
            )
        trial = study.ask(distributions)
        asked += 1
        point = plan.point(trial.params)
        state = states.get(point, _FAILED)
        if state == _FAILED:
            storage.record_heartbeat(trial._trial_id)
            trial.set_user_attr(
                "worker", f"{socket.gethostname()}:{os.getpid()}"
            )  # claimed: its heartbeat now counts
            return (trial, point), _BUSY in states.values()
        study.tell(trial, **_known(trials, plan, point, state))


def _known(
    trials: list[optuna.trial.FrozenTrial], plan: _Plan, point: int, state: str
) -> dict[str, Any]:
    """How to tell a second trial of a combination done or running: the metric it completed
    with, pruned as it was, or failed (running: its own trial will tell)."""
    from optuna.trial import TrialState

    if state == _DONE:
        for trial in trials:
            if trial.state == TrialState.COMPLETE and _point(trial, plan) == point:
                return {"values": trial.value}
        return {"state": TrialState.PRUNED}
    return {"state": TrialState.FAIL}


def _run_trial(
    study: optuna.Study,
    storage: optuna.storages.RDBStorage,
    trial: optuna.Trial,
    point: int,
    job: _Job,
    log: Callable[[str], None],
    datasets: dict[tuple[str, str], Dataset],
    cache: Any,
) -> None:
    """Train a claimed trial in this process, beating its heartbeat, and tell the study how it
    ended: its run's metrics, pruned, or failed (with the error raised on)."""
    import optuna
    from optuna.trial import TrialState

    from mentor.training.loop import fit

    plan = job.plan
    metric = plan.metric
    config = plan.configs[point]
    run = plan.folder(point, log)
    trial.set_user_attr("run", run.name)
    reported: set[int] = set()

    def report(epoch: int, value: float, prune: bool = True) -> None:
        if epoch in reported:  # a resumed run's epochs trained again, with the same metric
            return
        reported.add(epoch)
        trial.report(value, epoch)
        if prune and trial.should_prune():
            raise optuna.TrialPruned()

    finished = (run / "metrics.json").exists()
    with _heartbeat(storage, trial._trial_id, job.heartbeat):
        try:
            for epoch, value in _history(run, metric) if _started(run) else []:
                report(epoch, value, prune=not finished)
            if finished:
                metrics = json.loads((run / "metrics.json").read_text())
            else:
                key = (config.data.path, json.dumps(config.data.modalities))
                if key not in datasets:
                    datasets[key] = load_dataset(config.data.path, config.data.modalities)
                metrics = fit(
                    config,
                    datasets[key],
                    run,
                    resume=(run / "checkpoint.safetensors").exists(),
                    progress=False,
                    log=_quiet,
                    cache=cache,
                    on_valid=lambda epoch, valid: report(epoch, valid[metric]),
                )
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
            log(f"{run.name}: pruned after epoch {max(reported)}")
            return
        except BaseException as exc:
            with contextlib.suppress(Exception):  # else its heartbeat stops: failed later
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            if isinstance(exc, MentorError):
                raise MentorError(f"{run}: training failed: {exc}") from None
            raise
    try:
        trial.set_user_attr("metrics", metrics)
        study.tell(trial, _finite(_score(metrics, metric)))
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
        log(f"{run.name}: finished after its trial was given up (no heartbeat); kept on disk")
        return
    log(f"{run.name}: valid {metric} {metrics['valid'].get(metric, float('nan')):.4f}")


def _quiet(_: str) -> None:
    """A log that prints nothing (a worker's runs train without per-epoch lines)."""


@contextlib.contextmanager
def _heartbeat(storage: optuna.storages.RDBStorage, trial_id: int, seconds: int) -> Iterator[None]:
    """Record the trial's heartbeat every ``seconds`` from a thread while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(seconds):
            with contextlib.suppress(Exception):  # a beat lost to the network; the next may pass
                storage.record_heartbeat(trial_id)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _history(run: Path, metric: str) -> list[tuple[int, float]]:
    """(epoch, valid metric) of every evaluated epoch in a run's ``history.csv``."""
    path = run / "history.csv"
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    column = f"valid_{metric}"
    return [(int(row["epoch"]), float(row[column])) for row in rows if row.get(column)]


def _study_results(
    study: optuna.Study, plan: _Plan
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The results of the study's finished combinations, in the order an unshared search lists
    them (grid order; a budget's in the order claimed), and its pruned ones."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    done: dict[int, dict[str, Any]] = {}
    pruned: dict[int, dict[str, Any]] = {}
    for trial in trials:
        point = _point(trial, plan)
        if point is None:
            continue
        if trial.state == TrialState.COMPLETE and "metrics" in trial.user_attrs:
            done.setdefault(point, {"run": trial.user_attrs["run"], **trial.user_attrs["metrics"]})
        elif trial.state == TrialState.PRUNED and "run" in trial.user_attrs:
            pruned.setdefault(point, {"run": trial.user_attrs["run"], "epoch": trial.last_step})
    order = list(_states(trials, plan)) if plan.sampled else plan.distinct
    results = [{"params": plan.combos[p], **done[p]} for p in order if p in done]
    return results, [{"params": plan.combos[p], **pruned[p]} for p in order if p in pruned]
