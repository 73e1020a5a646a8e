"""An uploaded file through the server's file transcription: the one path every upload
route takes (``POST /api/v1/transcriptions`` and OpenAI's ``/v1/audio/...``).

The form's file part is already spooled (on disk past 1 MiB); here it is checked, handed as a
file to :mod:`audiototext.server.files` (the same code as gRPC ``Transcribe``) on the chosen
model (a pool lease when it is not the default), and the transcript rendered by the store's
writers.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import IO, Any

from starlette.datastructures import UploadFile

from audiototext.errors import AudioToTextError
from audiototext.server.files import FileRequest, FileTranscript, SegmentFn
from audiototext.server.http.context import HttpContext
from audiototext.server.pool import Lease, ModelChoice
from audiototext.server.status import Status, StatusError, status_for

__all__ = ["UploadJob", "form_text", "render_text", "safe_stem", "transcribe_upload"]


@dataclass(frozen=True)
class UploadJob:
    """What to do with an upload, its form already checked."""

    choice: ModelChoice | None  # the model (None: the server's default, no pool)
    language: str | None = None
    task: str = "transcribe"
    word_timestamps: bool = False
    prompt: str | None = None
    temperature: float = 0.0
    on_segment: SegmentFn | None = None


async def transcribe_upload(ctx: HttpContext, upload: UploadFile, job: UploadJob) -> FileTranscript:
    """The transcript of ``upload``; StatusErrors for an empty or undecodable file (400), a
    model that cannot load (the pool's refusals)."""
    assert ctx.transcribe_file is not None
    if not upload.size:
        raise StatusError(
            Status.INVALID_ARGUMENT,
            f"the file {upload.filename or ''!r} is empty (0 bytes); send an audio file",
        )
    await upload.seek(0)
    lease: Lease | None = None
    if ctx.pool is not None and job.choice is not None and job.choice != ctx.pool.default:
        # Another model: the pool's loaded model serves the file (one copy in memory).
        lease = await ctx.pool.acquire(job.choice)
    request = FileRequest(
        audio=io.BufferedReader(_Named(upload.file, upload.filename or "the upload")),
        language=job.language,
        word_timestamps=job.word_timestamps,
        task=job.task,
        transport="http",
        model=lease.key.name if lease is not None else "",
        whisper=getattr(lease.engine, "model", None) if lease is not None else None,
        prompt=job.prompt,
        temperature=job.temperature,
        on_segment=job.on_segment,
    )
    try:
        return await ctx.transcribe_file(request)
    except (AudioToTextError, ValueError) as exc:
        raise StatusError(status_for(exc), str(exc)) from exc
    finally:
        if lease is not None:
            lease.release()


class _Named(io.RawIOBase):
    """The spooled upload under the name it was sent with (errors name the file)."""

    def __init__(self, file: IO[bytes], name: str) -> None:
        super().__init__()
        self._file = file
        self.name = name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._file.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()


def form_text(form: Any, key: str) -> str:
    """A text field of a form, stripped ("" when absent); a file there is refused."""
    value = form.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise StatusError(
            Status.INVALID_ARGUMENT, f"the form field {key!r} must be text, not a file"
        )
    return value.strip()


def render_text(out: FileTranscript, fmt: str) -> str:
    """The transcript as the store's writers render it (``txt``, ``srt``, ``vtt``)."""
    from audiototext.inference.results import Segment
    from audiototext.store.exports import render

    # The writers read times and text only; the scores of a segment are not in a transcript.
    segments = [
        Segment(
            id=k,
            start_s=a,
            end_s=b,
            text=t,
            tokens=(),
            avg_logprob=0.0,
            no_speech_prob=0.0,
            compression_ratio=0.0,
            temperature=0.0,
        )
        for k, (a, b, t) in enumerate(out.segments)
    ]
    return render(segments, fmt)


def safe_stem(filename: str) -> str:
    """A file name's stem fit for a Content-Disposition header."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", filename.rsplit(".", 1)[0])[:100] or "transcript"
