"""Progress reporting for long work (downloads, conversions), independent of any UI.

The core reports through a :class:`ProgressSink`; the CLI renders it with rich, the gRPC
``Models.Pull`` call streams it, tests record it.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NullProgress", "ProgressSink"]


class ProgressSink(Protocol):
    def task(self, key: str, description: str, total: float | None, unit: str = "B") -> None:
        """Start (or restart) a task; ``total`` None means unknown."""

    def advance(self, key: str, amount: float) -> None:
        """Add ``amount`` to a task's completed count."""

    def done(self, key: str) -> None:
        """Mark a task finished."""

    def note(self, message: str) -> None:
        """A one-line status message (fallbacks, cache hits)."""


class NullProgress:
    def task(self, key: str, description: str, total: float | None, unit: str = "B") -> None:
        pass

    def advance(self, key: str, amount: float) -> None:
        pass

    def done(self, key: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass
