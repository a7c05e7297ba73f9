"""What a run records about itself: the code version and the checksums of its training data.

``run.json`` lets resume, evaluate, export and search refuse data that differs from what a run was
trained on (instead of a size-mismatch traceback, or silently reusing a run on other data).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mentor import __version__
from mentor.data.dataset import Dataset
from mentor.errors import MentorError
from mentor.fsutil import atomic_write_text

RUN_INFO = "run.json"


def write_run_info(run: Path, dataset: Dataset) -> None:
    """Record the code version and the checksums of the data a run is trained on."""
    info = {
        "mentor_version": __version__,
        "data_path": str(Path(dataset.path).absolute()),
        "data_fingerprint": dataset.fingerprint(),
    }
    atomic_write_text(run / RUN_INFO, json.dumps(info, indent=2) + "\n")


def read_run_info(run: Path) -> dict[str, Any] | None:
    """``run.json`` of a run, or ``None`` for runs made before it existed."""
    path = run / RUN_INFO
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError, UnicodeDecodeError) as exc:
        raise MentorError(f"{path}: unreadable ({exc}); the run folder is damaged") from None
    if not isinstance(info, dict) or not isinstance(info.get("data_fingerprint"), dict):
        raise MentorError(f"{path}: no data_fingerprint; the run folder is damaged")
    return info


def check_run_data(run: Path, dataset: Dataset) -> None:
    """Refuse data that differs from what ``run`` was trained on (checksums of every file)."""
    info = read_run_info(run)
    if info is None:
        return
    stored: dict[str, str] = info["data_fingerprint"]
    current = dataset.fingerprint()
    for name in sorted(set(stored) | set(current)):
        if stored.get(name) != current.get(name):
            if name not in current:
                what = f"{name} was part of the data {run} was trained on but is missing here"
            elif name not in stored:
                what = f"{name} was not part of the data {run} was trained on"
            else:
                what = f"{name} changed since {run} was trained"
            raise MentorError(
                f"{dataset.path}: {what} (trained on {info.get('data_path')}); give the original "
                "data with --data, or train a new run"
            )
