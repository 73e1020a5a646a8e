"""``Transcription.StreamingTranscribe``: one connection of a resumable stream.

The request reader feeds the session's engine (acknowledging chunks by ``seq``); the response
writer sends the session's numbered events, Acks with credit, and metrics. Resume, event
numbering and the grace period live in :mod:`audiototext.server.sessions`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from audiototext._aio import wait_event
from audiototext.errors import AudioError
from audiototext.server.grpc.status import StatusError
from audiototext.server.grpc.validation import stream_spec
from audiototext.server.sessions import (
    Attachment,
    ServerSession,
    SessionExpiredError,
    SessionStore,
)
from audiototext.streaming.types import (
    BufferFullError,
    OverloadedError,
    SpeechEvent,
    SpeechEventKind,
    StreamResult,
)
from audiototext.wire._proto import transcription_pb2 as pb
from audiototext.wire.codec import ChunkError

__all__ = ["ServiceLimits", "StreamingTranscription"]

log = logging.getLogger(__name__)

_WAKE_S = 0.1  # the writer re-checks credit at least this often


@dataclass(frozen=True)
class ServiceLimits:
    """What one stream may send (``serve --max-chunk-bytes``, ``--max-buffered-s``), and how
    often it is told the server's metrics."""

    max_chunk_bytes: int = 1 << 20
    max_buffered_s: float = 30.0
    metrics_interval_s: float = 1.0


def _result_message(event_seq: int, ev: StreamResult | SpeechEvent) -> pb.StreamingResponse:
    if isinstance(ev, SpeechEvent):
        kind = pb.SpeechEvent.BEGIN if ev.kind is SpeechEventKind.BEGIN else pb.SpeechEvent.END
        return pb.StreamingResponse(
            event_seq=event_seq, speech_event=pb.SpeechEvent(kind=kind, time_s=ev.time_s)
        )
    return pb.StreamingResponse(
        event_seq=event_seq,
        result=pb.Result(
            utterance_id=ev.utterance_id,
            is_final=ev.is_final,
            stability=ev.stability,
            text=ev.text,
            stable_text=ev.stable_text,
            segments=[pb.Segment(start_s=ev.start_s, end_s=ev.end_s, text=ev.text)],
            audio_processed_s=ev.audio_processed_s,
            words=[pb.Word(text=w.text, start_s=w.start_s, end_s=w.end_s) for w in ev.words],
        ),
    )


class _Connection:
    """Per-connection state shared by the request reader and the response writer."""

    def __init__(self, session: ServerSession, attachment: Attachment) -> None:
        self.session = session
        self.attachment = attachment
        self.error: StatusError | None = None

    def fail(self, code: grpc.StatusCode, message: str) -> None:
        if self.error is None:
            self.error = StatusError(code, message)
        self.attachment.wake.set()


class StreamingTranscription:
    """Serves ``StreamingTranscribe`` calls: one ``handle`` per connection."""

    def __init__(self, store: SessionStore, *, model: str, limits: ServiceLimits) -> None:
        self.store = store
        self.model = model
        self.limits = limits

    async def handle(
        self,
        request_iterator: AsyncIterator[pb.StreamingRequest],
        context: grpc.aio.ServicerContext[pb.StreamingRequest, pb.StreamingResponse],
    ) -> None:
        requests = aiter(request_iterator)
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            return
        try:
            session, resumed, cursor = self._open(first)
        except StatusError as exc:
            await context.abort(exc.code, exc.message)
        conn = _Connection(session, session.attach())
        await context.write(
            pb.StreamingResponse(
                started=pb.SessionStarted(
                    session_id=session.id,
                    resumed=resumed,
                    next_seq=session.next_seq,
                    credit_ms=self._credit_ms(session),
                    model=self.model,
                    resume_grace_s=self.store.resume_grace_s,
                )
            )
        )
        reader = asyncio.create_task(self._read(requests, conn), name=f"read-{session.id}")
        try:
            await self._write(context, conn, cursor)
        finally:
            reader.cancel()
            session.detach(conn.attachment)
        if conn.error is not None:
            await context.abort(conn.error.code, conn.error.message)
        if conn.attachment.replaced:
            await context.abort(
                grpc.StatusCode.ABORTED,
                "a newer connection resumed this session; this one is closed",
            )
        if session.failed is not None:
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"the streaming engine failed: {session.failed}; start a new stream",
            )

    def _open(self, first: pb.StreamingRequest) -> tuple[ServerSession, bool, int]:
        kind = first.WhichOneof("request")
        if kind != "config":
            raise StatusError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the first message of a stream must be a StreamConfig, not {kind or 'empty'}; "
                "send the config, then audio",
            )
        if self.store.closing:
            raise StatusError(
                grpc.StatusCode.UNAVAILABLE, "the server is shutting down; connect to another"
            )
        cfg = first.config
        if cfg.session_id:
            try:
                session = self.store.get(cfg.session_id)
            except SessionExpiredError as exc:
                raise StatusError(grpc.StatusCode.NOT_FOUND, str(exc)) from exc
            want = max(1, int(cfg.resume_from_event))
            if want < session.oldest_event():
                raise StatusError(
                    grpc.StatusCode.DATA_LOSS,
                    f"results from event {want} on are no longer kept (oldest kept: "
                    f"{session.oldest_event()}); start a new stream",
                )
            if session.failed is not None:
                raise StatusError(
                    grpc.StatusCode.INTERNAL,
                    f"this session failed ({session.failed}); start a new stream",
                )
            return session, True, want
        spec = stream_spec(cfg, model=self.model, max_buffered_s=self.limits.max_buffered_s)
        try:
            session = self.store.create(spec)
        except OverloadedError as exc:
            raise StatusError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from exc
        except ValueError as exc:  # the engine refused the options (e.g. the language)
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, f"StreamConfig: {exc}") from exc
        return session, False, 1

    def _credit_ms(self, session: ServerSession) -> int:
        high_water_s = self.limits.max_buffered_s / 2
        return max(0, int((high_water_s - session.lag_s()) * 1000))

    async def _read(self, requests: AsyncIterator[pb.StreamingRequest], conn: _Connection) -> None:
        session = conn.session
        try:
            async for req in requests:
                if conn.attachment.replaced or conn.error is not None:
                    return
                kind = req.WhichOneof("request")
                if kind == "audio":
                    self._accept(session, req.audio)
                elif kind == "control":
                    if req.control.action == pb.Control.FLUSH:
                        session.engine.flush()
                    elif req.control.action == pb.Control.FINISH:
                        session.request_finish()
                    else:
                        raise StatusError(
                            grpc.StatusCode.INVALID_ARGUMENT,
                            "Control.action must be FLUSH or FINISH",
                        )
                elif kind == "config":
                    raise StatusError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "a stream takes one StreamConfig, as its first message; this one sent "
                        "a second (to resume, open a new stream with session_id)",
                    )
                else:
                    raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, "empty StreamingRequest")
                conn.attachment.wake.set()
            # The request stream ended without FINISH. A dropped connection looks the same
            # to the server, so this is not taken as the end of the audio: the session waits
            # for a resume like a detached one and is finalised after the grace period.
            if not session.finishing and not conn.attachment.replaced:
                session.half_closed_at = time.monotonic()
        except StatusError as exc:
            conn.fail(exc.code, exc.message)
            self._abandon(session)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("stream %s: reading requests failed", session.id)
            conn.fail(grpc.StatusCode.INTERNAL, f"internal error: {exc}")
            self._abandon(session)

    def _abandon(self, session: ServerSession) -> None:
        """A stream that broke the protocol cannot be resumed: free its engine slot now."""
        session.request_finish()
        self.store.remove(session)

    def _accept(self, session: ServerSession, chunk: pb.AudioChunk) -> None:
        if session.finishing and self.store.closing:
            # Graceful shutdown finalises the audio received so far; chunks still in flight
            # are dropped unacknowledged rather than failing the stream before its finals.
            return
        seq = int(chunk.seq) or session.next_seq
        if seq < session.next_seq:
            return  # a resent chunk the server already has; the next Ack covers it
        if seq > session.next_seq:
            raise StatusError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"chunk seq {seq} skips {session.next_seq}..{seq - 1}; number chunks "
                "1, 2, 3, ... and resend from SessionStarted.next_seq after a reconnect",
            )
        if session.finishing:
            raise StatusError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "audio after FINISH; open a new stream for more audio",
            )
        if len(chunk.data) > self.limits.max_chunk_bytes:
            raise StatusError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"chunk {seq} has {len(chunk.data)} bytes, over the limit of "
                f"{self.limits.max_chunk_bytes} (--max-chunk-bytes); send smaller chunks, "
                "e.g. 100 ms each",
            )
        encoding = int(chunk.encoding) or session.spec.encoding
        try:
            samples = session.decoder.decode(chunk.data, encoding, seq)
            if samples.size:
                session.engine.accept(samples, session.spec.sample_rate_hz, session.spec.channels)
        except BufferFullError as exc:
            raise StatusError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"chunk {seq}: {exc}; send no more audio than Ack.credit_ms allows "
                f"(at most {self.limits.max_buffered_s:g} s may wait unprocessed)",
            ) from exc
        except (ChunkError, AudioError, ValueError) as exc:
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
        session.next_seq = seq + 1

    async def _write(
        self,
        context: grpc.aio.ServicerContext[pb.StreamingRequest, pb.StreamingResponse],
        conn: _Connection,
        cursor: int,
    ) -> None:
        session = conn.session
        att = conn.attachment
        last_ack = -1
        last_credit = -1
        next_metrics = time.monotonic() + self.limits.metrics_interval_s
        while not (att.replaced or conn.error is not None):
            att.wake.clear()
            for event_seq, event in session.events_from(cursor):
                await context.write(_result_message(event_seq, event))
                cursor = event_seq + 1
            acked = session.next_seq - 1
            credit = self._credit_ms(session)
            if acked != last_ack or (
                credit != last_credit and (last_credit == 0 or abs(credit - last_credit) >= 250)
            ):
                lag_ms = int(session.lag_s() * 1000)
                await context.write(
                    pb.StreamingResponse(ack=pb.Ack(seq=acked, lag_ms=lag_ms, credit_ms=credit))
                )
                last_ack, last_credit = acked, credit
            now = time.monotonic()
            if now >= next_metrics:
                stats = self.store.recognizer.stats()
                await context.write(
                    pb.StreamingResponse(
                        metrics=pb.Metrics(
                            rtf=stats.rtf,
                            latency_ms=stats.final_latency_ms_p95,
                            queue_depth=stats.queue_depth,
                            active_streams=self.store.open_count(),
                        )
                    )
                )
                next_metrics = now + self.limits.metrics_interval_s
            if session.completed and cursor > session.event_count:
                return
            await wait_event(att.wake, _WAKE_S)
