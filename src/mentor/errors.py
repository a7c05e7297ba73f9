"""User-facing errors: one line that names the file or field and says what to do."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable


class MentorError(Exception):
    """An error caused by the user's input; the CLI prints it on one line and exits non-zero.

    Messages are kept to one line: a message built from a library's multi-line text has its line
    breaks folded into spaces.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest option, or ``""``."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


Warn = Callable[[str], None]
"""Receives one line per problem that does not stop the work (e.g. counted skipped lines)."""


def warn_stderr(message: str) -> None:
    """The default :data:`Warn`: ``warning: <message>`` on standard error."""
    print(f"warning: {message}", file=sys.stderr)
