"""The transcript history over REST: list, search, one transcript (any export format), delete.

The same queries as ``audiototext history`` (:mod:`audiototext.history`): from the SQLite file
when the server keeps one (``serve --history``), else from the recent transcripts in memory.
Reads open their own read-only connection in a worker thread; deletes go through the server's
single writer.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from audiototext.history.errors import HistoryError
from audiototext.history.export import MEDIA_TYPES, render_transcript
from audiototext.history.records import DEFAULT_PAGE, MAX_PAGE, MAX_QUERY_CHARS, SessionSummary
from audiototext.server.http.context import HttpContext
from audiototext.server.http.errors import ERROR_RESPONSES
from audiototext.server.http.guard import check_token
from audiototext.server.recording import HistoryRecorder, Read, history_status
from audiototext.server.status import Status, StatusError

__all__ = ["history_router"]


class SessionInfoModel(BaseModel):
    id: str
    started_at: float = Field(description="Unix time the session started")
    ended_at: float | None = Field(
        description="Unix time it ended; null: still streaming, or "
        "the server stopped before its end"
    )
    model: str
    language: str = Field(description="'' when the stream did not say")
    transport: str = Field(description="grpc, websocket, ... ('' when unknown)")
    source: Literal["stream", "file"]


class SessionRow(BaseModel):
    session: SessionInfoModel
    segments: int = Field(description="final segments kept")
    duration_s: float = Field(description="end of the last final segment")
    preview: str = Field(description="the start of the text")


class HistoryPage(BaseModel):
    sessions: list[SessionRow] = Field(description="newest first")
    total: int
    limit: int
    offset: int
    persistent: bool = Field(description="true when the server keeps the history in a file")
    alert: str | None = Field(
        description="why the history file asked for (serve --history) is not in use, or "
        "could not be read for this answer (memory answered); null when it is, or when none "
        "was asked for"
    )


class Hit(BaseModel):
    session: SessionRow
    seq: int
    start_s: float
    end_s: float
    text: str
    snippet: str = Field(description="the text with the matched words in [brackets]")


class SearchAnswer(BaseModel):
    query: str
    hits: list[Hit]


def _row(summary: SessionSummary) -> SessionRow:
    return SessionRow(
        session=SessionInfoModel(**asdict(summary.info)),
        segments=summary.segments,
        duration_s=round(summary.duration_s, 3),
        preview=summary.preview,
    )


async def _read(history: HistoryRecorder, query: Any, one: str | None = None) -> Read[Any]:
    """``query(reader)`` on a worker thread, with history errors as HTTP statuses."""
    try:
        return await asyncio.to_thread(history.read, query, one=one)
    except HistoryError as exc:
        raise history_status(exc) from exc


def history_router(ctx: HttpContext) -> APIRouter:
    def token(request: Request) -> None:
        check_token(request, ctx.token)

    router = APIRouter(
        prefix="/api/v1/history",
        tags=["history"],
        responses=ERROR_RESPONSES,
        dependencies=[Depends(token)],
    )

    def history() -> HistoryRecorder:
        if ctx.history is None:
            raise StatusError(Status.UNIMPLEMENTED, "this server keeps no transcript history")
        return ctx.history

    @router.get("", response_model=HistoryPage, summary="Recent transcripts, newest first")
    async def list_sessions(
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> HistoryPage:
        h = history()
        read = await _read(h, lambda r: r.page(limit, offset))
        page = read.value
        return HistoryPage(
            sessions=[_row(s) for s in page.sessions],
            total=page.total,
            limit=limit,
            offset=offset,
            persistent=h.persistent,
            alert=h.alert or read.fallback,
        )

    @router.get("/search", response_model=SearchAnswer, summary="Final segments with words")
    async def search(
        q: Annotated[
            str,
            Query(
                min_length=1,
                max_length=MAX_QUERY_CHARS,
                description="words, all needed; word* for a prefix",
            ),
        ],
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    ) -> SearchAnswer:
        if not q.strip():
            raise StatusError(Status.INVALID_ARGUMENT, "q is blank; give a word to search for")
        hits = (await _read(history(), lambda r: r.search(q, limit))).value
        return SearchAnswer(
            query=q,
            hits=[
                Hit(
                    session=_row(h.session),
                    seq=h.final.seq,
                    start_s=round(h.final.start_s, 3),
                    end_s=round(h.final.end_s, 3),
                    text=h.final.text.strip(),
                    snippet=h.snippet.strip(),
                )
                for h in hits
            ],
        )

    @router.get(
        "/{session_id}",
        summary="One transcript: JSON, or a txt / srt / vtt document",
        response_class=Response,
        responses={200: {"content": {t.split(";")[0]: {} for t in MEDIA_TYPES.values()}}},
    )
    async def get_session(
        session_id: str, format: Literal["json", "txt", "srt", "vtt"] = "json"
    ) -> Response:
        read = await _read(history(), lambda r: r.get(session_id), one=session_id)
        # The same document, byte for byte, as `history export` and gRPC History.Export.
        body = render_transcript(read.value, format)
        return Response(body, media_type=MEDIA_TYPES[format])

    @router.delete("/{session_id}", summary="Delete a finished session")
    async def delete_session(session_id: str) -> dict[str, str]:
        try:
            await history().delete(session_id)
        except HistoryError as exc:
            raise history_status(exc) from exc
        return {"deleted": session_id}

    return router
