"""One connection of a resumable stream, for every transport (gRPC, WebSocket, ...).

An adapter turns its protocol into an async iterator of the wire's ``StreamingRequest`` and a
``send`` callback for ``StreamingResponse``, then calls :meth:`StreamService.run`. Everything
else is here, once: config validation, resume, chunk numbering, Acks with credit, limits,
metrics, and why a stream ends (a :class:`StatusError` the adapter maps to its own codes).
Resume bookkeeping and the grace period live in :mod:`audiototext.server.sessions`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from audiototext._aio import wait_event
from audiototext.errors import AudioError
from audiototext.server.alerts import ActiveAlert
from audiototext.server.devices import device_of
from audiototext.server.logging_setup import session_context
from audiototext.server.pool import ModelPool
from audiototext.server.session_state import (
    CorruptStateError,
    StoreUnavailableError,
    state_ttl_s,
)
from audiototext.server.sessions import (
    Attachment,
    ServerSession,
    SessionExpiredError,
    SessionStore,
)
from audiototext.server.status import Status, StatusError
from audiototext.server.validation import check_choice, spec_from_fields, stream_spec
from audiototext.streaming.types import (
    BufferFullError,
    OverloadedError,
    SpeechEvent,
    SpeechEventKind,
    StreamResult,
)
from audiototext.wire._proto import transcription_pb2 as pb
from audiototext.wire.codec import ChunkError

if TYPE_CHECKING:
    from audiototext.server.controller import Controller

__all__ = ["ConnectionLost", "Send", "StreamLimits", "StreamService"]

log = logging.getLogger(__name__)

_WAKE_S = 0.1  # the writer re-checks credit at least this often

Send = Callable[[pb.StreamingResponse], Awaitable[None]]


class ConnectionLost(Exception):
    """Raised by an adapter's request iterator or ``send`` when its connection is gone.

    The session is detached and waits ``resume_grace_s`` for a reconnect; nothing is sent.
    (gRPC never needs it: a half-closed call can still receive, and a dead one is cancelled.)
    """


@dataclass(frozen=True)
class StreamLimits:
    """What one stream may send (``serve --max-chunk-bytes``, ``--max-buffered-s``), and how
    often it is told the server's metrics."""

    max_chunk_bytes: int = 1 << 20
    max_buffered_s: float = 30.0
    metrics_interval_s: float = 1.0
    partial_interval_ms: int | None = None  # for streams that name none; None: StreamOptions'


def result_message(event_seq: int, ev: StreamResult | SpeechEvent) -> pb.StreamingResponse:
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
        self.lost = False

    def fail(self, error: StatusError) -> None:
        if self.error is None:
            self.error = error
        self.attachment.wake.set()

    def lose(self) -> None:
        self.lost = True
        self.attachment.wake.set()


class StreamService:
    """Serves stream connections of any transport: one :meth:`run` per connection.

    Each new stream names its model (empty: the server's default); ``pool`` loads it on first
    use and the session holds a lease on it until its engine stream ends.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        pool: ModelPool,
        limits: StreamLimits,
        alerts: Callable[[], Sequence[ActiveAlert]] = tuple,
        controller: Controller | None = None,
    ) -> None:
        """``controller``: moves new streams to a cheaper model under sustained overload and
        sets the bit rate Acks ask of clients (None: neither)."""
        self.store = store
        self.controller = controller
        self.pool = pool
        self.model = pool.default.key.name
        self.limits = limits
        self.alerts = alerts  # the server's raised alerts, sent with each Metrics message

    async def run(
        self, requests: AsyncIterator[pb.StreamingRequest], send: Send, *, transport: str = ""
    ) -> None:
        """Serve one connection until the stream ends; a refusal raises :class:`StatusError`.
        ``transport`` ("grpc", "websocket", ...) is what the history says a session came over.

        Returns normally when the stream completed (every result sent), when the request
        iterator ended before its first message, or when the connection was lost.
        """
        try:
            await self._serve(requests, send, transport)
        except StatusError as exc:
            self.store.observer.error("stream", exc.code.name)
            raise

    async def _serve(
        self, requests: AsyncIterator[pb.StreamingRequest], send: Send, transport: str
    ) -> None:
        try:
            first = await anext(requests)
        except (StopAsyncIteration, ConnectionLost):
            return
        session, resumed, cursor = await self._open(first, transport)
        session_context.set(session.id)  # this task's log records name the session
        conn = _Connection(session, session.attach())
        reader: asyncio.Task[None] | None = None
        try:
            await send(
                pb.StreamingResponse(
                    started=pb.SessionStarted(
                        session_id=session.id,
                        resumed=resumed,
                        next_seq=session.next_seq,
                        credit_ms=self._credit_ms(session),
                        model=session.spec.options.model,
                        resume_grace_s=self.store.resume_grace_s,
                        session_store=self.store.state_store is not None,
                    )
                )
            )
            reader = asyncio.create_task(self._read(requests, conn), name=f"read-{session.id}")
            await self._write(send, conn, cursor)
        except ConnectionLost:
            return
        finally:
            if reader is not None:
                reader.cancel()
            session.detach(conn.attachment)
            if self.controller is not None and session.completed:
                self.controller.forget(session.id)
        if conn.error is not None:
            raise conn.error
        if conn.attachment.replaced:
            raise StatusError(
                Status.ABORTED, "a newer connection resumed this session; this one is closed"
            )
        if session.failed is not None and not conn.lost:
            raise StatusError(
                Status.INTERNAL,
                f"the streaming engine failed: {session.failed}; start a new stream",
            )

    async def _open(
        self, first: pb.StreamingRequest, transport: str
    ) -> tuple[ServerSession, bool, int]:
        kind = first.WhichOneof("request")
        if kind != "config":
            raise StatusError(
                Status.INVALID_ARGUMENT,
                f"the first message of a stream must be a StreamConfig, not {kind or 'empty'}; "
                "send the config, then audio",
            )
        if self.store.closing:
            raise StatusError(
                Status.UNAVAILABLE,
                "the server is shutting down; connect to another",
                try_later=True,
            )
        cfg = first.config
        if cfg.session_id:
            try:
                session = self.store.get(cfg.session_id)
            except SessionExpiredError as exc:
                if self.store.state_store is None:
                    raise StatusError(Status.NOT_FOUND, str(exc)) from exc
                return await self._restore(cfg, transport, exc)
            want = max(1, int(cfg.resume_from_event))
            if want < session.oldest_event():
                raise StatusError(
                    Status.DATA_LOSS,
                    f"results from event {want} on are no longer kept (oldest kept: "
                    f"{session.oldest_event()}); start a new stream",
                )
            if session.failed is not None:
                raise StatusError(
                    Status.INTERNAL,
                    f"this session failed ({session.failed}); start a new stream",
                )
            return session, True, want
        spec = stream_spec(
            cfg,
            model=self.model,
            max_buffered_s=self.limits.max_buffered_s,
            partial_interval_ms=self.limits.partial_interval_ms,
        )
        choice = await self.pool.choose(cfg.model, device_of(cfg.device))
        check_choice(choice, spec.options.language, spec.options.task)
        if self.controller is not None:
            choice = await self.controller.substitute(
                choice, spec.options.language, spec.options.task
            )
        spec = replace(spec, options=replace(spec.options, model=choice.key.name))
        lease = await self.pool.acquire(choice)  # loads the model the first time
        try:
            if self.store.closing:
                raise StatusError(
                    Status.UNAVAILABLE,
                    "the server is shutting down; connect to another",
                    try_later=True,
                )
            session = self.store.create(
                spec, transport=transport, recognizer=lease.engine, on_done=lease.release
            )
        except OverloadedError as exc:
            lease.release()
            raise StatusError(Status.RESOURCE_EXHAUSTED, str(exc), try_later=True) from exc
        except ValueError as exc:  # the engine refused the options (e.g. the language)
            lease.release()
            raise StatusError(Status.INVALID_ARGUMENT, f"StreamConfig: {exc}") from exc
        except BaseException:
            lease.release()
            raise
        return session, False, 1

    async def _restore(
        self, cfg: pb.StreamConfig, transport: str, missing: SessionExpiredError
    ) -> tuple[ServerSession, bool, int]:
        """A session this process does not hold, from the state store (another server's)."""
        store = self.store.state_store
        assert store is not None
        try:
            state = await asyncio.wait_for(asyncio.to_thread(store.load, cfg.session_id), 5.0)
        except CorruptStateError as exc:
            log.warning("stream %s: stored state unreadable: %s", cfg.session_id, exc)
            raise StatusError(
                Status.DATA_LOSS,
                f"the stored state of session {cfg.session_id!r} cannot be read ({exc}); "
                "start a new stream",
            ) from exc
        except (StoreUnavailableError, TimeoutError) as exc:
            raise StatusError(
                Status.UNAVAILABLE,
                f"session {cfg.session_id!r} is not on this server and the session store "
                f"cannot be reached ({exc}); retry later",
                try_later=True,
            ) from exc
        if state is None:
            raise StatusError(
                Status.NOT_FOUND,
                f"{missing} (nor is it in the session store, where it expires "
                f"{state_ttl_s(self.store.resume_grace_s):g} s after its server's last write)",
            )
        if self.store.get_or_none(cfg.session_id) is not None:  # restored meanwhile
            return self.store.get(cfg.session_id), True, max(1, int(cfg.resume_from_event))
        try:
            spec = spec_from_fields(state.spec)
        except (KeyError, TypeError, ValueError) as exc:
            raise StatusError(
                Status.DATA_LOSS, f"the stored config of this session is unusable ({exc})"
            ) from exc
        choice = await self.pool.choose(spec.options.model, device_of(cfg.device))
        lease = await self.pool.acquire(choice)
        try:
            session = self.store.restore(
                state,
                spec,
                lease.engine,
                last_event_seen=max(0, int(cfg.resume_from_event) - 1),
                transport=transport,
                on_done=lease.release,
            )
        except OverloadedError as exc:
            lease.release()
            raise StatusError(Status.RESOURCE_EXHAUSTED, str(exc), try_later=True) from exc
        except (ValueError, SessionExpiredError) as exc:
            lease.release()
            raise StatusError(
                Status.DATA_LOSS, f"the stored state of this session is unusable ({exc})"
            ) from exc
        except BaseException:
            lease.release()
            raise
        return session, True, max(1, int(cfg.resume_from_event))

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
                            Status.INVALID_ARGUMENT, "Control.action must be FLUSH or FINISH"
                        )
                elif kind == "config":
                    raise StatusError(
                        Status.INVALID_ARGUMENT,
                        "a stream takes one StreamConfig, as its first message; this one sent "
                        "a second (to resume, open a new stream with session_id)",
                    )
                else:
                    raise StatusError(Status.INVALID_ARGUMENT, "empty StreamingRequest")
                conn.attachment.wake.set()
            # The request stream ended without FINISH. A dropped connection looks the same
            # to the server, so this is not taken as the end of the audio: the session waits
            # for a resume like a detached one and is finalised after the grace period.
            if not session.finishing and not conn.attachment.replaced:
                session.half_closed_at = time.monotonic()
        except ConnectionLost:
            conn.lose()
        except StatusError as exc:
            conn.fail(exc)
            self._abandon(session)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("stream %s: reading requests failed", session.id)
            conn.fail(StatusError(Status.INTERNAL, f"internal error: {exc}"))
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
                Status.INVALID_ARGUMENT,
                f"chunk seq {seq} skips {session.next_seq}..{seq - 1}; number chunks "
                "1, 2, 3, ... and resend from SessionStarted.next_seq after a reconnect",
            )
        if session.finishing:
            raise StatusError(
                Status.FAILED_PRECONDITION, "audio after FINISH; open a new stream for more audio"
            )
        if len(chunk.data) > self.limits.max_chunk_bytes:
            raise StatusError(
                Status.RESOURCE_EXHAUSTED,
                f"chunk {seq} has {len(chunk.data)} bytes, over the limit of "
                f"{self.limits.max_chunk_bytes} (--max-chunk-bytes); send smaller chunks, "
                "e.g. 100 ms each",
            )
        encoding = int(chunk.encoding) or session.spec.encoding
        try:
            samples = session.decoder.decode(chunk.data, encoding, seq)
            if samples.size:
                session.engine.accept(samples, session.spec.sample_rate_hz, session.spec.channels)
                self.store.observer.audio(session)
            session.chunk_received(seq)
        except BufferFullError as exc:
            raise StatusError(
                Status.RESOURCE_EXHAUSTED,
                f"chunk {seq}: {exc}; send no more audio than Ack.credit_ms allows "
                f"(at most {self.limits.max_buffered_s:g} s may wait unprocessed)",
            ) from exc
        except (ChunkError, AudioError, ValueError) as exc:
            raise StatusError(Status.INVALID_ARGUMENT, str(exc)) from exc
        session.next_seq = seq + 1

    async def _write(self, send: Send, conn: _Connection, cursor: int) -> None:
        session = conn.session
        att = conn.attachment
        last_ack = -1
        last_credit = -1
        last_cap = 0
        last_stored = -1
        next_metrics = time.monotonic() + self.limits.metrics_interval_s
        while not (att.replaced or conn.error is not None or conn.lost):
            att.wake.clear()
            for event_seq, event in session.events_from(cursor):
                await send(result_message(event_seq, event))
                cursor = event_seq + 1
            acked = session.next_seq - 1
            credit = self._credit_ms(session)
            cap = self.controller.bitrate_cap(session.id) if self.controller else 0
            if (
                acked != last_ack
                or cap != last_cap
                or session.stored_seq != last_stored
                or (
                    credit != last_credit and (last_credit == 0 or abs(credit - last_credit) >= 250)
                )
            ):
                lag_ms = int(session.lag_s() * 1000)
                ack = pb.Ack(
                    seq=acked,
                    lag_ms=lag_ms,
                    credit_ms=credit,
                    max_bitrate_bps=cap,
                    stored_seq=session.stored_seq,
                )
                await send(pb.StreamingResponse(ack=ack))
                last_ack, last_credit, last_cap = acked, credit, cap
                last_stored = session.stored_seq
            now = time.monotonic()
            if now >= next_metrics:
                stats = (session.recognizer or self.store.recognizer).stats()
                await send(
                    pb.StreamingResponse(
                        metrics=pb.Metrics(
                            rtf=stats.rtf,
                            latency_ms=stats.final_latency_ms_p95,
                            queue_depth=stats.queue_depth,
                            active_streams=self.store.open_count(),
                            alerts=[
                                pb.Alert(name=a.name, message=a.message, since=a.since)
                                for a in self.alerts()
                            ],
                        )
                    )
                )
                next_metrics = now + self.limits.metrics_interval_s
            if session.completed and cursor > session.event_count:
                return
            await wait_event(att.wake, _WAKE_S)
