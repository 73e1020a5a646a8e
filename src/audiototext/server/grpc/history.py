"""The ``History`` service: the transcript history over gRPC (list, search, get, export, delete).

The same queries as REST ``/api/v1/history`` (:mod:`audiototext.server.http.history`) and
``audiototext history``: :class:`~audiototext.server.recording.HistoryRecorder` answers from
the SQLite file with ``serve --history``, else from the recent transcripts in memory; the
documents come from :func:`audiototext.history.export.render_transcript`, so an export is the
same bytes over every API. Errors are :func:`~audiototext.server.recording.history_status`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, NoReturn, TypeAlias, TypeVar

import grpc

from audiototext.history.errors import BadQueryError, HistoryError
from audiototext.history.export import EXPORT_FORMATS, MEDIA_TYPES, render_transcript
from audiototext.history.records import (
    DEFAULT_PAGE,
    HistoryReader,
    SessionInfo,
    SessionSummary,
    TimeRange,
    Transcript,
    check_limit,
)
from audiototext.server.grpc.status import grpc_code
from audiototext.server.recording import HistoryRecorder, Read, history_status
from audiototext.server.status import Status, StatusError
from audiototext.wire._proto import history_pb2, history_pb2_grpc, transcription_pb2

__all__ = ["HistoryService"]

T = TypeVar("T")
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

NO_HISTORY = (
    "this server keeps no transcript history; start it with `audiototext serve --history` "
    "(./run.sh does)"
)


def _session(info: SessionInfo) -> history_pb2.HistorySession:
    return history_pb2.HistorySession(
        id=info.id,
        started_at=info.started_at,
        ended_at=info.ended_at,
        model=info.model,
        language=info.language,
        transport=info.transport,
        source=info.source,
    )


def _summary(summary: SessionSummary) -> history_pb2.HistorySummary:
    return history_pb2.HistorySummary(
        session=_session(summary.info),
        segments=summary.segments,
        duration_s=summary.duration_s,
        preview=summary.preview,
    )


def _transcript(transcript: Transcript) -> history_pb2.HistoryTranscript:
    return history_pb2.HistoryTranscript(
        session=_session(transcript.info),
        text=transcript.text,
        segments=[
            history_pb2.HistorySegment(
                seq=f.seq,
                start_s=f.start_s,
                end_s=f.end_s,
                text=f.text.strip(),
                words=[
                    transcription_pb2.Word(text=w.text, start_s=w.start_s, end_s=w.end_s)
                    for w in f.words
                ],
            )
            for f in transcript.finals
        ],
    )


async def _abort(context: Context, error: StatusError) -> NoReturn:
    await context.abort(grpc_code(error.code), error.message)
    raise AssertionError("abort returns only by raising")


def _memory_note(history: HistoryRecorder) -> str:
    if history.persistent or history.alert:
        return history.alert or ""
    return (
        f"only the last {history.settings.recent_sessions} sessions are kept, in memory; "
        "start the server with --history to keep every transcript in a file"
    )


class HistoryService(history_pb2_grpc.HistoryServicer):
    """``history()`` is the server's recorder (None: the server keeps no history)."""

    def __init__(self, history: Callable[[], HistoryRecorder | None]) -> None:
        self._history = history

    async def _recorder(self, context: Context) -> HistoryRecorder:
        history = self._history()
        if history is None:
            await _abort(context, StatusError(Status.FAILED_PRECONDITION, NO_HISTORY))
        return history

    async def _read(
        self,
        context: Context,
        query: Callable[[HistoryReader], T],
        one: str | None = None,
    ) -> tuple[HistoryRecorder, Read[T]]:
        """``query`` answered in a worker thread (the file is read there), errors as statuses."""
        history = await self._recorder(context)
        try:
            return history, await asyncio.to_thread(history.read, query, one=one)
        except HistoryError as exc:
            await _abort(context, history_status(exc))

    async def List(
        self, request: history_pb2.ListHistoryRequest, context: Context
    ) -> history_pb2.HistoryPage:
        limit = request.limit or DEFAULT_PAGE
        try:
            check_limit(limit, request.offset, what="ListHistoryRequest.limit")
            when = TimeRange(since=request.since or None, until=request.until or None)
        except BadQueryError as exc:
            await _abort(context, history_status(exc))
        history, read = await self._read(context, lambda r: r.page(limit, request.offset, when))
        page = read.value
        shown = page.offset + len(page.sessions)
        return history_pb2.HistoryPage(
            sessions=[_summary(s) for s in page.sessions],
            total=page.total,
            limit=limit,
            offset=page.offset,
            next_offset=shown if shown < page.total else 0,
            persistent=history.persistent,
            note=read.fallback or _memory_note(history),
        )

    async def Search(
        self, request: history_pb2.SearchHistoryRequest, context: Context
    ) -> history_pb2.SearchHistoryResponse:
        limit = request.limit or DEFAULT_PAGE
        try:
            check_limit(limit, what="SearchHistoryRequest.limit")
        except BadQueryError as exc:
            await _abort(context, history_status(exc))
        # The query is checked by the store that answers (history.records.search_terms).
        _, read = await self._read(context, lambda r: r.search(request.query, limit))
        return history_pb2.SearchHistoryResponse(
            query=request.query,
            hits=[
                history_pb2.HistoryHit(
                    session=_summary(h.session),
                    seq=h.final.seq,
                    start_s=h.final.start_s,
                    end_s=h.final.end_s,
                    text=h.final.text.strip(),
                    snippet=h.snippet.strip(),
                )
                for h in read.value
            ],
        )

    async def _get(self, session_id: str, field: str, context: Context) -> Transcript:
        if not session_id:
            await _abort(
                context,
                StatusError(
                    Status.INVALID_ARGUMENT, f"{field} is empty; give a session id from List"
                ),
            )
        _, read = await self._read(context, lambda r: r.get(session_id), one=session_id)
        return read.value

    async def Get(
        self, request: history_pb2.GetTranscriptRequest, context: Context
    ) -> history_pb2.HistoryTranscript:
        return _transcript(await self._get(request.id, "GetTranscriptRequest.id", context))

    async def Export(
        self, request: history_pb2.ExportTranscriptRequest, context: Context
    ) -> history_pb2.ExportedTranscript:
        fmt = request.format or "txt"
        if fmt not in EXPORT_FORMATS:
            await _abort(
                context,
                StatusError(
                    Status.INVALID_ARGUMENT,
                    f"ExportTranscriptRequest.format {fmt!r} is not one of "
                    f"{', '.join(EXPORT_FORMATS)}",
                ),
            )
        transcript = await self._get(request.id, "ExportTranscriptRequest.id", context)
        return history_pb2.ExportedTranscript(
            format=fmt,
            media_type=MEDIA_TYPES[fmt],
            data=render_transcript(transcript, fmt).encode(),
        )

    async def Delete(
        self, request: history_pb2.DeleteTranscriptRequest, context: Context
    ) -> history_pb2.DeleteTranscriptResponse:
        history = await self._recorder(context)
        if not request.id:
            await _abort(
                context,
                StatusError(
                    Status.INVALID_ARGUMENT,
                    "DeleteTranscriptRequest.id is empty; give a session id from List",
                ),
            )
        try:
            await history.delete(request.id)
        except HistoryError as exc:
            await _abort(context, history_status(exc))
        return history_pb2.DeleteTranscriptResponse(deleted=request.id)
