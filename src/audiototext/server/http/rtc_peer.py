"""One WebRTC stream: an aiortc peer connection as a connection of the stream layer.

The peer's audio track becomes the stream's audio (:mod:`.rtc_audio`); its data channel
carries the server's events, the same JSON as the WebSocket's text frames, and the client's
``{"control": {"action": "FINISH"}}`` (or FLUSH). :class:`RtcPeer` turns both into the
``StreamingRequest`` iterator and ``send`` callback of :meth:`StreamService.run`, so config
validation, resume, chunk numbering, acks, limits and errors are the stream layer's.

The connection is lost (the session waits ``resume_grace_s`` for a new offer with its
``session_id``) when ICE fails, the data channel or the peer closes, or ICE does not connect
in time. A completed stream closes the data channel after its last event; a refused one sends
``{"error": {"code", "message"}}`` first. :class:`~.rtc_peers.RtcPeers` closes every peer at
shutdown. An offer with ``"prefix": true`` sends the audio captured before the track
connected on the data channel (:mod:`.rtc_prefix`); it goes to the stream before the track's.
The stream gets whole 100-ms chunks only (a prefix's odd tail waits for the track's audio), so
chunk S always starts (S - 1) x 100 ms into the stream: what a resumed page's prefix is cut by.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from google.protobuf import json_format

from audiototext.server.http.rtc_audio import (
    FrameConverter,
    RtcAudioStats,
    consume_track,
    release_promptly,
)
from audiototext.server.http.rtc_prefix import CHUNK_BYTES, PrefixIntake
from audiototext.server.http.websocket import MAX_TEXT_FRAME_BYTES, response_json
from audiototext.server.status import Status, StatusError
from audiototext.server.streams import ConnectionLost, StreamService
from audiototext.wire._proto import transcription_pb2 as pb

__all__ = ["RtcPeer"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0  # ICE + DTLS + the data channel, after the answer
FINISH_QUIET_S = 0.3  # FINISH waits for the track to go this quiet (audio still in flight)
FINISH_WAIT_MAX_S = 2.0
CLOSE_LINGER_S = 2.0  # after the last event, before the peer connection closes
CHUNK_MS = 100


class _Lost:
    """Marker in the request queue: the connection is gone."""


_LOST = _Lost()


class RtcPeer:
    """A peer connection serving one stream connection (the session may outlive it)."""

    def __init__(
        self, pc: Any, streams: StreamService, config: pb.StreamingRequest, *, prefix: bool = False
    ) -> None:
        self.pc = pc
        self.streams = streams
        self.config = config
        self.stats = RtcAudioStats()
        self.converter = FrameConverter(self.stats)
        self.prefix = PrefixIntake(prefix)
        self._held_since: float | None = None
        self._carry = bytearray()  # under 100 ms, waiting to make a whole chunk
        self.session_id = ""
        self._requests: asyncio.Queue[pb.StreamingRequest | StatusError | _Lost] = asyncio.Queue()
        self._channel: Any = None
        self._channel_open = asyncio.Event()
        self._gone = asyncio.Event()
        self._started: asyncio.Future[pb.SessionStarted] = (
            asyncio.get_running_loop().create_future()
        )
        self._track_task: asyncio.Task[None] | None = None
        self._finishing = False
        self._last_frame_at = 0.0
        self._next_seq = 1
        self._acked = 0
        self._credit_ms: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refusal: StatusError | None = None
        self._closed = False
        self.on_closed: list[Callable[[], None]] = []
        self.closed = asyncio.Event()
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_state)

    # ---- aiortc events -------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_track(self, track: Any) -> None:
        if track.kind != "audio" or self._track_task is not None:
            return
        for receiver in self.pc.getReceivers():
            if receiver.track is track:
                release_promptly(receiver)
        self._track_task = self._spawn(
            consume_track(_Timed(track, self), self.converter, self._on_chunk), "rtc-track"
        )

    def _on_datachannel(self, channel: Any) -> None:
        if self._channel is not None:
            return
        self._channel = channel
        channel.on("message", self._on_message)
        channel.on("close", lambda: self.lose("the data channel closed"))
        if channel.readyState == "open":
            self._channel_open.set()
        else:
            channel.on("open", self._channel_open.set)

    async def _on_state(self) -> None:
        state = self.pc.connectionState
        if state in ("failed", "closed"):
            self.lose(f"the peer connection is {state}")

    def _on_message(self, message: Any) -> None:
        try:
            if isinstance(message, bytes | str) and self._on_prefix(message):
                return
        except StatusError as exc:
            self._requests.put_nowait(exc)
            return
        if not isinstance(message, str) or len(message) > MAX_TEXT_FRAME_BYTES:
            self._requests.put_nowait(
                StatusError(
                    Status.INVALID_ARGUMENT,
                    "the data channel carries only JSON control messages, e.g. "
                    '{"control": {"action": "FINISH"}}; audio goes on the audio track',
                )
            )
            return
        try:
            request = json_format.Parse(message, pb.StreamingRequest())
        except json_format.ParseError as exc:
            self._requests.put_nowait(
                StatusError(
                    Status.INVALID_ARGUMENT,
                    f'a data channel message must be {{"control": {{"action": "FINISH"}}}} '
                    f"or FLUSH: {exc}",
                )
            )
            return
        if request.WhichOneof("request") == "control" and request.control.action == (
            pb.Control.FINISH
        ):
            try:
                self.prefix.before_finish()
            except StatusError as exc:
                self._requests.put_nowait(exc)
                return
            self._spawn(self._finish(request), "rtc-finish")
        else:  # FLUSH, or something the stream layer refuses with its own words
            self._requests.put_nowait(request)

    # ---- audio ---------------------------------------------------------------------------

    def _on_prefix(self, message: bytes | str) -> bool:
        """A piece of the prefix (binary) or its end (``{"prefix": ...}``); False for a text
        message that is something else. Raises :class:`StatusError` for a malformed one."""
        if isinstance(message, bytes):
            self.prefix.add(message)
            return True
        if len(message) > MAX_TEXT_FRAME_BYTES or '"prefix"' not in message:
            return False
        try:
            body = json.loads(message)
        except ValueError:
            return False  # the stream layer's parser explains
        if not isinstance(body, dict) or "prefix" not in body:
            return False
        chunks = self.prefix.end(body["prefix"])
        self.stats.prefix_ms = self.prefix.received_bytes * 1000 // 32_000
        if self._held_since is not None:
            waited = asyncio.get_running_loop().time() - self._held_since
            self.stats.held_ms = round(1000 * waited)
        for chunk in chunks:
            self._emit(chunk)
        return True

    def _on_chunk(self, chunk: bytes) -> None:
        """A track chunk: after the prefix, so held until its end has come."""
        try:
            if self.prefix.hold(chunk):
                if self._held_since is None:
                    self._held_since = asyncio.get_running_loop().time()
                return
        except StatusError as exc:
            self._requests.put_nowait(exc)
            return
        self._emit(chunk)

    def _emit(self, data: bytes) -> None:
        """Audio for the stream layer, in whole 100-ms chunks (the rest waits for more)."""
        self._carry += data
        while len(self._carry) >= CHUNK_BYTES:
            chunk = bytes(self._carry[:CHUNK_BYTES])
            del self._carry[:CHUNK_BYTES]
            self._emit_chunk(chunk)

    def _emit_chunk(self, chunk: bytes) -> None:
        """A 100-ms chunk for the stream layer, unless its credit is spent (then dropped)."""
        in_flight_ms = (self._next_seq - 1 - self._acked) * CHUNK_MS
        if self._credit_ms is not None and in_flight_ms + CHUNK_MS > self._credit_ms:
            self.stats.dropped_ms += len(chunk) * 1000 // 32_000
            return
        self._next_seq += 1
        self._requests.put_nowait(pb.StreamingRequest(audio=pb.AudioChunk(data=chunk)))

    async def _finish(self, request: pb.StreamingRequest) -> None:
        """FINISH after the audio still in flight: wait for the track to go quiet, pass on
        what the converter holds, then tell the stream layer."""
        if self._finishing:
            return
        self._finishing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FINISH_WAIT_MAX_S
        while loop.time() < deadline and loop.time() - self._last_frame_at < FINISH_QUIET_S:
            await asyncio.sleep(0.05)
        task, self._track_task = self._track_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        tail = bytes(self._carry) + b"".join(self.converter.flush())
        self._carry.clear()
        for at in range(0, len(tail), CHUNK_BYTES):
            chunk = tail[at : at + CHUNK_BYTES]
            self._next_seq += 1
            self._requests.put_nowait(pb.StreamingRequest(audio=pb.AudioChunk(data=chunk)))
        self._requests.put_nowait(request)

    # ---- the stream layer's side -------------------------------------------------------

    async def _request_iter(self) -> AsyncIterator[pb.StreamingRequest]:
        yield self.config
        while True:
            item = await self._requests.get()
            if isinstance(item, _Lost):
                raise ConnectionLost("the WebRTC connection closed")
            if isinstance(item, StatusError):
                raise item
            yield item

    async def _send(self, message: pb.StreamingResponse) -> None:
        kind = message.WhichOneof("response")
        if kind == "started":
            self.session_id = message.started.session_id
            self._next_seq = int(message.started.next_seq) or 1
            self._acked = self._next_seq - 1
            self._credit_ms = int(message.started.credit_ms)
            self.prefix.started(self._next_seq, message.started.resumed)
            if not self._started.done():
                self._started.set_result(message.started)
        elif kind == "ack":
            self._acked = int(message.ack.seq)
            self._credit_ms = int(message.ack.credit_ms)
        await self._send_text(response_json(message))
        if kind == "metrics":
            await self._send_text(json.dumps({"webrtc": self.stats.to_json()}))

    async def _send_text(self, text: str) -> None:
        if not self._channel_open.is_set():
            opened = asyncio.ensure_future(self._channel_open.wait())
            gone = asyncio.ensure_future(self._gone.wait())
            try:
                await asyncio.wait({opened, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                opened.cancel()
                gone.cancel()
        channel = self._channel
        if self._gone.is_set() or channel is None or channel.readyState != "open":
            raise ConnectionLost("the WebRTC data channel is not open")
        try:
            channel.send(text)
        except Exception as exc:  # InvalidStateError: closed meanwhile
            raise ConnectionLost("the WebRTC data channel closed") from exc

    async def open(self) -> pb.SessionStarted:
        """Start serving; the session's start once the stream layer has opened (or resumed)
        it, or the :class:`StatusError` that refused it."""
        runner = self._spawn(self._run(), "rtc-stream")
        waiter = asyncio.ensure_future(asyncio.shield(self._started))
        await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if self._started.done():
            self._spawn(self._connect_deadline(), "rtc-connect-deadline")
            return self._started.result()
        waiter.cancel()
        error = self._refusal
        raise error or StatusError(Status.INTERNAL, "the stream ended before it started")

    async def _run(self) -> None:
        try:
            await self.streams.run(self._request_iter(), self._send)
        except StatusError as exc:
            self._refusal = exc
            if self._started.done():
                with contextlib.suppress(ConnectionLost):
                    await self._send_text(
                        json.dumps({"error": {"code": exc.code.value, "message": exc.message}})
                    )
        except ConnectionLost:
            pass
        except Exception:
            log.exception("webrtc stream %s failed", self.session_id or "(not started)")
        finally:
            self._forget_unused_session()
            await self._close()

    def _forget_unused_session(self) -> None:
        """A new session whose peer never connected has no audio and no client that knows
        its events (the page fell back to the WebSocket, or went away): free its slot now
        rather than after the resume grace period."""
        started = self._started.result() if self._started.done() else None
        if started is None or started.resumed or self._channel_open.is_set():
            return
        store = self.streams.store
        with contextlib.suppress(LookupError):
            session = store.get(started.session_id)
            if session.attachment is None:
                session.request_finish()
                store.remove(session)

    async def _connect_deadline(self) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if not self._channel_open.is_set():
            log.info("webrtc stream %s: no connection in %g s", self.session_id, CONNECT_TIMEOUT_S)
            self.lose("ICE did not connect in time")

    def lose(self, why: str) -> None:
        if self._gone.is_set():
            return
        log.debug("webrtc stream %s: %s", self.session_id, why)
        self._gone.set()
        self._requests.put_nowait(_LOST)

    async def _close(self) -> None:
        """Close the data channel (after its last message) and, a little later, the peer."""
        channel = self._channel
        if channel is not None and channel.readyState == "open" and not self._gone.is_set():
            with contextlib.suppress(ConnectionLost):  # the final counts
                await self._send_text(json.dumps({"webrtc": self.stats.to_json()}))
            for _ in range(40):
                if not channel.bufferedAmount:
                    break
                await asyncio.sleep(0.05)
            with contextlib.suppress(Exception):
                channel.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_LINGER_S):
                    await self._gone.wait()
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.lose("closed by the server")
        if self._track_task is not None:
            self._track_task.cancel()
        with contextlib.suppress(Exception):
            await self.pc.close()
        if self.stats.frames:
            log.info("webrtc stream %s: %s", self.session_id, self.stats.to_json())
        self.closed.set()
        for callback in self.on_closed:
            callback()


class _Timed:
    """The track, noting when its last frame came (FINISH waits for it to go quiet)."""

    def __init__(self, track: Any, peer: RtcPeer) -> None:
        self._track = track
        self._peer = peer
        self._queue = getattr(track, "_queue", None)

    async def recv(self) -> Any:
        frame = await self._track.recv()
        self._peer._last_frame_at = asyncio.get_running_loop().time()
        return frame
