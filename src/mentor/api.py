"""Python twins of the CLI verbs, for notebooks and scripts: train, resume, evaluate, export.

The CLI calls these functions, so both behave the same: the same validation, the same one-line
:class:`~mentor.errors.MentorError` on bad input, the same run folders.

Example::

    import mentor

    metrics = mentor.train("lightgcn", "data/baby", "runs/lgcn", n_layers=3, epochs=50)
    mentor.evaluate("runs/lgcn", split="test")["recall@20"]
    mentor.export("runs/lgcn", "runs/lgcn/top20.tsv", k=20)
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from mentor.config import (
    RunConfig,
    apply_override,
    load_config_file,
    resolve_config,
)
from mentor.errors import MentorError, did_you_mean, warn_stderr
from mentor.extras import require

# Settings that may change when a run is resumed: where it runs and reads, not what it computes.
RESUMABLE = {
    "train.epochs",
    "train.device",
    "train.threads",
    "data.path",
    "eval.batch_users",
    "eval.score_budget_mb",
}


def _plain(value: Any, name: str) -> Any:
    """``value`` with NumPy scalars and arrays turned into Python numbers and lists (so that
    ``epochs=np.int64(5)`` works); anything else JSON cannot hold is a TypeError naming ``name``."""
    import numpy as np

    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [_plain(v, name) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, name) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(
        f"setting '{name}': expected a number, string, bool or list, got {type(value).__name__}"
    )


def _route(model: str, settings: Mapping[str, Any]) -> list[str]:
    """Turn keyword settings into dotted ``section.key=value`` overrides.

    A key may be dotted (``"model.n_layers"``) or bare (``n_layers``); a bare key goes to the one
    section (model, train, eval, data) that has it, and a key two sections share must be dotted.
    """
    import json

    from mentor.config import DataConfig, EvalConfig, TrainConfig
    from mentor.registry import get_model

    owners = {
        "model": get_model(model).config_cls,
        "train": TrainConfig,
        "eval": EvalConfig,
        "data": DataConfig,
    }
    fields = {sec: {f.name for f in dataclasses.fields(cls)} for sec, cls in owners.items()}
    out = []
    for key, value in settings.items():
        if "." in key:
            dotted = key
        else:
            found = [sec for sec, names in fields.items() if key in names]
            if not found:
                every = sorted(set().union(*fields.values()))
                raise MentorError(
                    f"unknown setting '{key}' for model '{model}'{did_you_mean(key, every)}"
                )
            if len(found) > 1:
                raise MentorError(
                    f"setting '{key}' exists in sections {', '.join(found)}; write it dotted, "
                    f"e.g. '{found[0]}.{key}'"
                )
            dotted = f"{found[0]}.{key}"
        out.append(f"{dotted}={json.dumps(_plain(value, key))}")
    return out


def build_config(
    model: str | None,
    data: str | Path | None = None,
    config: str | Path | Mapping[str, Any] | None = None,
    overrides: Iterable[str] = (),
    settings: Mapping[str, Any] | None = None,
) -> RunConfig:
    """The resolved, validated configuration of a new run.

    Args:
        model: registered model name (or ``None`` to take ``model_name`` from ``config``).
        data: the data folder (stored as an absolute path).
        config: a JSON/YAML file or a mapping with sections data/model/train/eval.
        overrides: ``section.key=value`` strings, as ``--set`` takes them.
        settings: keyword settings (bare or dotted keys), see :func:`train`.
    """
    if config is None:
        tree: dict[str, Any] = {}
    elif isinstance(config, Mapping):
        tree = copy.deepcopy(dict(config))
    else:
        tree = load_config_file(Path(config))
    name = model or tree.get("model_name")
    tree.pop("model_name", None)
    if not name:
        raise MentorError("a model name is required (--model; see `mentor models`)")
    if not isinstance(name, str):
        raise MentorError(f"model_name: expected a model name string, got {name!r}")
    for assignment in [*overrides, *_route(name, settings or {})]:
        apply_override(tree, assignment)
    if data is not None:
        tree.setdefault("data", {})
        if not isinstance(tree["data"], dict):
            raise MentorError(
                f"section 'data': expected a mapping of settings, got {tree['data']!r}"
            )
        tree["data"]["path"] = str(data)
    resolved = resolve_config(name, tree)
    if not resolved.data.path:
        raise MentorError("--data is required: an MMRec-layout data folder")
    resolved.data.path = str(Path(resolved.data.path).expanduser().absolute())
    return resolved


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and prefix.count(".") < 1:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resume_config(
    run: Path, overrides: Iterable[str] = (), settings: Mapping[str, Any] | None = None
) -> RunConfig:
    """The stored configuration of ``run`` with the allowed changes applied.

    Only :data:`RESUMABLE` settings may change (more epochs, another device or thread count,
    a moved data folder, another evaluation batch size); a change to anything that shapes the
    model or its training is refused with the name of the setting.
    """
    from mentor.runs import read_run_config

    stored = read_run_config(run)
    tree = stored.to_dict()
    tree.pop("model_name")
    for assignment in [*overrides, *_route(stored.model_name, settings or {})]:
        apply_override(tree, assignment)
    new = resolve_config(stored.model_name, tree)
    before, after = _flatten(stored.to_dict()), _flatten(new.to_dict())
    for key in sorted(set(before) | set(after)):
        if key not in RESUMABLE and before.get(key) != after.get(key):
            raise MentorError(
                f"--resume {run}: {key} was {before.get(key)!r} and would become "
                f"{after.get(key)!r}; only {', '.join(sorted(RESUMABLE))} may change on resume "
                "(start a new run with --out for other settings)"
            )
    new.data.path = str(Path(new.data.path).expanduser().absolute())
    return new


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise MentorError(f"{out}: exists and is not a folder; give a new run folder with --out")
    if (out / "metrics.json").exists() or (out / "checkpoint.safetensors").exists():
        raise MentorError(
            f"{out}: already holds a run; use --resume {out} to continue it or another --out"
        )


def _fit(
    config: RunConfig,
    out: Path,
    resume: bool,
    progress: bool,
    log: Callable[[str], None],
    tensorboard: str | Path | None = None,
) -> dict[str, Any]:
    from mentor.data.dataset import load_dataset
    from mentor.training.loop import fit

    if tensorboard is not None:
        require("tensorboard", "tensorboard", "--tensorboard")
    dataset = load_dataset(config.data.path, config.data.modalities)
    for warning in dataset.warnings:
        warn_stderr(warning)
    if tensorboard is None:
        return fit(config, dataset, out, resume=resume, progress=progress, log=log)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tensorboard))

    def scalars(row: dict[str, Any]) -> None:
        """One TensorBoard scalar per number of the epoch's history row."""
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float):
                writer.add_scalar(key, value, row["epoch"])
        writer.flush()

    try:
        return fit(
            config, dataset, out, resume=resume, progress=progress, log=log, on_epoch=scalars
        )
    finally:
        writer.close()


def train(
    model: str,
    data: str | Path,
    out: str | Path,
    *,
    config: str | Path | Mapping[str, Any] | None = None,
    overrides: Iterable[str] = (),
    progress: bool = True,
    log: Callable[[str], None] = print,
    tensorboard: str | Path | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Train ``model`` on the MMRec-layout folder ``data`` into the new run folder ``out``.

    Args:
        model: registered model name (``mentor models``).
        data: the data folder.
        out: the run folder to create.
        config: optional JSON/YAML file or mapping with data/model/train/eval sections.
        overrides: ``section.key=value`` strings (as ``--set``).
        progress: show progress bars.
        log: where progress lines go when ``progress`` is off.
        tensorboard: a folder for TensorBoard event files (every epoch's loss terms and
            validation metrics; the ``tensorboard`` extra).
        **settings: hyper-parameters by name, e.g. ``n_layers=3, learning_rate=1e-3,
            epochs=50, seed=1``; a dotted name (``**{"model.reg_weight": 1e-4}``) picks the
            section explicitly.
    Returns:
        The run's ``metrics.json`` as a dict (``valid``, ``test``, ``best_epoch``, ...).
    """
    resolved = build_config(model, data, config, overrides, settings)
    out = Path(out)
    _prepare_out(out)
    return _fit(resolved, out, resume=False, progress=progress, log=log, tensorboard=tensorboard)


def resume(
    run: str | Path,
    *,
    overrides: Iterable[str] = (),
    progress: bool = True,
    log: Callable[[str], None] = print,
    tensorboard: str | Path | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Continue an interrupted run (or extend a finished one with ``epochs=``).

    Only ``epochs``, ``device``, ``threads``, ``data.path`` (a moved folder with the same files)
    and ``eval.batch_users`` may change; the data must be the data the run was trained on.
    """
    run = Path(run)
    resolved = resume_config(run, overrides, settings)
    return _fit(resolved, run, resume=True, progress=progress, log=log, tensorboard=tensorboard)


def evaluate(
    run: str | Path, split: str = "test", device: str = "cpu", data: str | Path | None = None
) -> dict[str, float]:
    """Metrics of a run's best-valid model on ``split`` ("valid" or "test")."""
    from mentor.runs import load_run

    if split not in ("valid", "test"):
        raise MentorError(f"split must be 'valid' or 'test', got {split!r}")
    loaded = load_run(Path(run), device, Path(data) if data else None)
    return loaded.evaluator.evaluate(loaded.model, split, loaded.device)


def export(
    run: str | Path,
    out: str | Path,
    k: int = 20,
    device: str = "cpu",
    data: str | Path | None = None,
) -> int:
    """Write every user's top-``k`` (external ids, train items excluded) as TSV ``user rank item``.

    Returns the number of users written.
    """
    import numpy as np

    from mentor.fsutil import check_output_file
    from mentor.runs import export_topk, load_run

    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise MentorError(f"--k must be at least 1 (a whole number), got {k!r}")
    k = int(k)
    check_output_file(Path(out))
    loaded = load_run(Path(run), device, Path(data) if data else None)
    return export_topk(loaded, k, Path(out))


__all__ = ["build_config", "evaluate", "export", "resume", "resume_config", "train"]
