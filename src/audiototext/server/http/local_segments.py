"""``POST /api/v1/sessions/{id}/segments``: the page's locally transcribed segments, uploaded
when the server is back, so that the session's transcript holds every word of the time the
page transcribed by itself (web/js/handover.js).

Each segment carries the page's own id; one uploaded before under the same id is skipped, so
a retried upload (an answer lost on the way) is not doubled. Segments join the session after
the finals it holds, marked ``origin: local`` in the history. The session must be live on this
server or in its history (memory, or the file with ``serve --history``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field, model_validator

from audiototext.history.errors import HistoryError, SessionNotFoundError
from audiototext.history.records import Final
from audiototext.server.http.context import HttpContext
from audiototext.server.http.errors import ERROR_RESPONSES
from audiototext.server.http.guard import check_token
from audiototext.server.status import Status, StatusError

__all__ = ["MAX_LOCAL_SEGMENTS", "local_segments_router"]

MAX_LOCAL_SEGMENTS = 500  # per request; a page uploads an outage's segments, a few dozen
MAX_TEXT_CHARS = 4000  # one utterance's text; Whisper's 30-s window holds far fewer
MAX_TIME_S = 7 * 24 * 3600.0  # a week of audio: later times are a client's mistake
ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"


class LocalSegment(BaseModel):
    id: str = Field(
        min_length=1,
        max_length=80,
        pattern=ID_PATTERN,
        description="the page's id of this segment; a second upload with it is skipped",
    )
    start_s: float = Field(ge=0, le=MAX_TIME_S, description="seconds from the session's start")
    end_s: float = Field(ge=0, le=MAX_TIME_S)
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)

    @model_validator(mode="after")
    def _sane(self) -> LocalSegment:
        if self.end_s < self.start_s:
            raise ValueError(f"end_s ({self.end_s}) is before start_s ({self.start_s})")
        if not self.text.strip():
            raise ValueError("text is blank; leave out segments without words")
        return self


class LocalUpload(BaseModel):
    segments: list[LocalSegment] = Field(min_length=1, max_length=MAX_LOCAL_SEGMENTS)

    @model_validator(mode="after")
    def _distinct(self) -> LocalUpload:
        ids = [s.id for s in self.segments]
        if len(set(ids)) != len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"segment ids must be distinct within an upload: {twice} repeat")
        return self


class LocalUploadAnswer(BaseModel):
    session_id: str
    added: int = Field(description="segments added to the transcript")
    repeated: int = Field(description="segments uploaded before under the same id (skipped)")


def local_segments_router(ctx: HttpContext) -> APIRouter:
    def token(request: Request) -> None:
        check_token(request, ctx.token)

    router = APIRouter(
        prefix="/api/v1/sessions",
        tags=["streaming"],
        responses=ERROR_RESPONSES,
        dependencies=[Depends(token)],
    )

    @router.post(
        "/{session_id}/segments",
        response_model=LocalUploadAnswer,
        summary="Add segments the page transcribed itself while the server was unreachable",
    )
    async def upload(
        session_id: Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)],
        body: LocalUpload,
    ) -> LocalUploadAnswer:
        history = ctx.history
        if history is None:
            raise StatusError(Status.UNIMPLEMENTED, "this server keeps no transcript history")
        live = ctx.store.get_or_none(session_id)
        segments = [
            (s.id, Final(seq=0, start_s=s.start_s, end_s=s.end_s, text=s.text.strip()))
            for s in sorted(body.segments, key=lambda s: (s.start_s, s.end_s))
        ]
        try:
            added, repeated = await history.add_local(session_id, segments, live)
        except SessionNotFoundError as exc:
            raise StatusError(
                Status.NOT_FOUND,
                f"session {session_id!r} is neither open on this server nor in its history "
                f"({exc}); keep the text on the page",
            ) from exc
        except HistoryError as exc:
            raise StatusError(Status.UNAVAILABLE, str(exc), try_later=True) from exc
        return LocalUploadAnswer(session_id=session_id, added=added, repeated=repeated)

    return router
