"""Checkpoints without pickle: tensors in safetensors, everything else as JSON metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file

from mentor.errors import MentorError
from mentor.fsutil import atomic_path, atomic_write_text

__all__ = [
    "atomic_write_text",
    "load_tensors",
    "optimizer_tensors",
    "restore_optimizer",
    "save_tensors",
]


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Atomically save ``tensors`` (CPU copies, contiguous) with JSON ``meta``."""
    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(data, str(tmp), metadata={"meta": json.dumps(meta)})


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a file written by :func:`save_tensors`: (tensors, meta)."""
    if not path.exists():
        raise MentorError(f"{path}: no such checkpoint; was the run trained to the end?")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {}).get("meta", "{}"))
        return load_file(str(path)), meta
    except Exception as exc:  # safetensors raises its own SafetensorError on truncated files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MentorError(
            f"{path}: unreadable checkpoint ({first}); the file is damaged: retrain, or delete "
            "it and resume from an intact one"
        ) from None


def optimizer_tensors(
    optimizer: torch.optim.Optimizer, prefix: str = "optim"
) -> tuple[dict[str, torch.Tensor], Any]:
    """Flatten an optimizer state into tensors named ``{prefix}.{index}.{key}`` plus JSON-ready
    parameter groups."""
    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"{prefix}.{index}.{key}"] = torch.as_tensor(value)
    return tensors, state["param_groups"]


def restore_optimizer(
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    groups: Any,
    prefix: str = "optim",
) -> None:
    """Inverse of :func:`optimizer_tensors` (same ``prefix``)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith(f"{prefix}."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})
