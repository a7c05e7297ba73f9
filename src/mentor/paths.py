"""Where mentor keeps caches."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache folder: ``$MENTOR_CACHE``, else ``$XDG_CACHE_HOME/mentor``, else
    ``~/.cache/mentor``."""
    if os.environ.get("MENTOR_CACHE"):
        return Path(os.environ["MENTOR_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "mentor"
