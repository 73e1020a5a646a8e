"""OpenAI's file speech-to-text: ``POST /v1/audio/transcriptions`` and ``/v1/audio/translations``.

Programs written for OpenAI's audio API work against this server by changing the base URL.
The form is OpenAI's (``file``, ``model``, ``language``, ``prompt``, ``response_format``,
``temperature``, ``timestamp_granularities[]``, ``stream``); the file goes the one upload path
(:mod:`.uploads`, the same code as ``POST /api/v1/transcriptions`` and gRPC ``Transcribe``).
With ``stream=true`` the answer is Server-Sent Events: ``transcript.text.delta`` as each
segment is decoded, then ``transcript.text.done``, whose text is the deltas joined.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.datastructures import FormData, UploadFile
from starlette.requests import ClientDisconnect

from audiototext.server.files import FileTranscript
from audiototext.server.http.context import HttpContext
from audiototext.server.http.openai_common import (
    OPENAI_ERROR_RESPONSES,
    OpenAIError,
    check_bearer,
    choose_model,
    openai_error_body,
)
from audiototext.server.http.uploads import UploadJob, form_text, render_text, transcribe_upload
from audiototext.server.status import Status, StatusError
from audiototext.server.validation import check_choice, language_of

__all__ = ["OPENAI_UPLOAD_PATHS", "openai_audio_router"]

log = logging.getLogger(__name__)

TRANSCRIPTIONS = "/v1/audio/transcriptions"
TRANSLATIONS = "/v1/audio/translations"
OPENAI_UPLOAD_PATHS = (TRANSCRIPTIONS, TRANSLATIONS)
RESPONSE_FORMATS = {
    "json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "verbose_json": "application/json",
}
_WRITER_OF = {"text": "txt", "srt": "srt", "vtt": "vtt"}  # the store's writer for a format
GRANULARITIES = ("segment", "word")
STREAM_FORMATS = ("json", "text")  # a stream's events carry text only
_TRUE = {"true", "1"}
_FALSE = {"false", "0", ""}
# The form fields each route reads; an OpenAI field not listed is refused by name.
_COMMON = ("file", "model", "prompt", "response_format", "temperature")
TRANSCRIPTION_FIELDS = (
    *_COMMON,
    "language",
    "timestamp_granularities[]",
    "stream",
    "chunking_strategy",
)
TRANSLATION_FIELDS = _COMMON
_MAX_FIELD_BYTES = 16 << 10  # a prompt is at most 224 tokens: a few KiB of text

_FORM_DOC: dict[str, Any] = {
    "file": {"type": "string", "format": "binary", "description": "any audio or video file"},
    "model": {
        "type": "string",
        "description": "whisper-1 (or another OpenAI name): the server's model; else a "
        "short name or repo id of a model downloaded here",
    },
    "prompt": {"type": "string", "description": "text to prompt the decoder with"},
    "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "json"},
    "temperature": {"type": "number", "minimum": 0, "maximum": 1, "default": 0},
}
_TRANSCRIPTION_DOC: dict[str, Any] = {
    **_FORM_DOC,
    "language": {"type": "string", "description": "ISO-639-1 code; empty: detected"},
    "timestamp_granularities[]": {
        "type": "array",
        "items": {"type": "string", "enum": list(GRANULARITIES)},
        "description": "with verbose_json: segment (default) and/or word",
    },
    "stream": {"type": "boolean", "default": False},
    "chunking_strategy": {"type": "string", "enum": ["auto"]},
}


def _request_body(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "model"],
                        "additionalProperties": False,
                        "properties": properties,
                    }
                }
            },
        }
    }


_TEXT = {"schema": {"type": "string"}}
_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The transcript in the response_format asked for",
        "content": {
            "text/plain": _TEXT,
            "application/x-subrip": _TEXT,
            "text/vtt": _TEXT,
            "text/event-stream": _TEXT,
        },
    },
    413: {"description": "The upload is over the server's limit (--max-upload-mb)"},
    415: {"description": "Not a multipart/form-data request"},
}


def openai_audio_router(ctx: HttpContext) -> APIRouter:
    router = APIRouter(prefix="/v1/audio", responses=OPENAI_ERROR_RESPONSES, tags=["openai"])

    @router.post(
        "/transcriptions",
        summary="Transcribe a file (OpenAI-compatible)",
        response_model=dict[str, Any],
        responses=_ANSWERS,
        openapi_extra=_request_body(_TRANSCRIPTION_DOC),
    )
    async def transcriptions(request: Request) -> Response:
        """OpenAI's ``audio.transcriptions.create``: ``base_url=http://HOST:8080/v1``."""
        return await _answer(request, ctx, "transcribe")

    @router.post(
        "/translations",
        summary="Translate a file to English text (OpenAI-compatible)",
        response_model=dict[str, Any],
        responses=_ANSWERS,
        openapi_extra=_request_body(_FORM_DOC),
    )
    async def translations(request: Request) -> Response:
        """OpenAI's ``audio.translations.create`` (needs a multilingual model)."""
        return await _answer(request, ctx, "translate")

    return router


async def _answer(request: Request, ctx: HttpContext, task: str) -> Response:
    check_bearer(request, ctx.token)  # before the body is read
    if ctx.transcribe_file is None:
        raise OpenAIError(501, "this server does not transcribe files")
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "multipart/form-data":
        raise HTTPException(
            status_code=415,
            detail=f"send the file as multipart/form-data in a field named 'file' (e.g. curl "
            f"-F file=@talk.mp3 -F model=whisper-1 URL), not as "
            f"{content_type or 'a body without a type'}",
        )
    fields = TRANSCRIPTION_FIELDS if task == "transcribe" else TRANSLATION_FIELDS
    try:
        form = await request.form(max_files=1, max_fields=16, max_part_size=_MAX_FIELD_BYTES)
    except ClientDisconnect:
        return Response(status_code=400)  # the client left mid-upload: nobody to answer
    try:
        response = await _run(ctx, form, task, fields)
    except BaseException:
        await form.close()
        raise
    if not isinstance(response, StreamingResponse):  # a stream closes the form when done
        await form.close()
    return response


async def _run(ctx: HttpContext, form: FormData, task: str, fields: tuple[str, ...]) -> Response:
    unknown = sorted({k for k in form if k not in fields})
    if unknown:
        raise OpenAIError(
            400,
            f"unknown or unsupported field(s) {', '.join(unknown)}; this route takes "
            f"{', '.join(fields)}",
            param=unknown[0],
        )
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise OpenAIError(400, "the form has no file in a field named 'file'", param="file")
    values = {k: _field(form, k) for k in fields if k not in ("file", "timestamp_granularities[]")}
    fmt = values["response_format"] or "json"
    if fmt not in RESPONSE_FORMATS:
        raise OpenAIError(
            400,
            f"unknown response_format {fmt!r}; choose one of {', '.join(RESPONSE_FORMATS)}",
            param="response_format",
        )
    temperature = _temperature(values["temperature"])
    granularities = _granularities(form, fmt)
    stream = _stream(values.get("stream", ""), fmt)
    if values.get("chunking_strategy", "auto") not in ("", "auto"):
        raise OpenAIError(
            400,
            "chunking_strategy may only be 'auto' here (the server always cuts at pauses "
            "found by voice activity detection)",
            param="chunking_strategy",
        )
    language = language_of(values.get("language", ""))
    choice = await choose_model(ctx.pool, values["model"])
    if choice is not None:
        try:
            check_choice(choice, language, task)
        except StatusError as exc:
            param = "language" if language is not None and task == "transcribe" else "model"
            raise OpenAIError.of(exc, param=param) from exc
    job = UploadJob(
        choice,
        language,
        task,
        word_timestamps="word" in granularities,
        prompt=values["prompt"] or None,
        temperature=temperature,
    )
    if stream:
        return await _stream_answer(ctx, upload, job, form.close)
    out = await _transcribe(ctx, upload, job)
    return _render(out, fmt, task, granularities)


async def _transcribe(ctx: HttpContext, upload: UploadFile, job: UploadJob) -> FileTranscript:
    try:
        return await transcribe_upload(ctx, upload, job)
    except StatusError as exc:
        param = "file" if exc.code is Status.INVALID_ARGUMENT else None
        raise OpenAIError.of(exc, param=param) from exc


def _field(form: Any, key: str) -> str:
    try:
        return form_text(form, key)
    except StatusError as exc:
        raise OpenAIError(400, exc.message, param=key) from exc


def _temperature(text: str) -> float:
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise OpenAIError(
            400, f"temperature must be a number from 0 to 1, not {text!r}", param="temperature"
        )
    return value


def _granularities(form: Any, fmt: str) -> tuple[str, ...]:
    given = [str(v).strip() for v in form.getlist("timestamp_granularities[]")]
    wrong = [g for g in given if g not in GRANULARITIES]
    if wrong:
        raise OpenAIError(
            400,
            f"unknown timestamp granularity {wrong[0]!r}; use segment and/or word",
            param="timestamp_granularities",
        )
    if given and fmt != "verbose_json":
        raise OpenAIError(
            400,
            "timestamp_granularities needs response_format verbose_json",
            param="timestamp_granularities",
        )
    return tuple(given) or ("segment",)


def _stream(text: str, fmt: str) -> bool:
    flag = text.lower()
    if flag not in _TRUE | _FALSE:
        raise OpenAIError(400, f"stream must be true or false, not {text!r}", param="stream")
    if flag in _TRUE and fmt not in STREAM_FORMATS:
        raise OpenAIError(
            400,
            f"stream=true sends text only: use response_format json or text, not {fmt}",
            param="stream",
        )
    return flag in _TRUE


def _render(out: FileTranscript, fmt: str, task: str, granularities: tuple[str, ...]) -> Response:
    if fmt == "json":
        return JSONResponse({"text": out.text, "usage": _usage(out)})
    if fmt == "verbose_json":
        return JSONResponse(_verbose(out, task, granularities))
    return PlainTextResponse(render_text(out, _WRITER_OF[fmt]), media_type=RESPONSE_FORMATS[fmt])


def _usage(out: FileTranscript) -> dict[str, Any]:
    return {"type": "duration", "seconds": round(out.duration_s, 3)}


def _verbose(out: FileTranscript, task: str, granularities: tuple[str, ...]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "task": task,
        # A translation's text is English whatever was spoken (OpenAI says so too).
        "language": "en" if task == "translate" else out.language,
        "duration": round(out.duration_s, 3),
        "text": out.text,
    }
    if "segment" in granularities:
        scores = out.scores if len(out.scores) == len(out.segments) else ()
        segments = []
        for k, (start, end, text) in enumerate(out.segments):
            s = scores[k] if scores else None
            segments.append(
                {
                    "id": k,
                    # Whisper's seek is its window's offset; the transcript keeps the
                    # segment's own start, in the same 10-ms frames.
                    "seek": round(start * 100),
                    "start": start,
                    "end": end,
                    "text": text,
                    "tokens": list(s.tokens) if s else [],
                    "temperature": s.temperature if s else 0.0,
                    "avg_logprob": s.avg_logprob if s else 0.0,
                    "compression_ratio": s.compression_ratio if s else 0.0,
                    "no_speech_prob": s.no_speech_prob if s else 0.0,
                }
            )
        doc["segments"] = segments
    if "word" in granularities:
        doc["words"] = [{"word": w, "start": a, "end": b} for a, b, w in out.words]
    doc["usage"] = _usage(out)
    return doc


# ---- streaming -----------------------------------------------------------------------------


async def _stream_answer(
    ctx: HttpContext,
    upload: UploadFile,
    job: UploadJob,
    close_form: Callable[[], Coroutine[Any, Any, None]],
) -> Response:
    """Server-Sent Events; the first one is awaited before answering, so a file that cannot
    be read is still refused with a status (400) rather than an event. ``close_form`` runs
    once the file job is over (the file is read until then, even if the client left)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def on_segment(segment: tuple[float, float, str]) -> None:  # the worker thread
        loop.call_soon_threadsafe(queue.put_nowait, ("segment", segment[2]))

    closing: set[asyncio.Task[None]] = set()

    def closed(_: asyncio.Task[None]) -> None:
        closer = loop.create_task(close_form())
        closing.add(closer)  # held until done (the loop keeps weak references only)
        closer.add_done_callback(closing.discard)

    streamed = UploadJob(
        job.choice,
        job.language,
        job.task,
        job.word_timestamps,
        job.prompt,
        job.temperature,
        on_segment=on_segment,
    )

    async def work() -> None:
        try:
            out = await _transcribe(ctx, upload, streamed)
        except OpenAIError as exc:
            queue.put_nowait(("error", exc))
        except Exception as exc:
            log.exception("an OpenAI-compatible streamed transcription failed")
            queue.put_nowait(("crash", exc))
        else:
            queue.put_nowait(("done", out))

    task = asyncio.create_task(work(), name="openai transcription stream")
    task.add_done_callback(closed)
    first = await queue.get()
    if first[0] in ("error", "crash"):
        await task
        raise first[1]
    return StreamingResponse(
        _events(first, queue, task),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    first: tuple[str, Any], queue: asyncio.Queue[tuple[str, Any]], task: asyncio.Task[None]
) -> AsyncIterator[bytes]:
    sent: list[str] = []
    announced = 0  # segments announced by the transcriber (empty ones too)
    item = first
    try:
        while True:
            kind, value = item
            if kind == "segment":
                announced += 1
                if value:
                    sent.append((" " if sent else "") + value)
                    yield _sse({"type": "transcript.text.delta", "delta": sent[-1]})
            elif kind == "done":
                out: FileTranscript = value
                # Segments the transcriber did not announce one by one come now, in order.
                for _, _, text in out.segments[announced:]:
                    if text:
                        sent.append((" " if sent else "") + text)
                        yield _sse({"type": "transcript.text.delta", "delta": sent[-1]})
                text = "".join(sent)
                yield _sse({"type": "transcript.text.done", "text": text, "usage": _usage(out)})
                return
            else:
                exc = value if isinstance(value, OpenAIError) else OpenAIError(500, str(value))
                yield _sse(openai_error_body(exc))
                return
            item = await queue.get()
    finally:
        if not task.done():  # the client left: the file job finishes in its thread anyway
            task.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
