"""What a run records about itself: its identity, the code that made it and its data's checksums.

A run's identity hashes everything that determines its results: the resolved configuration, the
data's checksums, the package version and a digest of the source of the modules that compute
results (:func:`code_digest`). ``run.json`` stores it, so a search reuses a run only when it was
trained as the search would train it; a resume that changes what the run computes (more epochs,
another device, other code) records itself there and gives the run a new identity. ``run.json``
also lets resume, evaluate, export and search refuse data that differs from what a run was
trained on (instead of a size-mismatch traceback, or silently reusing a run on other data).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from mentor import __version__
from mentor.config import RunConfig
from mentor.data.dataset import Dataset
from mentor.errors import MentorError
from mentor.fsutil import atomic_write_text

RUN_INFO = "run.json"
# Settings that do not change what a run computes, left out of its identity.
_NOT_IDENTITY = {
    ("train", "threads"),
    ("eval", "batch_users"),
    ("eval", "score_budget_mb"),
    ("data", "path"),
}
# The parts of the package (relative to it) whose source determines a run's results: the models,
# the loop, graphs, losses, data loading and sampling, metrics, configuration defaults, the
# registry, the semantic graphs and the number-format choice of the hardware module.
RESULT_CODE = (
    "models",
    "training",
    "graph",
    "data",
    "eval",
    "losses.py",
    "config.py",
    "registry.py",
    "semantic.py",
    "hardware.py",
)


@functools.cache
def code_digest() -> str:
    """SHA-256 of the source of the modules that determine a run's results (:data:`RESULT_CODE`),
    by path relative to the package; computed once per process."""
    root = Path(__file__).resolve().parents[1]
    files: list[Path] = []
    for part in RESULT_CODE:
        path = root / part
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    lines = [
        f"{file.relative_to(root).as_posix()} {hashlib.sha256(file.read_bytes()).hexdigest()}\n"
        for file in files
    ]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def inert_keys(config: RunConfig) -> list[str]:
    """Dotted keys (``model.<name>``) of the settings that change nothing as ``config`` stands,
    as its model config's optional ``inert_keys()`` names them (e.g. SLMRec's ``reg`` without
    ``use_reg``)."""
    names = getattr(config.model, "inert_keys", None)
    return [f"model.{key}" for key in (names() if names else [])]


def _short_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def run_identity(config: RunConfig, fingerprint: dict[str, str]) -> str:
    """Short hash of everything that determines a run's results: the resolved configuration
    (without thread count, evaluation batch size and data location, nor the model settings that
    its config's ``inert_keys()`` names as unread), the data's checksums, the package version and
    the digest of the code that computes results (:func:`code_digest`)."""
    tree = config.to_dict()
    for section, key in _NOT_IDENTITY:
        tree[section].pop(key, None)
    for key in inert_keys(config):
        tree["model"].pop(key.removeprefix("model."), None)
    payload = {
        "config": tree,
        "data": fingerprint,
        "version": __version__,
        "code": code_digest(),
    }
    return _short_hash(payload)


def write_run_info(run: Path, config: RunConfig, dataset: Dataset) -> None:
    """Record a new run's identity, the code that trains it and the checksums of its data."""
    fingerprint = dataset.fingerprint()
    info = {
        "identity": run_identity(config, fingerprint),
        "mentor_version": __version__,
        "code_digest": code_digest(),
        "data_path": str(Path(dataset.path).absolute()),
        "data_fingerprint": fingerprint,
    }
    atomic_write_text(run / RUN_INFO, json.dumps(info, indent=2) + "\n")


def record_resume(run: Path, config: RunConfig) -> None:
    """Record in ``run.json`` a resume of ``run`` under ``config`` that changes what it computes.

    A resume with the run's own settings and code (an interrupted run continued) changes
    nothing. Any other (more epochs, another device, other code) is appended to ``resumes``
    (its own identity, epochs, version and code digest) and the run's ``identity`` becomes a
    hash of the one before and the resume's, so it matches no run trained in one go: a search
    never takes an extended run for the run of its grid point. Runs without ``run.json`` (made
    before it existed) are left as they are.
    """
    info = read_run_info(run)
    if info is None:
        return
    current = run_identity(config, info["data_fingerprint"])
    resumes = info.get("resumes", [])
    if current == (resumes[-1]["identity"] if resumes else info.get("identity")):
        return
    resumes.append(
        {
            "identity": current,
            "epochs": config.train.epochs,
            "mentor_version": __version__,
            "code_digest": code_digest(),
        }
    )
    info["resumes"] = resumes
    info["identity"] = _short_hash([info.get("identity"), current])
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


def recorded_identity(run: Path) -> str | None:
    """The identity ``run.json`` records for ``run`` (``None`` for runs made before it did)."""
    info = read_run_info(run)
    return info.get("identity") if info else None


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
