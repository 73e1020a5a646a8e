"""One live stream: send audio with credit flow control, reconnect and resume, read results.

The pieces it drives are policies without I/O: :class:`UnackedAudio` (what a reconnect
resends), :class:`AdaptiveEncoding` (which encoding the link can carry) and
:class:`ChunkEncoder` (the bytes at that encoding).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc
import numpy as np
from numpy.typing import NDArray

from audiototext._aio import wait_event
from audiototext.client._adaptive import AdaptiveEncoding
from audiototext.client._encoder import ChunkEncoder, ladder_for
from audiototext.client._errors import TRANSIENT, ClientError
from audiototext.client._results import (
    StreamSpeechEvent,
    StreamStats,
    TranscriptUpdate,
    result_from,
    speech_event_from,
)
from audiototext.client._settings import StreamSettings
from audiototext.client._unacked import UnackedAudio
from audiototext.wire._proto import transcription_pb2
from audiototext.wire.codec import Encoding

__all__ = ["Stream"]

log = logging.getLogger(__name__)

pb = transcription_pb2

ROUTE_KEY_METADATA = "session_id"  # the key Ray Serve's gRPC proxy routes by


class _Client(Protocol):
    """What a stream uses of :class:`~audiototext.client.AsyncClient` (a protocol, so that
    this module does not import the client that imports it)."""

    target: str
    _transcription: Any
    _metadata: tuple[tuple[str, str], ...]


class _Done:
    pass


_DONE = _Done()


class Stream:
    """One live transcription stream. Use through :meth:`AsyncClient.stream`.

    ``send`` audio (float32, interleaved channels) at any pace: chunks wait in a bounded ring
    buffer until the server acknowledges them, so a reconnect resends exactly the ones it has
    not got. ``results()`` yields each result and speech event once, in order.
    """

    def __init__(self, client: _Client, settings: StreamSettings) -> None:
        self._client = client
        self.settings = settings
        self.session_id = ""
        # Chosen here, before the server names the session, and sent on every connection:
        # Ray Serve's proxy hashes it (ConsistentHashRouter), so a reconnect reaches the
        # replica the first connection did.
        self.route_key = uuid.uuid4().hex
        self.stats = StreamStats()
        ladder = ladder_for(settings)
        self.adaptive = AdaptiveEncoding(
            ladder,
            enabled=settings.compression == "auto",
            sample_rate_hz=settings.sample_rate_hz,
            channels=settings.channels,
        )
        self._encoder = ChunkEncoder(settings.sample_rate_hz, settings.channels)
        self._pending = np.zeros(0, dtype=np.float32)
        self._unacked = UnackedAudio()
        self._acked = 0  # the highest seq the server acknowledged: resume from the next
        self._credit_ms = 0.0
        self._flush_after: list[int] = []  # send FLUSH once chunks up to this seq are sent
        self._finish_requested = False
        self._last_event = 0
        self._finals_seen: set[int] = set()
        self._speech_times: dict[int, float] = {}  # the latest speech event of each kind
        self._results: asyncio.Queue[TranscriptUpdate | StreamSpeechEvent | _Done | ClientError] = (
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
        self._flush_after.append(self._unacked.next_seq - 1)
        self._changed.set()

    async def finish(self) -> None:
        """No more audio: the server finalises the rest and ``results()`` ends."""
        if self._finish_requested:
            return
        await self._drain_pending()
        tail = self._encoder.flush()
        if tail:
            self._add_chunk(tail, Encoding.OPUS, 0.0)
        self._finish_requested = True
        self._changed.set()

    async def results(self) -> AsyncIterator[TranscriptUpdate | StreamSpeechEvent]:
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
            if self._unacked.ms + self.settings.chunk_ms <= limit:
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
        *tails, (data, encoding) = self._encoder.encode(block, level)
        for tail, tail_encoding in tails:
            self._add_chunk(tail, tail_encoding, 0.0)
        self.stats.encodings[str(level)] = self.stats.encodings.get(str(level), 0) + 1
        self._add_chunk(data, encoding, ms)

    def _add_chunk(self, data: bytes, encoding: Encoding, ms: float) -> None:
        self._unacked.add(data, encoding, ms)
        self._changed.set()

    def _on_ack(self, ack: pb.Ack) -> None:
        now = time.monotonic()
        self._credit_ms = float(ack.credit_ms)
        self.stats.server_lag_ms = int(ack.lag_ms)
        chunk = self._unacked.acknowledge(int(ack.seq))
        if int(ack.max_bitrate_bps) != self.adaptive.max_bps and self.adaptive.cap(
            int(ack.max_bitrate_bps), now, self._unacked.next_seq
        ):
            self.stats.switches.append(str(self.adaptive.level))
            log.info(
                "server asks for at most %d bit/s: %s", ack.max_bitrate_bps, self.adaptive.level
            )
        if chunk is not None:
            rtt = (now - chunk.sent_at) * 1000
            if self.adaptive.on_ack(chunk.seq, rtt, now, self._unacked.next_seq):
                self.stats.switches.append(str(self.adaptive.level))
                log.info("link: switching to %s", self.adaptive.level)
            self.stats.ack_rtt_ms = self.adaptive.rtt_ms
        if ack.stored_seq:
            self._unacked.stored(int(ack.stored_seq))
        self._acked = max(self._acked, int(ack.seq))
        self._changed.set()

    # ---- connection -----------------------------------------------------------------------

    def _config(self) -> pb.StreamingRequest:
        s = self.settings
        cfg = pb.StreamConfig(
            language=s.language or "",
            model=s.model,
            task=pb.TRANSLATE if s.task == "translate" else pb.TRANSCRIBE,
            encoding=Encoding[self.adaptive.ladder[0].encoding].name,
            sample_rate_hz=s.sample_rate_hz,
            channels=s.channels,
            interim_results=s.interim_results,
            partial_interval_ms=s.partial_interval_ms,
            endpoint_silence_ms=s.endpoint_silence_ms,
            max_segment_s=s.max_segment_s,
            prompt=s.prompt,
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
                    if code not in TRANSIENT or (
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
        metadata = (*self._client._metadata, (ROUTE_KEY_METADATA, self.route_key))
        if self.session_id:
            # A load balancer hashing on it (HAProxy's balance hdr(session-id)) sends a
            # resume to the server that holds the session.
            metadata = (*metadata, ("session-id", self.session_id))
        call = stub.StreamingTranscribe(metadata=metadata)
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
            if started.session_store:
                self._unacked.stored(0)  # keep acknowledged audio until the store has it
            # Everything before next_seq reached the server, acknowledged or not.
            self._on_ack(pb.Ack(seq=started.next_seq - 1, credit_ms=started.credit_ms))
            self._unacked.send_seq = started.next_seq
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
            # A session resumed from the store on another server repeats the speech events
            # after its state's final: stream times say which ones the client already has.
            ev = msg.speech_event
            if ev.time_s <= self._speech_times.get(int(ev.kind), -1.0):
                self.stats.duplicates_dropped += 1
                return
            self._speech_times[int(ev.kind)] = ev.time_s
            self._results.put_nowait(speech_event_from(ev))
            return
        r = msg.result
        if r.utterance_id in self._finals_seen:
            self.stats.duplicates_dropped += 1
            return
        if r.is_final:
            self._finals_seen.add(int(r.utterance_id))
        self._results.put_nowait(result_from(r))

    async def _write_loop(self, call: Any) -> None:
        finish_sent = False
        while not finish_sent:
            self._changed.clear()
            progressed = False
            chunk = self._unacked.next_unsent()
            if chunk is not None:
                inflight = self._unacked.inflight_ms()
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
                    self._unacked.send_seq = chunk.seq + 1
                    self.stats.chunks_sent += 1
                    self.stats.bytes_sent += len(chunk.data)
                    self.stats.max_inflight_ms = max(
                        self.stats.max_inflight_ms, inflight + chunk.ms
                    )
                    progressed = True
                else:
                    self.stats.credit_waits += 1
            while self._flush_after and self._flush_after[0] < self._unacked.send_seq:
                self._flush_after.pop(0)
                await call.write(pb.StreamingRequest(control=pb.Control(action=pb.Control.FLUSH)))
                progressed = True
            if self._finish_requested and self._unacked.send_seq >= self._unacked.next_seq:
                await call.write(pb.StreamingRequest(control=pb.Control(action=pb.Control.FINISH)))
                await call.done_writing()
                finish_sent = True
                continue
            if not progressed:
                await wait_event(self._changed, 0.5)
