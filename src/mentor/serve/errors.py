"""The errors of the serving layer that the HTTP app turns into status codes."""

from __future__ import annotations

from mentor.errors import MentorError


class UnknownIdError(MentorError):
    """An item id that is not in the bundle (the server answers 404)."""


class DuplicateIdError(MentorError):
    """A new item id that exists already or is given twice (the server answers 409)."""
