"""What the history holds: sessions, their final segments and words, and the answers of queries.

Times of segments and words are seconds from the start of the session's audio; times of
sessions (``started_at``, ``ended_at``) are Unix times, so they mean the same after a restart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

from audiototext.history.errors import BadQueryError

__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "MAX_QUERY_CHARS",
    "Final",
    "HistoryReader",
    "Origin",
    "Page",
    "SearchHit",
    "SessionInfo",
    "SessionSummary",
    "Source",
    "TimeRange",
    "Transcript",
    "Word",
    "check_limit",
    "preview",
    "search_terms",
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


@dataclass(frozen=True)
class TimeRange:
    """Sessions whose start (Unix time) is at or after ``since`` and before ``until``; None:
    no bound on that side."""

    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        for name, value in (("since", self.since), ("until", self.until)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise BadQueryError(f"{name} {value} is not a Unix time (seconds since 1970)")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise BadQueryError(
                f"the time range is empty: since {self.since:g} is not before until {self.until:g}"
            )

    def holds(self, started_at: float) -> bool:
        return (self.since is None or started_at >= self.since) and (
            self.until is None or started_at < self.until
        )


ANY_TIME = TimeRange()


class HistoryReader(Protocol):
    """The queries both stores answer (the in-memory cache and the SQLite file)."""

    def page(self, limit: int, offset: int = 0, when: TimeRange = ANY_TIME) -> Page: ...

    def search(self, query: str, limit: int) -> list[SearchHit]: ...

    def get(self, session_id: str) -> Transcript: ...


PREVIEW_CHARS = 120
DEFAULT_PAGE = 50  # sessions or hits per answer when the API caller does not say
MAX_PAGE = 200  # the most one answer holds; more is paged (offset)
MAX_QUERY_CHARS = 500


def preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1].rstrip() + "…"


def check_limit(limit: int, offset: int = 0, *, what: str = "limit") -> None:
    """Refuse (:class:`BadQueryError`) a page size outside 1..:data:`MAX_PAGE` or an offset
    below 0: a larger page is refused, not cut, so a caller never mistakes it for the end."""
    if not 1 <= limit <= MAX_PAGE:
        raise BadQueryError(
            f"{what} {limit} is not between 1 and {MAX_PAGE}; ask for more pages with offset"
        )
    if offset < 0:
        raise BadQueryError(f"offset {offset} is negative; 0 is the newest session")


def search_terms(query: str) -> list[str]:
    """The words of a search box query (a trailing ``*`` asks for a prefix), or
    :class:`BadQueryError` when there is nothing to search for. Quotes and operators are
    searched as text, never parsed, so no query is a syntax error."""
    if len(query) > MAX_QUERY_CHARS:
        raise BadQueryError(
            f"the query is {len(query)} characters long; keep it under {MAX_QUERY_CHARS}"
        )
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in query):
        raise BadQueryError("the query holds a control character; search for words")
    # The index holds runs of letters and digits: a term with neither could never match,
    # and would make every hit fail (all terms are needed), so it is left out.
    terms = [t for t in query.split() if any(ch.isalnum() for ch in t)]
    if not terms:
        raise BadQueryError(
            f"the query {query.strip()!r} has no word to search for; give letters or digits "
            "(word* matches a prefix)"
            if query.strip()
            else "the query is blank; give a word to search for"
        )
    return terms
