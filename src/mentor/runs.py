"""Loading finished runs (configuration, data set, best-valid model) for evaluation and export."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mentor.config import RunConfig, resolve_config
from mentor.data.dataset import Dataset, check_distinct_ids, load_dataset
from mentor.errors import MentorError
from mentor.eval.context import build_model
from mentor.eval.evaluator import Evaluator
from mentor.fsutil import atomic_path
from mentor.hardware import resolve_device
from mentor.models.base import Recommender
from mentor.paths import cache_dir
from mentor.semantic import SemanticGraphCache
from mentor.training.loop import BEST, load_weights
from mentor.training.runinfo import check_run_data


@dataclass
class LoadedRun:
    """A trained run ready to score."""

    config: RunConfig
    dataset: Dataset
    model: Recommender
    device: torch.device
    evaluator: Evaluator


def read_run_config(run: Path) -> RunConfig:
    """The resolved configuration stored in ``run/config.json``."""
    if not run.is_dir():
        raise MentorError(f"{run}: not a run folder; give a folder made by `mentor train`")
    path = run / "config.json"
    if not path.exists():
        raise MentorError(f"{run}: no config.json; is this a run folder made by `mentor train`?")
    try:
        tree = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MentorError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MentorError(f"{path}: cannot read ({exc})") from None
    if not isinstance(tree, dict):
        raise MentorError(f"{path}: expected a mapping of sections; the file is damaged")
    name = tree.pop("model_name", None)
    if not name:
        raise MentorError(f"{path}: field 'model_name' is missing")
    try:
        return resolve_config(name, tree)
    except MentorError as exc:
        raise MentorError(f"{path}: {exc}") from None


def load_run(run: Path, device: str = "cpu", data: Path | None = None) -> LoadedRun:
    """Rebuild a run's model from ``best.safetensors`` (the best-valid state).

    Args:
        run: the run folder.
        device: where to score.
        data: the data folder, when it moved since training.
    """
    config = read_run_config(run)
    if data is not None:
        config.data.path = str(data)
    dataset = load_dataset(config.data.path, config.data.modalities)
    check_run_data(run, dataset)
    dev = resolve_device(device)
    model = build_model(config, dataset, dev, SemanticGraphCache(cache_dir() / "graphs"))
    best = run / BEST
    if best.exists():
        load_weights(model, best)
    elif model.trainable:
        raise MentorError(f"{run}: no {BEST}; the run has not finished an evaluated epoch")
    evaluator = Evaluator(
        dataset,
        config.eval.topk,
        config.eval.batch_users,
        config.eval.mask_valid_at_test,
        config.eval.score_budget_mb,
    )
    return LoadedRun(config, dataset, model, dev, evaluator)


def export_topk(loaded: LoadedRun, k: int, out: Path) -> int:
    """Write the top-``k`` of every user with train interactions as TSV ``user rank item``.

    Items are masked as for the test split; ids are the data set's external ids. Written to a
    temporary file and renamed. Returns the number of users written.
    """
    if k < 1:
        raise MentorError(f"--k must be at least 1, got {k}")
    dataset = loaded.dataset
    check_distinct_ids(dataset)
    users = np.unique(dataset.train[:, 0])
    topk = loaded.evaluator.rank(loaded.model, users, k, loaded.device, "test").numpy()
    exclude = loaded.evaluator.exclude["test"]
    short = (dataset.n_items - np.diff(exclude.indptr)) < k  # users with fewer than k candidates
    user_ids = np.asarray(dataset.user_ids, dtype=object)
    item_ids = np.asarray(dataset.item_ids, dtype=object)
    with atomic_path(out) as tmp, open(tmp, "w") as handle:
        handle.write("user\trank\titem\n")
        ranks = np.arange(1, topk.shape[1] + 1)
        for row, user in enumerate(users):
            items = topk[row]
            if short[user]:
                items = items[~np.isin(items, exclude[user].indices)]
            uid = user_ids[user]
            lines = (f"{uid}\t{r}\t{i}\n" for r, i in zip(ranks, item_ids[items], strict=False))
            handle.write("".join(lines))
    return len(users)
