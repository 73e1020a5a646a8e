"""Transcript history: recent sessions in memory, optionally kept in SQLite.

* :mod:`.records` — the value objects (a session, its final segments, words, pages, hits).
* :mod:`.recent` — :class:`RecentTranscripts`, the bounded in-memory cache (always on).
* :mod:`.store` — :class:`HistoryStore`, SQLite in WAL mode with FTS5 search and retention.
* :mod:`.writer` — :class:`HistoryWriter`, the single writer thread the server commits through.
* :mod:`.export` — a transcript as txt, srt, vtt (the writers of :mod:`audiototext.store`) or json.

Both stores answer the same :class:`~.records.HistoryReader` calls, so the CLI (on the file)
and the REST API (on whichever the server has) share one code path.
"""

from __future__ import annotations

from audiototext.history.errors import (
    HistoryError,
    HistoryUnavailableError,
    SessionNotFoundError,
)
from audiototext.history.records import (
    Final,
    HistoryReader,
    Page,
    SearchHit,
    SessionInfo,
    SessionSummary,
    Transcript,
    Word,
)

__all__ = [
    "Final",
    "HistoryError",
    "HistoryReader",
    "HistoryUnavailableError",
    "Page",
    "SearchHit",
    "SessionInfo",
    "SessionNotFoundError",
    "SessionSummary",
    "Transcript",
    "Word",
]
