"""The recent transcripts in memory: always on, bounded, what the server lists without a file.

Holds the newest ``max_sessions`` sessions that produced text (the oldest finished one goes
first when full) and up to ``max_finals`` finals of each (the oldest of a very long session
go first). Thread-safe: the event loop records, the REST API reads from worker threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import replace

from audiototext.history.errors import SessionNotFoundError
from audiototext.history.records import (
    ANY_TIME,
    Final,
    Page,
    SearchHit,
    SessionInfo,
    SessionSummary,
    TimeRange,
    Transcript,
    preview,
    search_terms,
)

__all__ = ["RecentTranscripts"]


class _Entry:
    def __init__(self, info: SessionInfo, max_finals: int) -> None:
        self.info = info
        self.finals: deque[Final] = deque(maxlen=max_finals)
        self.client_ids: set[str] = set()  # local segments uploaded (POST .../segments)

    def summary(self) -> SessionSummary:
        return SessionSummary(
            info=self.info,
            segments=len(self.finals),
            duration_s=self.finals[-1].end_s if self.finals else 0.0,
            preview=preview(" ".join(f.text.strip() for f in list(self.finals)[:8])),
        )


class RecentTranscripts:
    def __init__(self, max_sessions: int = 100, max_finals: int = 10_000) -> None:
        if max_sessions < 1 or max_finals < 1:
            raise ValueError("the recent-transcript cache needs room for one session and final")
        self.max_sessions = max_sessions
        self.max_finals = max_finals
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # oldest first
        self._lock = threading.Lock()

    def add_final(self, info: SessionInfo, final: Final) -> None:
        with self._lock:
            entry = self._entries.get(info.id)
            if entry is None:
                entry = self._entries[info.id] = _Entry(info, self.max_finals)
                self._evict()
            entry.finals.append(final)

    def has(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._entries

    def add_local(
        self,
        session_id: str,
        segments: list[tuple[str, Final]],
        info: SessionInfo | None = None,
    ) -> list[Final]:
        """Append a page's local segments ``(client_id, final)`` to a session held here (or
        made from ``info``), numbered after its last final, or with the seq given (not 0) when
        the file numbered them; one already uploaded under its client id is skipped. The
        finals added."""
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None and info is not None:
                entry = self._entries[session_id] = _Entry(info, self.max_finals)
                self._evict()
            if entry is None:
                raise SessionNotFoundError(f"no session {session_id!r} among recent transcripts")
            added = []
            for client_id, final in segments:
                if client_id in entry.client_ids:
                    continue
                entry.client_ids.add(client_id)
                seq = final.seq or (entry.finals[-1].seq + 1 if entry.finals else 1)
                kept = replace(final, seq=seq, origin="local")
                entry.finals.append(kept)
                added.append(kept)
            return added

    def end_session(self, session_id: str, ended_at: float) -> None:
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is not None:
                entry.info = replace(entry.info, ended_at=ended_at)

    def is_live(self, session_id: str) -> bool:
        with self._lock:
            entry = self._entries.get(session_id)
            return entry is not None and entry.info.ended_at is None

    def holds_whole(self, session_id: str) -> bool:
        """Whether every final of the session is here (none dropped for ``max_finals``)."""
        with self._lock:
            entry = self._entries.get(session_id)
            return entry is not None and bool(entry.finals) and entry.finals[0].seq == 1

    def delete(self, session_id: str) -> None:
        with self._lock:
            if self._entries.pop(session_id, None) is None:
                raise SessionNotFoundError(f"no session {session_id!r} among recent transcripts")

    def _evict(self) -> None:
        while len(self._entries) > self.max_sessions:
            # The oldest finished session goes; if every one is live, the oldest of all.
            victim = next(
                (k for k, e in self._entries.items() if e.info.ended_at is not None),
                next(iter(self._entries)),
            )
            del self._entries[victim]

    def page(self, limit: int, offset: int = 0, when: TimeRange = ANY_TIME) -> Page:
        with self._lock:
            kept = [e for e in self._entries.values() if when.holds(e.info.started_at)]
            # The file's order: newest first, then by id.
            newest = sorted(kept, key=lambda e: (-e.info.started_at, e.info.id))
            rows = tuple(e.summary() for e in newest[offset : offset + limit])
            return Page(rows, len(newest), limit, offset)

    def search(self, query: str, limit: int) -> list[SearchHit]:
        """Finals holding every word of ``query`` (case-insensitive substrings), newest session
        first: memory has no index, and a few hundred sessions need none."""
        terms = [t.strip('"*').lower() for t in search_terms(query)]
        hits: list[SearchHit] = []
        with self._lock:
            for entry in sorted(self._entries.values(), key=lambda e: -e.info.started_at):
                summary = entry.summary()
                for final in entry.finals:
                    folded = final.text.lower()
                    if all(t in folded for t in terms):
                        hits.append(SearchHit(summary, final, _mark(final.text, terms)))
                        if len(hits) >= limit:
                            return hits
        return hits

    def get(self, session_id: str) -> Transcript:
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None:
                raise SessionNotFoundError(
                    f"no session {session_id!r} among recent transcripts (the server keeps "
                    f"the last {self.max_sessions} in memory; --history keeps them all)"
                )
            return Transcript(entry.info, tuple(entry.finals))


def _mark(text: str, terms: list[str]) -> str:
    """``text`` with the first occurrence of each term in [brackets], as FTS5 snippets are."""
    spans = []
    folded = text.lower()
    for term in terms:
        at = folded.find(term)
        if at >= 0:
            spans.append((at, at + len(term)))
    out, pos = [], 0
    for start, end in sorted(spans):
        if start < pos:
            continue
        out += [text[pos:start], "[", text[start:end], "]"]
        pos = end
    out.append(text[pos:])
    return "".join(out)
