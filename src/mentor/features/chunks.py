"""Batched, resumable feature extraction: finished chunks are kept in a work folder."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class EncodeStats:
    """What one :func:`encode_in_chunks` call did.

    Attributes:
        items: rows of the result.
        computed: rows encoded by this call (the others came from finished chunks).
        seconds: wall time spent encoding them.
    """

    items: int
    computed: int
    seconds: float

    @property
    def items_per_second(self) -> float | None:
        """Throughput of the encoding done by this call (None when nothing was encoded)."""
        return self.computed / self.seconds if self.computed and self.seconds > 0 else None

    def as_dict(self) -> dict[str, Any]:
        """For meta.json and benchmark files."""
        rate = self.items_per_second
        return {
            "items": self.items,
            "encoded_now": self.computed,
            "seconds": round(self.seconds, 3),
            "items_per_second": None if rate is None else round(rate, 2),
        }


def content_key(encoder_id: str, inputs: Sequence[str]) -> str:
    """A short hash of the encoder identity and every input string (in order)."""
    digest = hashlib.sha256(encoder_id.encode())
    for value in inputs:
        digest.update(b"\x00")
        digest.update(str(value).encode("utf-8", "replace"))
    return digest.hexdigest()[:20]


def encode_in_chunks(
    inputs: Sequence[Any],
    encode: Callable[[list[Any]], np.ndarray],
    work_dir: Path,
    key: str,
    chunk_size: int = 512,
    desc: str = "encoding",
    progress: bool = True,
) -> tuple[np.ndarray, EncodeStats]:
    """Encode ``inputs`` chunk by chunk, keeping every finished chunk on disk.

    Chunk ``j`` (rows ``j*chunk_size ...``) is saved as ``work_dir/key/chunk-<j>.npy`` (written
    to a temporary name, then renamed), so a run that is interrupted resumes from the first
    missing chunk when called again with the same ``key`` (see :func:`content_key`).

    Args:
        inputs: one entry per item.
        encode: ``list of entries -> float array [len, d]``; called once per missing chunk.
        work_dir: folder for the chunks (created).
        key: identifies the encoder and inputs; another key never reuses these chunks.
        chunk_size: entries per chunk.
        desc: progress bar label.
        progress: show a tqdm bar (unit: items).

    Returns:
        (float32 [len(inputs), d], stats).
    """
    from tqdm.auto import tqdm

    folder = Path(work_dir) / key
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "info.json").write_text(
        json.dumps({"items": len(inputs), "chunk_size": chunk_size}), "utf-8"
    )
    n = len(inputs)
    parts: list[np.ndarray] = []
    computed = 0
    seconds = 0.0
    bar = tqdm(total=n, desc=desc, unit="item", disable=not progress, leave=False)
    try:
        for index, start in enumerate(range(0, n, chunk_size)):
            batch = list(inputs[start : start + chunk_size])
            path = folder / f"chunk-{index:06d}.npy"
            part = _load_chunk(path, len(batch))
            if part is None:
                began = time.perf_counter()
                part = np.asarray(encode(batch), dtype=np.float32)
                seconds += time.perf_counter() - began
                if part.ndim != 2 or part.shape[0] != len(batch):
                    raise ValueError(
                        f"the encoder returned shape {part.shape} for {len(batch)} inputs"
                    )
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                with open(tmp, "wb") as handle:
                    np.save(handle, part)
                os.replace(tmp, path)
                computed += len(batch)
            parts.append(part)
            bar.update(len(batch))
    finally:
        bar.close()
    feat = np.concatenate(parts, axis=0) if parts else np.zeros((0, 0), dtype=np.float32)
    return feat, EncodeStats(items=n, computed=computed, seconds=seconds)


def _load_chunk(path: Path, rows: int) -> np.ndarray | None:
    """A finished chunk with ``rows`` rows, or None (absent or damaged: encode it again)."""
    if not path.is_file():
        return None
    try:
        part = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return part if part.ndim == 2 and part.shape[0] == rows else None
