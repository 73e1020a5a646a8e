"""What the history holds: sessions, their final segments and words, and the answers of queries.

Times of segments and words are seconds from the start of the session's audio; times of
sessions (``started_at``, ``ended_at``) are Unix times, so they mean the same after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "Final",
    "HistoryReader",
    "Origin",
    "Page",
    "SearchHit",
    "SessionInfo",
    "SessionSummary",
    "Source",
    "Transcript",
    "Word",
    "preview",
    "query_terms",
]

Source = Literal["stream", "file"]
# Who transcribed a final: the server, or the page in the browser while the server was
# unreachable (uploaded afterwards: POST /api/v1/sessions/{id}/segments).
Origin = Literal["server", "local"]


@dataclass(frozen=True)
class Word:
    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Final:
    """One final segment as delivered to the client (a stream's utterance, a file's segment)."""

    seq: int  # 1, 2, 3... within the session, in delivery order
    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...] = ()  # empty when the transcription had no word timings
    origin: Origin = "server"


@dataclass(frozen=True)
class SessionInfo:
    id: str
    started_at: float
    ended_at: float | None  # None: still streaming, or the server stopped before its end
    model: str
    language: str  # "" when the stream did not say (auto-detection)
    transport: str  # "grpc", "websocket", ...; "" when the caller did not say
    source: Source


@dataclass(frozen=True)
class SessionSummary:
    info: SessionInfo
    segments: int
    duration_s: float  # end of the last final segment
    preview: str  # the start of the text, for listings


@dataclass(frozen=True)
class Transcript:
    info: SessionInfo
    finals: tuple[Final, ...]

    @property
    def text(self) -> str:
        return " ".join(f.text.strip() for f in self.finals if f.text.strip())


@dataclass(frozen=True)
class Page:
    sessions: tuple[SessionSummary, ...]  # newest first
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class SearchHit:
    session: SessionSummary
    final: Final
    snippet: str  # the segment's text with the matches in [brackets]


class HistoryReader(Protocol):
    """The queries both stores answer (the in-memory cache and the SQLite file)."""

    def page(self, limit: int, offset: int = 0) -> Page: ...

    def search(self, query: str, limit: int) -> list[SearchHit]: ...

    def get(self, session_id: str) -> Transcript: ...


PREVIEW_CHARS = 120


def preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1].rstrip() + "…"


def query_terms(query: str) -> list[str]:
    """The words of a search box query; a trailing ``*`` asks for a prefix."""
    return [t for t in query.split() if t.strip('"*')]
