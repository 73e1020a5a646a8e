"""Async gRPC client: streams with resume, credit flow control and adaptive compression."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc
import numpy as np
from numpy.typing import NDArray

from audiototext._aio import wait_event
from audiototext.client._adaptive import DEFAULT_LADDER, AdaptiveEncoding, Level
from audiototext.wire._proto import (
    models_pb2_grpc,
    system_pb2,
    system_pb2_grpc,
    transcription_pb2,
    transcription_pb2_grpc,
)
from audiototext.wire.codec import OPUS_RATES_HZ, Encoding, OpusEncoder, encode_pcm16

__all__ = [
    "AsyncClient",
    "ClientError",
    "ReconnectPolicy",
    "Stream",
    "StreamResult",
    "StreamSettings",
    "StreamSpeechEvent",
    "StreamStats",
]

log = logging.getLogger(__name__)


pb = transcription_pb2

# Status codes after which the stream is retried (resumed): the connection broke, not the
# request. ABORTED: the server saw a newer connection of ours take the session over.
_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
    }
)


class ClientError(Exception):
    """The server refused the stream or the connection could not be restored.

    ``code`` is the gRPC status code (``None`` when reconnecting gave up).
    """

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ReconnectPolicy:
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    multiplier: float = 2.0
    max_attempts: int = 30  # consecutive failed connection attempts before giving up
    # Before the server first accepted the stream there is nothing to resume: a server that
    # is not there (or speaks TLS to a plaintext client) is reported after this many.
    max_initial_attempts: int = 3


@dataclass(frozen=True)
class StreamSettings:
    sample_rate_hz: int = 16_000
    channels: int = 1
    language: str | None = None
    interim_results: bool = True
    partial_interval_ms: int = 0  # 0: the server's default
    endpoint_silence_ms: int = 0
    max_segment_s: float = 0.0
    chunk_ms: int = 100
    # "auto": PCM16, switching to Opus bit rates when the link cannot carry it.
    compression: Literal["auto", "pcm16", "float32", "opus"] = "auto"
    ladder: tuple[Level, ...] = DEFAULT_LADDER
    opus_bit_rate: int = 24_000  # compression="opus"
    max_unacked_s: float = 120.0  # ring buffer of chunks the server has not acknowledged
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)

    def __post_init__(self) -> None:
        if not 8000 <= self.sample_rate_hz <= 48000:
            raise ValueError("sample_rate_hz must be between 8000 and 48000")
        if not 10 <= self.chunk_ms <= 1000:
            raise ValueError("chunk_ms must be between 10 and 1000")
        if self.max_unacked_s * 1000 < 2 * self.chunk_ms:
            raise ValueError("max_unacked_s must hold at least two chunks")


@dataclass(frozen=True)
class StreamResult:
    utterance_id: int
    is_final: bool
    text: str
    stable_text: str
    stability: float
    start_s: float
    end_s: float
    audio_processed_s: float
    words: tuple[tuple[str, float, float], ...] = ()


@dataclass(frozen=True)
class StreamSpeechEvent:
    kind: Literal["begin", "end"]
    time_s: float


@dataclass
class StreamStats:
    reconnects: int = 0
    chunks_sent: int = 0  # including resends
    chunks_resent: int = 0
    bytes_sent: int = 0
    duplicates_dropped: int = 0
    encodings: dict[str, int] = field(default_factory=dict)  # chunks made per level
    switches: list[str] = field(default_factory=list)
    ack_rtt_ms: float | None = None
    server_lag_ms: int = 0
    credit_waits: int = 0
    max_inflight_ms: float = 0.0
    rtf: float = 0.0
    server_latency_ms: float = 0.0


@dataclass
class _Chunk:
    seq: int
    data: bytes
    encoding: Encoding
    ms: float
    sent_at: float = 0.0


class _Done:
    pass


_DONE = _Done()


class Stream:
    """One live transcription stream. Use through :meth:`AsyncClient.stream`.

    ``send`` audio (float32, interleaved channels) at any pace: chunks wait in a bounded ring
    buffer until the server acknowledges them, so a reconnect resends exactly the ones it has
    not got. ``results()`` yields each result and speech event once, in order.
    """

    def __init__(self, client: AsyncClient, settings: StreamSettings) -> None:
        self._client = client
        self.settings = settings
        self.session_id = ""
        self.stats = StreamStats()
        opus_ok = settings.sample_rate_hz in OPUS_RATES_HZ and settings.channels <= 2
        if settings.compression == "auto":
            ladder = settings.ladder if opus_ok else (Level("PCM16"),)
        elif settings.compression == "opus":
            if not opus_ok:
                raise ValueError(f"Opus cannot carry {settings.sample_rate_hz} Hz audio")
            ladder = (Level("OPUS", settings.opus_bit_rate),)
        else:
            ladder = (Level(settings.compression.upper()),)
        self.adaptive = AdaptiveEncoding(ladder, enabled=settings.compression == "auto")
        self._opus: OpusEncoder | None = None
        self._pending = np.zeros(0, dtype=np.float32)
        self._ring: deque[_Chunk] = deque()  # unacknowledged, in seq order
        self._ring_ms = 0.0
        self._next_seq = 1  # of the next chunk made
        self._send_seq = 1  # next chunk to write on the current connection
        self._acked = 0
        self._credit_ms = 0.0
        self._flush_after: list[int] = []  # send FLUSH once chunks up to this seq are sent
        self._finish_requested = False
        self._last_event = 0
        self._finals_seen: set[int] = set()
        self._results: asyncio.Queue[StreamResult | StreamSpeechEvent | _Done | ClientError] = (
            asyncio.Queue()
        )
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._error: ClientError | None = None
        self._closed = False

    # ---- public ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audiototext-stream")
        started = asyncio.create_task(self._started.wait())
        await asyncio.wait({started, self._task}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if not self._started.is_set():
            self._raise_if_failed()
            raise ClientError("the stream ended before it started")

    async def send(self, audio: NDArray[np.floating]) -> None:
        """Queue audio; waits while the ring buffer of unacknowledged audio is full."""
        if self._finish_requested:
            raise ClientError("send() after finish()")
        self._raise_if_failed()
        samples = np.asarray(audio, dtype=np.float32).reshape(-1)
        self._pending = np.concatenate([self._pending, samples])
        step = self.settings.sample_rate_hz * self.settings.channels * self.settings.chunk_ms
        step //= 1000
        while self._pending.shape[0] >= step:
            block, self._pending = self._pending[:step], self._pending[step:]
            await self._wait_room()
            self._make_chunk(block)

    async def flush(self) -> None:
        """Ask the server to finalise the current utterance after the audio sent so far."""
        await self._drain_pending()
        self._flush_after.append(self._next_seq - 1)
        self._changed.set()

    async def finish(self) -> None:
        """No more audio: the server finalises the rest and ``results()`` ends."""
        if self._finish_requested:
            return
        await self._drain_pending()
        if self._opus is not None:
            tail = self._opus.flush()
            if tail:
                self._add_chunk(tail, Encoding.OPUS, 0.0)
        self._finish_requested = True
        self._changed.set()

    async def results(self) -> AsyncIterator[StreamResult | StreamSpeechEvent]:
        while True:
            item = await self._results.get()
            if isinstance(item, _Done):
                return
            if isinstance(item, ClientError):
                raise item
            yield item

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    # ---- chunks ---------------------------------------------------------------------------

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
        if self._task is not None and self._task.done() and not self._task.cancelled():
            exc = self._task.exception()
            if exc is not None:
                raise ClientError(f"the stream failed: {exc}") from exc

    async def _drain_pending(self) -> None:
        if self._pending.shape[0]:
            block, self._pending = self._pending, np.zeros(0, dtype=np.float32)
            await self._wait_room()
            self._make_chunk(block)

    async def _wait_room(self) -> None:
        limit = self.settings.max_unacked_s * 1000
        for _ in range(1_000_000):
            if self._ring_ms + self.settings.chunk_ms <= limit:
                return
            self._raise_if_failed()
            if self._task is None or self._task.done():
                raise ClientError("the stream is closed")
            self._changed.clear()
            await wait_event(self._changed, 0.5)
        raise ClientError("the server acknowledges no audio")

    def _make_chunk(self, block: NDArray[np.float32]) -> None:
        level = self.adaptive.level
        frames = block.shape[0] // self.settings.channels
        ms = 1000.0 * frames / self.settings.sample_rate_hz
        if level.encoding != "OPUS" and self._opus is not None:
            tail = self._opus.flush()  # end the Opus run cleanly before PCM resumes
            self._opus = None
            if tail:
                self._add_chunk(tail, Encoding.OPUS, 0.0)
        if level.encoding == "OPUS":
            if self._opus is None or self._opus.bit_rate != level.bit_rate:
                if self._opus is not None:
                    tail = self._opus.flush()
                    if tail:
                        self._add_chunk(tail, Encoding.OPUS, 0.0)
                self._opus = OpusEncoder(
                    self.settings.sample_rate_hz, self.settings.channels, level.bit_rate
                )
            data = self._opus.encode(block)
            encoding = Encoding.OPUS
        elif level.encoding == "FLOAT32":
            data = block.astype("<f4").tobytes()
            encoding = Encoding.FLOAT32
        else:
            data = encode_pcm16(block)
            encoding = Encoding.PCM16
        self.stats.encodings[str(level)] = self.stats.encodings.get(str(level), 0) + 1
        self._add_chunk(data, encoding, ms)

    def _add_chunk(self, data: bytes, encoding: Encoding, ms: float) -> None:
        self._ring.append(_Chunk(self._next_seq, data, encoding, ms))
        self._ring_ms += ms
        self._next_seq += 1
        self._changed.set()

    def _inflight_ms(self) -> float:
        return sum(c.ms for c in self._ring if c.seq < self._send_seq)

    def _on_ack(self, ack: pb.Ack) -> None:
        now = time.monotonic()
        self._credit_ms = float(ack.credit_ms)
        self.stats.server_lag_ms = int(ack.lag_ms)
        while self._ring and self._ring[0].seq <= ack.seq:
            chunk = self._ring.popleft()
            self._ring_ms -= chunk.ms
            if chunk.seq == ack.seq and chunk.sent_at:
                rtt = (now - chunk.sent_at) * 1000
                if self.adaptive.on_ack(chunk.seq, rtt, now, self._next_seq):
                    self.stats.switches.append(str(self.adaptive.level))
                    log.info("link: switching to %s", self.adaptive.level)
                self.stats.ack_rtt_ms = self.adaptive.rtt_ms
        self._acked = max(self._acked, int(ack.seq))
        self._changed.set()

    # ---- connection -----------------------------------------------------------------------

    def _config(self) -> pb.StreamingRequest:
        s = self.settings
        cfg = pb.StreamConfig(
            language=s.language or "",
            encoding=Encoding[self.adaptive.ladder[0].encoding].name,
            sample_rate_hz=s.sample_rate_hz,
            channels=s.channels,
            interim_results=s.interim_results,
            partial_interval_ms=s.partial_interval_ms,
            endpoint_silence_ms=s.endpoint_silence_ms,
            max_segment_s=s.max_segment_s,
        )
        if self.session_id:
            cfg.session_id = self.session_id
            cfg.resume_from_seq = self._acked + 1
            cfg.resume_from_event = self._last_event + 1
        return pb.StreamingRequest(config=cfg)

    async def _run(self) -> None:
        policy = self.settings.reconnect
        failures = 0
        backoff = policy.initial_backoff_s
        try:
            while True:
                try:
                    done = await self._connect_once()
                except grpc.aio.AioRpcError as exc:
                    code = exc.code()
                    if code not in _TRANSIENT or (
                        code == grpc.StatusCode.INTERNAL and "engine" in (exc.details() or "")
                    ):
                        raise ClientError(exc.details() or str(code), code) from exc
                    failures += 1
                    if not self._started.is_set() and failures >= policy.max_initial_attempts:
                        raise ClientError(
                            f"cannot open a stream on {self._client.target} "
                            f"({failures} attempts): {exc.details()}",
                            code,
                        ) from exc
                    if failures > policy.max_attempts:
                        raise ClientError(
                            f"gave up after {policy.max_attempts} reconnection attempts: "
                            f"{exc.details()}",
                            code,
                        ) from exc
                    self.stats.reconnects += 1
                    delay = backoff * (0.5 + random.random() / 2)
                    log.info("stream interrupted (%s); reconnecting in %.2f s", code, delay)
                    await asyncio.sleep(delay)
                    backoff = min(policy.max_backoff_s, backoff * policy.multiplier)
                    continue
                if done:
                    self._results.put_nowait(_DONE)
                    return
                failures = 0
                backoff = policy.initial_backoff_s
        except ClientError as exc:
            self._error = exc
            self._results.put_nowait(exc)
            self._changed.set()
        except asyncio.CancelledError:
            self._results.put_nowait(_DONE)
            raise

    async def _connect_once(self) -> bool:
        """Run one connection; True when the stream completed, False to reconnect."""
        stub = self._client._transcription
        call = stub.StreamingTranscribe(metadata=self._client._metadata)
        writer: asyncio.Task[None] | None = None
        try:
            try:
                await call.write(self._config())
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                # The server ended the call before the config went out (a refused token):
                # the write only says "Internal error from Core"; the call's status says why.
                code = await call.code()
                if code == grpc.StatusCode.OK:
                    raise
                raise grpc.aio.AioRpcError(
                    code,
                    await call.initial_metadata(),
                    await call.trailing_metadata(),
                    await call.details(),
                ) from None
            first = await call.read()
            if first is grpc.aio.EOF:
                await call.wait_for_connection()
                code = await call.code()
                raise ClientError(
                    f"the server ended the stream at once: {await call.details()}", code
                )
            assert isinstance(first, pb.StreamingResponse)
            started = first.started
            if not self.session_id:
                self.session_id = started.session_id
            # Everything before next_seq reached the server, acknowledged or not.
            self._on_ack(pb.Ack(seq=started.next_seq - 1, credit_ms=started.credit_ms))
            self._send_seq = started.next_seq
            self._started.set()
            writer = asyncio.create_task(self._write_loop(call))
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    break
                assert isinstance(msg, pb.StreamingResponse)
                self._on_response(msg)
            code = await call.code()
            if code == grpc.StatusCode.OK:
                return True
            raise grpc.aio.AioRpcError(
                code,
                await call.initial_metadata(),
                await call.trailing_metadata(),
                await call.details(),
            )
        finally:
            if writer is not None:
                writer.cancel()
                await asyncio.wait({writer}, timeout=5.0)
            call.cancel()

    def _on_response(self, msg: pb.StreamingResponse) -> None:
        kind = msg.WhichOneof("response")
        if kind == "ack":
            self._on_ack(msg.ack)
            return
        if kind == "metrics":
            self.stats.rtf = msg.metrics.rtf
            self.stats.server_latency_ms = msg.metrics.latency_ms
            return
        if kind not in ("result", "speech_event"):
            return
        if msg.event_seq <= self._last_event:
            self.stats.duplicates_dropped += 1
            return
        self._last_event = int(msg.event_seq)
        if kind == "speech_event":
            ev = msg.speech_event
            begin = ev.kind == pb.SpeechEvent.BEGIN
            self._results.put_nowait(StreamSpeechEvent("begin" if begin else "end", ev.time_s))
            return
        r = msg.result
        if r.utterance_id in self._finals_seen:
            self.stats.duplicates_dropped += 1
            return
        if r.is_final:
            self._finals_seen.add(int(r.utterance_id))
        start = r.segments[0].start_s if r.segments else 0.0
        end = r.segments[-1].end_s if r.segments else 0.0
        self._results.put_nowait(
            StreamResult(
                utterance_id=int(r.utterance_id),
                is_final=r.is_final,
                text=r.text,
                stable_text=r.stable_text,
                stability=r.stability,
                start_s=start,
                end_s=end,
                audio_processed_s=r.audio_processed_s,
                words=tuple((w.text, w.start_s, w.end_s) for w in r.words),
            )
        )

    async def _write_loop(self, call: Any) -> None:
        finish_sent = False
        while not finish_sent:
            self._changed.clear()
            progressed = False
            chunk = self._next_unsent()
            if chunk is not None:
                inflight = self._inflight_ms()
                # A chunk longer than the whole credit may go alone once half of it fits.
                alone = inflight == 0 and self._credit_ms >= chunk.ms / 2
                if alone or inflight + chunk.ms <= self._credit_ms:
                    if chunk.sent_at:
                        self.stats.chunks_resent += 1
                    chunk.sent_at = time.monotonic()
                    await call.write(
                        pb.StreamingRequest(
                            audio=pb.AudioChunk(
                                seq=chunk.seq, data=chunk.data, encoding=chunk.encoding.name
                            )
                        )
                    )
                    self._send_seq = chunk.seq + 1
                    self.stats.chunks_sent += 1
                    self.stats.bytes_sent += len(chunk.data)
                    self.stats.max_inflight_ms = max(
                        self.stats.max_inflight_ms, inflight + chunk.ms
                    )
                    progressed = True
                else:
                    self.stats.credit_waits += 1
            while self._flush_after and self._flush_after[0] < self._send_seq:
                self._flush_after.pop(0)
                await call.write(pb.StreamingRequest(control=pb.Control(action=pb.Control.FLUSH)))
                progressed = True
            if self._finish_requested and self._send_seq >= self._next_seq:
                await call.write(pb.StreamingRequest(control=pb.Control(action=pb.Control.FINISH)))
                await call.done_writing()
                finish_sent = True
                continue
            if not progressed:
                await wait_event(self._changed, 0.5)

    def _next_unsent(self) -> _Chunk | None:
        if self._send_seq >= self._next_seq or not self._ring:
            return None
        index = self._send_seq - self._ring[0].seq
        if index < 0:
            # The server has chunks we have not had an Ack for yet; skip ahead.
            self._send_seq = self._ring[0].seq
            index = 0
        return self._ring[index] if index < len(self._ring) else None


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
        grpc_modules: tuple[Any, Any, Any] = (
            transcription_pb2_grpc,
            models_pb2_grpc,
            system_pb2_grpc,
        )
        self._transcription: Any = grpc_modules[0].TranscriptionStub(self._channel)
        self.models: Any = grpc_modules[1].ModelsStub(self._channel)
        self.system: Any = grpc_modules[2].SystemStub(self._channel)

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
        try:
            response: pb.TranscribeResponse = await self._transcription.Transcribe(
                pb.TranscribeRequest(
                    audio=audio,
                    language=language or "",
                    word_timestamps=word_timestamps,
                    beam_size=beam_size,
                ),
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as exc:
            raise ClientError(exc.details() or str(exc.code()), exc.code()) from exc
        return response

    async def stats(self) -> system_pb2.ServerStats:
        try:
            response: system_pb2.ServerStats = await self.system.GetStats(
                system_pb2.StatsRequest(), metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise ClientError(exc.details() or str(exc.code()), exc.code()) from exc
        return response
