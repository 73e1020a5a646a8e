"""Errors of the transcript history (part of the tree in :mod:`audiototext.errors`)."""

from __future__ import annotations

from audiototext.errors import AudioToTextError

__all__ = [
    "BadQueryError",
    "HistoryError",
    "HistoryUnavailableError",
    "SessionNotFoundError",
]


class HistoryError(AudioToTextError):
    """Anything about the transcript history."""


class HistoryUnavailableError(HistoryError):
    """The history file is missing, not a database, damaged, locked or not writable.

    The message names the path and what to do; the server goes on with memory only.
    """


class SessionNotFoundError(HistoryError, LookupError):
    """No session with that id in the history (never kept, deleted, or pruned)."""


class BadQueryError(HistoryError, ValueError):
    """A search query or listing request that cannot be answered as asked (no word to look
    for, a control character, a page past the limit); the message says what to change."""
