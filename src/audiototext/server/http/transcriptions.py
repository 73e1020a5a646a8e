"""``POST /api/v1/transcriptions``: a whole file in, its transcript out.

The upload is a ``multipart/form-data`` form: ``file`` (the audio or video file) and the
optional fields ``model``, ``language``, ``task`` (transcribe | translate), ``format`` (json |
txt | srt | vtt) and ``word_timestamps``. The token is checked before the body is read; the
body is limited while it arrives (:mod:`.limits`, ``serve --max-upload-mb``), and the file
part is spooled to a temporary file (on disk past 1 MiB), never held whole in memory. The
file then goes through the same code as gRPC ``Transcribe`` (:mod:`audiototext.server.files`).
``GET /api/v1/transcriptions`` says what an upload may be (size limit, formats, tasks).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from audiototext.server.files import FileTranscript
from audiototext.server.http.context import HttpContext
from audiototext.server.http.errors import ERROR_RESPONSES
from audiototext.server.http.guard import check_token
from audiototext.server.http.uploads import (
    UploadJob,
    form_text,
    render_text,
    safe_stem,
    transcribe_upload,
)
from audiototext.server.status import Status, StatusError
from audiototext.server.validation import check_choice, language_of

__all__ = ["FORMATS", "TRANSCRIPTIONS_PATH", "transcriptions_router"]

TRANSCRIPTIONS_PATH = "/api/v1/transcriptions"
FORMATS = {
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}
TASKS = ("transcribe", "translate")
FIELDS = ("file", "model", "language", "task", "format", "word_timestamps")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


class Span(BaseModel):
    start_s: float
    end_s: float
    text: str


class Transcript(BaseModel):
    text: str = Field(description="the whole transcript")
    language: str = Field(description="the language decoded in (detected or given)")
    duration_s: float = Field(description="seconds of audio in the file")
    segments: list[Span]
    words: list[Span] = Field(description="with word_timestamps=true; else empty")
    filename: str = Field(description="the uploaded file's name")


class UploadRules(BaseModel):
    max_upload_bytes: int = Field(description="the largest request body (serve --max-upload-mb)")
    formats: list[str]
    tasks: list[str]
    model: str = Field(description="the model the server runs")


_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "additionalProperties": False,
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "an audio or video file (WAV, FLAC, MP3, Ogg/Opus, M4A, WebM...)",
        },
        "model": {
            "type": "string",
            "description": "empty or the model the server runs; another name is refused",
        },
        "language": {
            "type": "string",
            "description": "a language code (e.g. en, pt); empty: detected",
        },
        "task": {"type": "string", "enum": list(TASKS), "default": "transcribe"},
        "format": {"type": "string", "enum": list(FORMATS), "default": "json"},
        "word_timestamps": {"type": "boolean", "default": False},
    },
}
_TEXT = {"schema": {"type": "string"}}


def transcriptions_router(ctx: HttpContext) -> APIRouter:
    router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)

    @router.get(
        "/transcriptions",
        response_model=UploadRules,
        summary="What a file upload may be",
    )
    async def rules(request: Request) -> UploadRules:
        check_token(request, ctx.token)
        return UploadRules(
            max_upload_bytes=ctx.max_upload_bytes,
            formats=list(FORMATS),
            tasks=list(TASKS),
            model=ctx.model,
        )

    @router.post(
        "/transcriptions",
        response_model=Transcript,
        summary="Transcribe a file",
        responses={
            200: {
                "description": "The transcript, in the format asked for",
                "content": {
                    "text/plain": _TEXT,
                    "application/x-subrip": _TEXT,
                    "text/vtt": _TEXT,
                },
            },
            413: {"description": "The upload is over the server's limit (--max-upload-mb)"},
            415: {"description": "Not a multipart/form-data request"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"multipart/form-data": {"schema": _FORM_SCHEMA}},
            }
        },
    )
    async def transcribe(request: Request) -> Response:
        """Send the file as ``multipart/form-data`` in a field named ``file``, e.g.
        ``curl -F file=@talk.mp3 -F format=srt http://127.0.0.1:8080/api/v1/transcriptions``.
        One file at a time is transcribed (others wait their turn)."""
        check_token(request, ctx.token)
        if ctx.transcribe_file is None:
            raise StatusError(Status.UNIMPLEMENTED, "this server does not transcribe files")
        content_type = request.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "multipart/form-data":
            raise HTTPException(
                status_code=415,
                detail=f"send the file as multipart/form-data in a field named 'file' (e.g. "
                f"curl -F file=@talk.mp3 URL), not as {content_type or 'a body without a type'}",
            )
        try:
            return await _transcribe_form(request, ctx)
        except ClientDisconnect:
            # The client went away mid-upload (the page's Cancel): nobody to answer.
            return Response(status_code=400)

    return router


async def _transcribe_form(request: Request, ctx: HttpContext) -> Response:
    assert ctx.transcribe_file is not None
    async with request.form(max_files=1, max_fields=8, max_part_size=4096) as form:
        unknown = sorted({k for k in form if k not in FIELDS})
        if unknown:
            raise StatusError(
                Status.INVALID_ARGUMENT,
                f"unknown form field(s) {', '.join(unknown)}; the fields are {', '.join(FIELDS)}",
            )
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise StatusError(
                Status.INVALID_ARGUMENT,
                "the form has no file in a field named 'file' (a form field 'file' "
                "holding text is not a file upload)",
            )
        values = {k: form_text(form, k) for k in FIELDS[1:]}
        fmt = values["format"] or "json"
        if fmt not in FORMATS:
            raise StatusError(
                Status.INVALID_ARGUMENT,
                f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}",
            )
        task = values["task"] or "transcribe"
        if task not in TASKS:
            raise StatusError(
                Status.INVALID_ARGUMENT,
                f"unknown task {task!r}; choose one of {', '.join(TASKS)}",
            )
        words = values["word_timestamps"].strip().lower()
        if words not in _TRUE | _FALSE:
            raise StatusError(
                Status.INVALID_ARGUMENT,
                f"word_timestamps must be true or false, not {words!r}",
            )
        language = language_of(values["language"])
        choice = None
        if ctx.pool is not None:
            choice = await ctx.pool.choose(values["model"])
            check_choice(choice, language, task)
        job = UploadJob(choice, language, task, word_timestamps=words in _TRUE)
        out = await transcribe_upload(ctx, upload, job)
        return _render(out, fmt, upload.filename or "")


def _render(out: FileTranscript, fmt: str, filename: str) -> Response:
    if fmt == "json":
        doc = Transcript(
            text=out.text,
            language=out.language,
            duration_s=out.duration_s,
            segments=[Span(start_s=a, end_s=b, text=t) for a, b, t in out.segments],
            words=[Span(start_s=a, end_s=b, text=t) for a, b, t in out.words],
            filename=filename,
        )
        return JSONResponse(doc.model_dump())
    return PlainTextResponse(
        render_text(out, fmt),
        media_type=FORMATS[fmt],
        headers={"Content-Disposition": f'attachment; filename="{safe_stem(filename)}.{fmt}"'},
    )
