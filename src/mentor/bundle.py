"""``mentor bundle``: everything a trained run needs to answer queries, in plain files.

The layout is described in :mod:`mentor.serve.format`. The bundle is written to a temporary
folder next to ``out`` and renamed when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mentor import __version__
from mentor.data.dataset import check_distinct_ids
from mentor.errors import MentorError
from mentor.fsutil import file_mode, file_sha256
from mentor.models.base import Recommender
from mentor.runs import load_run
from mentor.serve import coldstart
from mentor.serve.format import (
    CHECKSUMS,
    CONFIG,
    DATA_ITEM_META,
    FILES,
    FORMAT,
    HISTORY,
    IDS,
    IMAGES,
    ITEM_META,
    MANIFEST,
    METRICS,
    TENSORS,
    VERSION,
)
from mentor.training.runinfo import read_run_info


def cold_start_payload(model: Recommender) -> tuple[dict[str, Any], dict[str, np.ndarray]] | str:
    """``(bundle.json cold_start entry, cold.* tensors)`` of a model whose new-item encoder a
    bundle carries (MENTOR), else the reason ``add_items`` will give."""
    from mentor.models.dualgnn import DualGNN
    from mentor.models.mentor import MENTOR

    if type(model).new_item_representations is Recommender.new_item_representations:
        return f"model {model.name} {model.cold_start_unavailable}; it cannot add new items"
    if not isinstance(model, (MENTOR, DualGNN)):
        return (
            f"model {model.name} can embed new items, but bundles do not carry its encoder "
            "yet (only MENTOR's and DualGNN's); retrain the items in"
        )
    tensors: dict[str, np.ndarray] = {}
    dims = {}
    for m in model.modalities:
        branch = model.branches[m]
        dims[m] = int(branch.mlp.in_features)
        for key, value in (
            ("w1", branch.mlp.weight),
            ("b1", branch.mlp.bias),
            ("w2", branch.mlp_1.weight),
            ("b2", branch.mlp_1.bias),
        ):
            tensors[f"cold.{m}.{key}"] = _numpy(value)
    semantic = model.semantic_weights if isinstance(model, MENTOR) else {}
    for m in semantic:
        tensors[f"cold.{m}.catalogue"] = _numpy(model.features[m])
    tables: list[torch.Tensor] = []
    if isinstance(model, MENTOR):
        with torch.no_grad():
            tables = model.semantic_tables()
    for i, table in enumerate(tables):
        tensors[f"cold.table.{i}"] = _numpy(table)
    meta = {
        "method": coldstart.METHOD,
        "modalities": list(model.modalities),
        "dims": dims,
        "combine": "concat" if isinstance(model, MENTOR) else "sum",
        "weights": dict(semantic),
        "k": int(model.config.knn_k),
        "layers": len(tables),
        "negative_slope": 0.01,
    }
    return meta, tensors


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")


def _item_metadata(dataset: Any, tmp: Path) -> list[str]:
    """Write ``item_meta.json`` (and copies of local images under ``images/``) into the bundle
    being built in ``tmp`` from the data folder's ``item_meta.jsonl``, one JSON object per line
    with ``item_id`` and any of ``title``, ``text``, ``image`` (an http(s) URL, or a file path
    relative to the data folder). Returns the bundle files written (none without the file)."""
    source = Path(dataset.path) / DATA_ITEM_META
    if not source.is_file():
        return []
    wanted = {item: row for row, item in enumerate(dataset.item_ids)}
    records: dict[str, dict[str, str]] = {}
    written = [ITEM_META]
    with open(source, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MentorError(f"{source}: line {number}: not JSON ({exc.msg})") from None
            if not isinstance(entry, dict) or not isinstance(entry.get("item_id"), str):
                raise MentorError(f"{source}: line {number}: expected an object with 'item_id'")
            item = entry["item_id"]
            if item not in wanted or item in records:
                continue
            record = {f: str(entry[f]) for f in ("title", "text") if entry.get(f)}
            image = str(entry.get("image") or "")
            if image.startswith(("http://", "https://")):
                record["image"] = image
            elif image:
                path = (source.parent / image).resolve()
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                    name = f"{IMAGES}/{wanted[item]}{path.suffix.lower()}"
                    (tmp / IMAGES).mkdir(exist_ok=True)
                    shutil.copyfile(path, tmp / name)
                    record["image"] = name
                    written.append(name)
            records[item] = record
    (tmp / ITEM_META).write_text(json.dumps({"items": records}, indent=1) + "\n")
    return written


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().to("cpu", torch.float32).numpy())


def write_bundle(run: Path, out: Path, device: str = "cpu", data: Path | None = None) -> Path:
    """Bundle the best-valid model of ``run`` into the new folder ``out``.

    Args:
        run: a run folder made by ``mentor train``.
        out: the bundle folder to create (must not exist yet).
        device: where to compute the final representations.
        data: the data folder, when it moved since training.
    Returns:
        ``out``.
    """
    from safetensors.numpy import save_file

    out = Path(out)
    if out.exists():
        raise MentorError(f"{out}: already exists; give a new folder with --out")
    loaded = load_run(Path(run), device, data)
    model, dataset = loaded.model, loaded.dataset
    check_distinct_ids(dataset)
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        users, items = model.serving_representations()
    cold = cold_start_payload(model)
    seen = loaded.evaluator.exclude["test"]
    popularity = np.bincount(dataset.train[:, 1], minlength=dataset.n_items)
    tensors = {
        "users": _numpy(users),
        "items": _numpy(items),
        "seen_indptr": seen.indptr.astype(np.int64),
        "seen_indices": seen.indices.astype(np.int64),
        "popularity": popularity.astype(np.float32),
        "trained": (np.bincount(dataset.train[:, 0], minlength=dataset.n_users) > 0).astype(
            np.uint8
        ),
    }
    if not isinstance(cold, str):
        tensors.update(cold[1])
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "mentor_version": __version__,
        "model": model.name,
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        "dim": int(tensors["users"].shape[1]),
        "seen": "train" + (" + valid" if loaded.config.eval.mask_valid_at_test else ""),
        "cold_start": cold if isinstance(cold, str) else cold[0],
        "fold_in": model.fold_in,
    }
    info = read_run_info(Path(run))
    training_data = info["data_fingerprint"] if info else dataset.fingerprint()
    metrics_path = Path(run) / METRICS
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        save_file(tensors, str(tmp / TENSORS), metadata={"format": FORMAT})
        texts = {
            MANIFEST: manifest,
            IDS: {"users": list(dataset.user_ids), "items": list(dataset.item_ids)},
            CONFIG: json.loads((Path(run) / CONFIG).read_text()),
            METRICS: metrics,
        }
        for name, tree in texts.items():
            (tmp / name).write_text(json.dumps(tree, indent=1) + "\n")
        written = [*FILES, *_item_metadata(dataset, tmp)]
        if (Path(run) / HISTORY).is_file():
            shutil.copyfile(Path(run) / HISTORY, tmp / HISTORY)
            written.append(HISTORY)
        checksums = {
            "training_data": training_data,
            "files": {name: file_sha256(tmp / name) for name in written},
        }
        (tmp / CHECKSUMS).write_text(json.dumps(checksums, indent=1) + "\n")
        for name in (*written, CHECKSUMS):
            os.chmod(tmp / name, file_mode())
        if (tmp / IMAGES).is_dir():
            os.chmod(tmp / IMAGES, file_mode() | (file_mode() & 0o444) >> 2)
        os.chmod(tmp, file_mode() | (file_mode() & 0o444) >> 2)  # x where r, as mkdir gives
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
