"""The ``Transcription`` service: live streams (:mod:`.streaming`) and whole files."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from audiototext.errors import AudioToTextError
from audiototext.server.files import FileRequest, FileTranscribeFn
from audiototext.server.grpc.status import grpc_code, grpc_status_for
from audiototext.server.grpc.streaming import StreamingTranscription
from audiototext.server.pool import Lease
from audiototext.server.sessions import SessionStore
from audiototext.server.status import StatusError
from audiototext.server.streams import StreamService
from audiototext.server.validation import check_choice, language_of, task_of
from audiototext.wire._proto import transcription_pb2 as pb
from audiototext.wire._proto import transcription_pb2_grpc

__all__ = ["MAX_BEAM_SIZE", "TranscriptionService"]

MAX_BEAM_SIZE = 16


class TranscriptionService(transcription_pb2_grpc.TranscriptionServicer):
    """Live streams go to :class:`StreamingTranscription`; whole files to ``transcribe_file``
    (None: ``Transcribe`` answers UNIMPLEMENTED)."""

    def __init__(
        self,
        store: SessionStore,
        *,
        streams: StreamService,
        transcribe_file: FileTranscribeFn | None = None,
    ) -> None:
        self.store = store
        self.pool = streams.pool
        self._transcribe_file = transcribe_file
        self._streams = StreamingTranscription(streams)

    async def StreamingTranscribe(
        self,
        request_iterator: AsyncIterator[pb.StreamingRequest],
        context: grpc.aio.ServicerContext[pb.StreamingRequest, pb.StreamingResponse],
    ) -> None:
        await self._streams.handle(request_iterator, context)

    async def Transcribe(
        self,
        request: pb.TranscribeRequest,
        context: grpc.aio.ServicerContext[pb.TranscribeRequest, pb.TranscribeResponse],
    ) -> pb.TranscribeResponse:
        if self._transcribe_file is None:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, "this server does not transcribe files"
            )
        assert self._transcribe_file is not None
        try:
            choice = await self.pool.choose(request.model)
            language, task = language_of(request.language), task_of(int(request.task))
            check_choice(choice, language, task)
        except StatusError as exc:
            await context.abort(grpc_code(exc.code), exc.message)
        if not request.audio:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "TranscribeRequest.audio is empty; send a file"
            )
        if request.beam_size > MAX_BEAM_SIZE:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"TranscribeRequest.beam_size is {request.beam_size}; use 1 (greedy) to "
                f"{MAX_BEAM_SIZE}, or 0 for the default",
            )
        lease: Lease | None = None
        if choice != self.pool.default:
            # Another model: the pool's loaded model serves the file too (one copy in memory).
            try:
                lease = await self.pool.acquire(choice)
            except StatusError as exc:
                await context.abort(grpc_code(exc.code), exc.message)
        try:
            return await self._transcribe(request, context, language, task, lease)
        finally:
            if lease is not None:
                lease.release()

    async def _transcribe(
        self,
        request: pb.TranscribeRequest,
        context: grpc.aio.ServicerContext[pb.TranscribeRequest, pb.TranscribeResponse],
        language: str | None,
        task: str,
        lease: Lease | None,
    ) -> pb.TranscribeResponse:
        assert self._transcribe_file is not None
        file_request = FileRequest(
            audio=request.audio,
            language=language,
            word_timestamps=request.word_timestamps,
            beam_size=request.beam_size or FileRequest.beam_size,
            transport="grpc",
            task=task,
            model=lease.key.name if lease is not None else "",
            whisper=getattr(lease.engine, "model", None) if lease is not None else None,
        )
        try:
            out = await self._transcribe_file(file_request)
        except (AudioToTextError, ValueError) as exc:
            await context.abort(grpc_status_for(exc), str(exc))
        return pb.TranscribeResponse(
            text=out.text,
            language=out.language,
            duration_s=out.duration_s,
            segments=[pb.Segment(start_s=a, end_s=b, text=t) for a, b, t in out.segments],
            words=[pb.Word(start_s=a, end_s=b, text=t) for a, b, t in out.words],
        )
