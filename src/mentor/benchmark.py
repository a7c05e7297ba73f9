"""``mentor benchmark``: rerun a comparison table, each model chosen on valid, over several seeds.

For every model: its search space (MMRec's grid by default) is searched with
:func:`mentor.search.grid_search`, the best combination is chosen on the **valid** split, and that
configuration is trained again with ``seeds`` seeds (the search's own run counts as the first
seed). Every model is selected on one valid metric (``select_metric``, Recall@20 by default):
its early stopping and best epoch as well as its configuration, whatever its own default
(MENTOR's official configuration selects on Recall@10). All runs of a model live in
``<out>/runs/<model>/`` and are reused by identity, so an interrupted benchmark resumes where it
stopped.

Writes ``results.json``, ``results.csv``, ``results.md`` and ``results.png`` (test Recall@20, mean
with sample-sd error bars) in ``out``; the tables record the selection metric and every setting
given to all runs over the models' defaults (``--epochs``, ``--set``, ``--config``). The chart needs
matplotlib (the ``plot`` extra): without it one log line says so before any training and the
tables are written all the same.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import statistics
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from mentor.config import TrainConfig, apply_override, resolve_config
from mentor.data.dataset import load_dataset
from mentor.errors import MentorError
from mentor.extras import missing, require
from mentor.fsutil import RunLock, atomic_path, atomic_write_text
from mentor.registry import get_model, model_names
from mentor.search import HEARTBEAT, distinct_values, grid_search
from mentor.training.runinfo import inert_keys

DEFAULT_SEED = TrainConfig().seed
SELECT_METRIC = "recall@20"
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
CHART = "the chart results.png"


def parse_models(text: str) -> list[str]:
    """``"all"`` or comma-separated names -> registered names (validated, in order, unique)."""
    if text.strip().lower() == "all":
        return model_names()
    names = [get_model(n.strip()).name for n in text.split(",") if n.strip()]
    if not names:
        raise MentorError("--models: give model names separated by commas, or 'all'")
    return list(dict.fromkeys(names))


def grids_for(models: list[str], grid: str) -> dict[str, dict[str, list[Any]]]:
    """Each model's search space: ``default`` (its registered MMRec grid), ``none`` (its fixed
    defaults) or a JSON/YAML file mapping model name -> ``{dotted key: [values]}`` (a value
    listed twice counts once)."""
    if grid == "default":
        return {m: dict(get_model(m).grid) for m in models}
    if grid == "none":
        return {m: {} for m in models}
    path = Path(grid)
    if not path.exists():
        raise MentorError(f"--grid {grid}: use 'default', 'none' or a JSON/YAML file")
    try:
        tree = json.loads(path.read_text()) if path.suffix == ".json" else None
    except json.JSONDecodeError as exc:
        raise MentorError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if tree is None:
        tree = _read_yaml(path)
    if not isinstance(tree, dict):
        raise MentorError(f"{path}: expected a mapping of model name -> grid")
    out: dict[str, dict[str, list[Any]]] = {}
    for model in models:
        entry = tree.get(model, tree.get(get_model(model).name, {}))
        if not isinstance(entry, dict):
            raise MentorError(f"{path}: the grid of '{model}' must map dotted keys to lists")
        out[model] = {
            k: distinct_values(v) if isinstance(v, list) else [v] for k, v in entry.items()
        }
        empty = [k for k, v in out[model].items() if not v]
        if empty:
            raise MentorError(f"{path}: {model}: the values of '{empty[0]}' are an empty list")
    return out


def _read_yaml(path: Path) -> Any:
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        raise MentorError(f"{path}: YAML needs PyYAML (pip install pyyaml); or use JSON") from None
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise MentorError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None


def _stats(values: list[float]) -> tuple[float, float]:
    mean = statistics.mean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(
    model: str,
    search: dict[str, Any],
    seeded: list[dict[str, Any]],
    grid: dict[str, list[Any]] | None = None,
    inert: Collection[str] = (),
) -> dict[str, Any]:
    """One results row: test metrics as mean and sample sd over seeds, plus the chosen setting
    (``chosen``: the values of the keys the grid varies; ``fixed``: its one-valued keys;
    ``inert``: varied keys that change nothing in the chosen configuration, as its model config's
    ``inert_keys()`` names them, so every value of theirs gives the same runs)."""
    params = search["best"]["params"]
    fixed = {k for k, values in (grid or {}).items() if len(values) == 1}
    row: dict[str, Any] = {
        "model": model,
        "chosen": {k: v for k, v in params.items() if k not in fixed and k not in inert},
        "fixed": {k: v for k, v in params.items() if k in fixed},
        "inert": [k for k in params if k in inert and k not in fixed],
        "grid_runs": len(search["runs"]),
        "grid_size": search.get("grid_size", len(search["runs"])),
        "seeds": [r["seed"] for r in seeded],
        "valid_metric": search["valid_metric"],
    }
    for metric in METRICS:
        values = [r["test"][metric] for r in seeded if metric in r["test"]]
        if values:
            row[f"test_{metric}"], row[f"test_{metric}_sd"] = _stats(values)
    row["best_epoch"] = statistics.mean(r["best_epoch"] for r in seeded)
    row["seconds_per_epoch"] = statistics.median(r["seconds_per_epoch"] for r in seeded)
    peaks = [r.get("peak_memory_mb", {}).get("rss") for r in seeded]
    row["peak_rss_mb"] = max((p for p in peaks if p is not None), default=None)
    row["runs"] = [r["run"] for r in seeded]
    return row


def _cell(row: dict[str, Any], metric: str) -> str:
    if f"test_{metric}" not in row:
        return "-"
    return f"{row[f'test_{metric}']:.4f} ± {row[f'test_{metric}_sd']:.4f}"


def _chosen(row: dict[str, Any]) -> str:
    cells = [f"{k.split('.')[-1]}={v}" for k, v in row["chosen"].items()]
    cells += [f"{k.split('.')[-1]}=any" for k in row.get("inert", [])]
    return ", ".join(cells) or ("a one-point grid" if row.get("fixed") else "defaults")


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    """The results table in Markdown."""
    lines = [
        header,
        "",
        "| model | test R@10 | test R@20 | test N@10 | test N@20 | chosen on valid (grid runs) "
        "| best epoch | s/epoch | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        peak = f"{row['peak_rss_mb'] / 1024:.2f} GB" if row["peak_rss_mb"] else "-"
        lines.append(
            f"| {row['model']} | {_cell(row, 'recall@10')} | {_cell(row, 'recall@20')} | "
            f"{_cell(row, 'ndcg@10')} | {_cell(row, 'ndcg@20')} | {_chosen(row)} "
            f"({_searched(row)}) | {row['best_epoch']:.0f} | {row['seconds_per_epoch']:.2f} | "
            f"{peak} |"
        )
    return "\n".join(lines) + "\n"


def _searched(row: dict[str, Any]) -> str:
    """``12`` for a whole grid, ``16 of 320`` for a sampled one."""
    size = row.get("grid_size", row["grid_runs"])
    return str(row["grid_runs"]) if size == row["grid_runs"] else f"{row['grid_runs']} of {size}"


def to_csv(rows: list[dict[str, Any]], overrides: dict[str, Any]) -> str:
    """The results as CSV, one row per model; ``overrides`` (the settings every run was given,
    see :func:`overrides_of`) as JSON in a column of every row."""
    fields = ["model"]
    for metric in METRICS:
        fields += [f"test_{metric}", f"test_{metric}_sd"]
    fields += [
        "chosen",
        "fixed",
        "inert",
        "grid_runs",
        "grid_size",
        "valid_metric",
        "overrides",
        "seeds",
        "best_epoch",
        "seconds_per_epoch",
        "peak_rss_mb",
    ]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                **row,
                "chosen": json.dumps(row["chosen"]),
                "fixed": json.dumps(row.get("fixed", {})),
                "inert": json.dumps(row.get("inert", [])),
                "overrides": json.dumps(overrides),
            }
        )
    return out.getvalue()


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Bar chart of test Recall@20 with sample-sd error bars.

    Raises:
        MentorError: matplotlib (the ``plot`` extra) is not installed.
    """
    require("matplotlib", "plot", CHART)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if "test_recall@20" in r]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(shown) + 1.5), 3.6))
    ax.bar(
        [r["model"] for r in shown],
        [r["test_recall@20"] for r in shown],
        yerr=[r["test_recall@20_sd"] for r in shown],
        capsize=4,
        color="#4c72b0",
    )
    ax.set_ylabel("test Recall@20 (mean ± sd)")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)


def run_benchmark(
    data: Path,
    models: list[str],
    seeds: int,
    out: Path,
    grid: str = "default",
    workers: int = 1,
    threads: int = 0,
    base: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
    trials: int = 0,
    select_metric: str = SELECT_METRIC,
    storage: str | None = None,
    prune: str = "none",
    heartbeat: int = HEARTBEAT,
) -> list[dict[str, Any]]:
    """Search each model on valid, train the winner with ``seeds`` seeds, write the results.

    With ``storage`` every search (and every seeds' training) is a shared Optuna study (see
    :mod:`mentor.search`): the same benchmark started on several machines shares the work, and
    each writes the same tables. ``prune`` stops search trials early (never the seeds' runs).

    Args:
        data: an MMRec-layout folder.
        models: registered names.
        seeds: seeds per chosen configuration (>= 1): the default seed, then 1, 2, ...
        out: the benchmark folder (resumable).
        grid: ``default``, ``none`` or a file (see :func:`grids_for`).
        workers: runs in parallel; ``threads`` torch threads per run (0 = default).
        base: shared settings (sections data/model/train/eval), e.g. ``{"train": {"epochs": 5}}``;
            recorded with the tables as ``overrides``.
        trials: a grid larger than this is searched with this many TPE-proposed combinations
            (see :func:`mentor.search.grid_search`); 0 searches every grid whole.
        select_metric: the valid metric every model's training (early stopping, best epoch) and
            configuration are selected on; ``base`` may not set ``eval.valid_metric``.
        storage, prune, heartbeat: see :func:`mentor.search.grid_search`; without ``storage``,
            ``prune`` keeps each model's study in ``runs/<model>/study.db``.
    Returns:
        One row per model (as in ``results.json``).
    Raises:
        MentorError: bad settings, or ``trials`` without Optuna (the ``search`` extra) for a
            grid that needs it, before any run.
    """
    if seeds < 1:
        raise MentorError(f"--seeds must be at least 1, got {seeds}")
    if out.exists() and not out.is_dir():
        raise MentorError(f"{out}: exists and is not a folder; give a benchmark folder with --out")
    grids = grids_for(models, grid)
    if trials > 0 and any(_size(g) > trials for g in grids.values()):
        require("optuna", "search", "--trials")
    if storage is not None or prune != "none":
        require("optuna", "search", "--storage" if storage is not None else "--prune")
    shared = _shared_settings(models, base or {}, data, select_metric)
    table = {
        "data_fingerprint": load_dataset(data, shared["data"].get("modalities")).fingerprint(),
        "select_metric": shared["eval"]["valid_metric"],
        "overrides": overrides_of(base or {}),
    }
    earlier = _earlier_rows(out, data, models, table, log)
    no_chart = missing("matplotlib", "plot", CHART)
    if no_chart:
        log(f"{no_chart}; writing the tables without it")
    seed_list = [DEFAULT_SEED, *[s for s in range(1, seeds + 5) if s != DEFAULT_SEED]][:seeds]
    rows = []
    with RunLock(out) if storage is None else contextlib.nullcontext():  # shared: many workers
        for model in models:
            tree = json.loads(json.dumps(shared))
            runs = out / "runs" / model
            log(f"{model}: searching {_size(grids[model])} combination(s) on valid")
            search = grid_search(
                model,
                tree,
                grids[model] or {},
                runs,
                workers,
                threads,
                log,
                trials=trials,
                storage=storage,
                prune=prune,
                heartbeat=heartbeat,
            )
            chosen = tree
            for key, value in search["best"]["params"].items():
                apply_override(chosen, f"{key}={json.dumps(value)}")
            log(f"{model}: best on valid {search['best']['params'] or 'defaults'}; seeds")
            seeded = grid_search(
                model,
                chosen,
                {"train.seed": seed_list},
                runs,
                workers,
                threads,
                log,
                summary_file="seeds.json",
                storage=storage,
                heartbeat=heartbeat,
            )
            for run, seed in zip(seeded["runs"], seed_list, strict=True):
                run["seed"] = seed
            inert = inert_keys(resolve_config(model, chosen))
            rows.append(summarise(model, search, seeded["runs"], grids[model], inert))
            _write([*earlier, *rows], out, data, table, chart=no_chart is None)
    return rows


def _shared_settings(
    models: list[str], base: dict[str, Any], data: Path, select_metric: str
) -> dict[str, Any]:
    """The settings of every run: ``base`` (checked), the data folder and ``select_metric`` as
    every model's ``eval.valid_metric`` (normalised, e.g. ``Recall@20`` -> ``recall@20``)."""
    if not models:
        raise MentorError("--models: give at least one model name, or 'all'")
    tree = json.loads(json.dumps(base))
    resolve_config(models[0], tree)  # sections and types of the shared settings, checked first
    if "valid_metric" in tree.get("eval", {}):
        raise MentorError(
            "eval.valid_metric: a benchmark selects every model on one valid metric; "
            "give it with --select-metric"
        )
    tree.setdefault("eval", {})["valid_metric"] = select_metric
    tree.setdefault("data", {})["path"] = str(data)
    try:
        tree["eval"]["valid_metric"] = resolve_config(models[0], tree).eval.valid_metric
    except MentorError as exc:
        raise MentorError(f"--select-metric {select_metric}: {exc}") from None
    return tree


def overrides_of(base: dict[str, Any]) -> dict[str, Any]:
    """The settings ``base`` (sections of settings, checked) gives every run, as dotted keys
    (``{"train.epochs": 150}``); the data folder, which the benchmark sets, left out."""
    flat = {
        f"{section}.{key}": value
        for section, values in base.items()
        for key, value in values.items()
    }
    flat.pop("data.path", None)
    return flat


_TABLE_CHANGES = {
    "data_fingerprint": "other data files",
    "select_metric": "another selection metric",
    "overrides": "other overrides",
}


def _earlier_rows(
    out: Path, data: Path, models: list[str], table: dict[str, Any], log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Rows of models that an earlier call wrote to ``out/results.json`` and this call does not
    rerun (kept in the tables, so models can be benchmarked one call at a time), when that call's
    ``table`` settings were the same: the data's checksums (not its location: a moved folder
    keeps its rows, files changed in place lose them), the selection metric and the overrides;
    otherwise none, with a log line. Another data set's benchmark is refused."""
    path = out / "results.json"
    if not path.exists():
        return []
    try:
        payload = json.loads(path.read_text())
        earlier_data, rows = payload["data"], payload["rows"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise MentorError(
            f"{path}: not a results file of mentor benchmark; remove it or use another --out"
        ) from None
    same_data = payload.get("data_fingerprint") == table["data_fingerprint"]
    if not same_data and Path(earlier_data).resolve() != data.resolve():
        raise MentorError(
            f"{path}: holds a benchmark of {earlier_data}, not {data}; use another --out"
        )
    kept = [row for row in rows if row.get("model") not in models]
    changed = [_TABLE_CHANGES[key] for key, value in table.items() if payload.get(key) != value]
    if kept and changed:
        names = ", ".join(row.get("model", "?") for row in kept)
        log(
            f"{path}: the rows of {names} were made with {', '.join(changed)}; left out of "
            "the new table (benchmark those models again to compare them)"
        )
        return []
    return kept


def _size(grid: dict[str, list[Any]]) -> int:
    """Number of combinations of ``grid`` (1 for an empty grid: the defaults)."""
    size = 1
    for values in grid.values():
        size *= len(values)
    return size


def _write(
    rows: list[dict[str, Any]], out: Path, data: Path, table: dict[str, Any], chart: bool
) -> None:
    """``results.json`` (with the ``table`` settings), ``.csv``, ``.md`` and, with ``chart``,
    ``.png`` (without, an earlier chart is removed: it would show other numbers)."""
    from mentor.hardware import describe_machine

    machine = describe_machine()
    counts = sorted({len(row["seeds"]) for row in rows})
    seeds = "/".join(str(c) for c in counts)
    overrides = table["overrides"]
    given = ", ".join(f"{key}={json.dumps(value)}" for key, value in overrides.items())
    header = (
        f"Test metrics as mean ± sample sd over {seeds} seed(s) on {data.name}; every model's "
        f"epoch and configuration chosen on valid {table['select_metric']} only. "
        f"Machine: {machine}.\n\n"
        f"Settings given to every run (over each model's defaults): {given or 'none'}."
    )
    payload = {"data": str(data), **table, "seeds": counts[-1], "machine": machine, "rows": rows}
    atomic_write_text(out / "results.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_text(out / "results.csv", to_csv(rows, overrides))
    atomic_write_text(out / "results.md", markdown(rows, header))
    if chart:
        plot(rows, out / "results.png", f"{data.name}: test Recall@20 over {seeds} seed(s)")
    else:
        (out / "results.png").unlink(missing_ok=True)
