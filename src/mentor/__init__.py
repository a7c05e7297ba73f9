"""mentor: multimodal recommendation (MENTOR, AAAI 2025) and its baselines, trained and served.

The top-level names are imported lazily, so ``import mentor`` stays cheap (no torch) and loading
a bundle for serving never pulls in training code:

- ``mentor.train``, ``mentor.resume``, ``mentor.evaluate``, ``mentor.export``: the Python twins
  of the CLI verbs (:mod:`mentor.api`);
- ``mentor.Recommender``: a trained bundle answering queries (:mod:`mentor.serve`).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.3.1"

_LAZY = {
    "train": "mentor.api",
    "resume": "mentor.api",
    "evaluate": "mentor.api",
    "export": "mentor.api",
    "Recommender": "mentor.serve",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mentor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
