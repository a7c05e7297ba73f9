"""The bundle folder layout, shared by the writer (:mod:`mentor.bundle`) and the reader.

A bundle is a folder of plain files, no pickle:

- ``bundle.json``: format name and version, model name, sizes, and how new items are embedded
  (``cold_start``: the method and its settings, or a string saying why new items cannot be
  added).
- ``tensors.safetensors``: ``users`` float32 [U, d], ``items`` float32 [I, d] (scores are
  ``users @ items.T``), ``seen_indptr`` int64 [U + 1] / ``seen_indices`` int64 [nnz] (CSR of the
  items each user was trained on, excluded by default), ``popularity`` float32 [I] (train
  interactions per item, for unknown users) and, for models that embed items from features,
  ``cold.*`` tensors (see :mod:`mentor.serve.coldstart`).
- ``ids.json``: ``{"users": [...], "items": [...]}`` external ids in internal order.
- ``config.json``: the run's resolved configuration; ``metrics.json``: its metrics.
- ``item_meta.json`` (when the data folder has ``item_meta.jsonl``): ``{"items": {id: {"title",
  "text", "image"}}}`` display records, ``image`` an http(s) URL or a file of ``images/`` (local
  images are copied into the bundle, so it stays self-contained).
- ``history.csv`` (when the run has one): per-epoch loss terms and validation metrics.
- ``checksums.json``: SHA-256 of the training data files (``training_data``) and of every file
  of the bundle (``files``), checked when the bundle is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mentor.errors import MentorError

FORMAT = "mentor-bundle"
VERSION = 1
MANIFEST = "bundle.json"
TENSORS = "tensors.safetensors"
IDS = "ids.json"
CONFIG = "config.json"
METRICS = "metrics.json"
CHECKSUMS = "checksums.json"
ITEM_META = "item_meta.json"
IMAGES = "images"
DATA_ITEM_META = "item_meta.jsonl"
HISTORY = "history.csv"
FILES = (MANIFEST, TENSORS, IDS, CONFIG, METRICS)


def read_json(path: Path) -> Any:
    """A JSON file of a bundle, with one-line errors for missing or damaged files."""
    if not path.exists():
        raise MentorError(f"{path}: missing; is {path.parent} a folder made by `mentor bundle`?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MentorError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MentorError(f"{path}: cannot read ({exc})") from None
