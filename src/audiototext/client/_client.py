"""The asyncio client: one channel to a server, its streams, whole files and statistics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc

from audiototext.client._errors import ClientError
from audiototext.client._settings import StreamSettings
from audiototext.client._stream import Stream
from audiototext.wire._proto import (
    history_pb2,
    history_pb2_grpc,
    models_pb2_grpc,
    system_pb2,
    system_pb2_grpc,
    transcription_pb2,
    transcription_pb2_grpc,
)

__all__ = ["AsyncClient"]

pb = transcription_pb2
hpb = history_pb2
T = TypeVar("T")


class AsyncClient:
    """Connection to an audiototext server (``host:port``).

    ``token`` is sent as ``authorization: Bearer <token>`` on every call; ``tls=True`` (or
    ``root_certificates``) uses TLS.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.target = target
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        opts = [
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20),
            # Reconnect quickly after a cut; the stream does its own backoff.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
            *options,
        ]
        if tls or root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.aio.secure_channel(target, creds, options=opts)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=opts)
        # The generated stubs are untyped (grpcio-tools writes no .pyi for them).
        grpc_modules: tuple[Any, Any, Any, Any] = (
            transcription_pb2_grpc,
            models_pb2_grpc,
            system_pb2_grpc,
            history_pb2_grpc,
        )
        self._transcription: Any = grpc_modules[0].TranscriptionStub(self._channel)
        self.models: Any = grpc_modules[1].ModelsStub(self._channel)
        self.system: Any = grpc_modules[2].SystemStub(self._channel)
        # The raw History stub; the methods below add the token and ClientError.
        self.history: Any = grpc_modules[3].HistoryStub(self._channel)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def stream(self, settings: StreamSettings | None = None) -> Stream:
        """Open a stream (waits for the server's SessionStarted)."""
        stream = Stream(self, settings or StreamSettings())
        await stream.start()
        return stream

    async def transcribe(
        self,
        audio: bytes,
        *,
        language: str | None = None,
        word_timestamps: bool = False,
        beam_size: int = 0,
    ) -> pb.TranscribeResponse:
        """Transcribe a whole file (its bytes, any format FFmpeg reads). ``beam_size`` 0 is
        the server's default, 1 greedy search."""
        request = pb.TranscribeRequest(
            audio=audio,
            language=language or "",
            word_timestamps=word_timestamps,
            beam_size=beam_size,
        )
        return await self._unary(self._transcription.Transcribe, request)

    async def _unary(self, method: Callable[..., Awaitable[T]], request: object) -> T:
        try:
            return await method(request, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise ClientError(exc.details() or str(exc.code()), exc.code()) from exc

    async def stats(self) -> system_pb2.ServerStats:
        return await self._unary(self.system.GetStats, system_pb2.StatsRequest())

    # ------------------------------------------------------------------ transcript history

    async def history_page(
        self, limit: int = 0, offset: int = 0, *, since: float = 0.0, until: float = 0.0
    ) -> hpb.HistoryPage:
        """Kept sessions, newest first (``limit`` 0: the server's default page of 50);
        ``since``/``until``: Unix times bounding their start (0: no bound)."""
        request = hpb.ListHistoryRequest(limit=limit, offset=offset, since=since, until=until)
        return await self._unary(self.history.List, request)

    async def search_history(self, query: str, limit: int = 0) -> hpb.SearchHistoryResponse:
        """Final segments holding every word of ``query`` (``word*``: a prefix)."""
        request = hpb.SearchHistoryRequest(query=query, limit=limit)
        return await self._unary(self.history.Search, request)

    async def transcript(self, session_id: str) -> hpb.HistoryTranscript:
        return await self._unary(self.history.Get, hpb.GetTranscriptRequest(id=session_id))

    async def export_transcript(self, session_id: str, fmt: str = "txt") -> bytes:
        """The document ``audiototext history export --format FMT`` writes (txt, srt, vtt,
        json), byte for byte."""
        request = hpb.ExportTranscriptRequest(id=session_id, format=fmt)
        exported: hpb.ExportedTranscript = await self._unary(self.history.Export, request)
        return exported.data

    async def delete_transcript(self, session_id: str) -> None:
        request = hpb.DeleteTranscriptRequest(id=session_id)
        await self._unary(self.history.Delete, request)
