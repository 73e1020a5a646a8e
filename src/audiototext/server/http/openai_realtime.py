"""``WS /v1/realtime?intent=transcription``: OpenAI's realtime transcription protocol over the
same stream layer as the page's WebSocket and gRPC (:class:`StreamService`).

The socket carries JSON events (:mod:`.realtime_events` has the shapes). Audio arrives as
base64 in ``input_audio_buffer.append`` (PCM16 at 24 kHz, or G.711 μ-law/A-law at 8 kHz,
decoded here to PCM16) and is handed to an engine stream as numbered chunks, paced by the
stream's credit so a client may send faster than real time. Engine streams come and go
within one connection: one opens at the first append; with manual commits
(``turn_detection: null``) each ``commit`` finishes it (its finals are the item's
transcript) and the next append opens another; with ``server_vad`` it lives until a
``session.update`` changes the audio settings, a ``clear``, or the socket closes.
:mod:`.realtime_items` turns each stream's events into items.

A wrong event is answered with an ``error`` event (``error.event_id`` the client event's id)
and the socket keeps serving; only a wrong token or a foreign Origin close it (1008).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from audiototext.audio.g711 import decode_alaw, decode_mulaw
from audiototext.server.devices import device_of
from audiototext.server.http.context import HttpContext
from audiototext.server.http.guard import check_origin
from audiototext.server.http.openai_common import OPENAI_ALIASES, OpenAIError, check_bearer
from audiototext.server.http.realtime_events import (
    EventIds,
    RealtimeError,
    RealtimeSettings,
    error_event,
    session_event,
    update_settings,
)
from audiototext.server.http.realtime_items import ItemTracker
from audiototext.server.http.websocket import CLOSE_POLICY
from audiototext.server.status import Status, StatusError
from audiototext.server.streams import ConnectionLost
from audiototext.server.validation import check_choice, language_of
from audiototext.wire._proto import transcription_pb2 as pb
from audiototext.wire.codec import encode_pcm16

__all__ = ["REALTIME_PATH", "realtime_router"]

log = logging.getLogger(__name__)

REALTIME_PATH = "/v1/realtime"
REALTIME_PROTOCOL = "realtime"  # the subprotocol OpenAI's browser clients offer
_CHUNK_S = 0.1  # appends are cut into chunks of this much audio for the stream layer
_MAX_PENDING_S = 300.0  # audio accepted but not yet handed to the engine (credit waits)
_MANUAL_SILENCE_MS = 10_000  # manual commits: only a long pause ends an utterance early
_MANUAL_MAX_SEGMENT_S = 30.0
# Streams outlive their socket (they finish into the history): held here until they end.
_RUNNING: set[asyncio.Task[None]] = set()
_STATUS_ERRORS = {  # Status → (OpenAI error type, code)
    Status.INVALID_ARGUMENT: ("invalid_request_error", "invalid_value"),
    Status.NOT_FOUND: ("invalid_request_error", "model_not_found"),
    Status.FAILED_PRECONDITION: ("invalid_request_error", "model_not_available"),
    Status.UNAUTHENTICATED: ("invalid_request_error", "invalid_api_key"),
    Status.PERMISSION_DENIED: ("invalid_request_error", "forbidden_origin"),
    Status.RESOURCE_EXHAUSTED: ("server_error", "server_busy"),
    Status.UNAVAILABLE: ("server_error", "server_unavailable"),
}


def _from_status(error: StatusError, param: str | None = None) -> RealtimeError:
    kind, code = _STATUS_ERRORS.get(error.code, ("server_error", "internal_error"))
    return RealtimeError(error.message, code=code, param=param, kind=kind)


def server_model(name: str) -> str:
    """The server model a session's ``transcription.model`` names ("" is the default)."""
    return "" if name in OPENAI_ALIASES else name


class _Stream:
    """One engine stream of the connection: a request queue paced by credit, its items."""

    def __init__(self, conn: _Connection, settings: RealtimeSettings, offset_ms: int) -> None:
        self.conn = conn
        self.settings = settings
        self.tracker = ItemTracker(
            conn.ids,
            manual=settings.turn_detection is None,
            offset_ms=offset_ms,
            previous_item=conn.last_item,
        )
        self.queue: deque[bytes | int] = deque()  # PCM16 chunks and Control actions
        self.changed = asyncio.Event()
        self.audio_s = 0.0  # appended to this stream
        self.pending_s = 0.0  # appended, not yet handed to the stream layer
        self.discard = False  # cleared by the client: its events are not sent
        self.ended = False  # FINISH queued: takes no more audio
        self._credit_ms: int | None = None
        self._acked = 0
        self._unacked: deque[tuple[int, float]] = deque()  # (seq, ms) handed, not acked
        self.task = asyncio.create_task(self._run(), name="openai-realtime-stream")
        _RUNNING.add(self.task)
        self.task.add_done_callback(_RUNNING.discard)

    def push(self, item: bytes | int) -> None:
        self.queue.append(item)
        self.changed.set()

    def finish(self) -> None:
        if not self.ended:
            self.ended = True
            self.push(pb.Control.FINISH)

    def _config(self) -> pb.StreamConfig:
        s = self.settings
        cfg = pb.StreamConfig(
            model=server_model(s.model),
            language=s.language,
            encoding=pb.PCM16,
            sample_rate_hz=s.sample_rate_hz,
            channels=1,
            interim_results=True,
            prompt=s.prompt,
        )
        vad = s.turn_detection
        if vad is None:
            cfg.endpoint_silence_ms = _MANUAL_SILENCE_MS
            cfg.max_segment_s = _MANUAL_MAX_SEGMENT_S
        else:
            cfg.endpoint_silence_ms = vad.silence_duration_ms
            cfg.vad_threshold = vad.threshold
            cfg.prefix_padding_ms = vad.prefix_padding_ms
        return cfg

    def _may_send(self, ms: float) -> bool:
        if self._credit_ms is None:
            return False  # SessionStarted (with the first credit) has not come yet
        unacked = sum(m for _, m in self._unacked)
        return unacked + ms <= self._credit_ms or (not self._unacked and self._credit_ms > 0)

    async def _requests(self) -> AsyncIterator[pb.StreamingRequest]:
        yield pb.StreamingRequest(config=self._config())
        seq = 0
        rate = self.settings.sample_rate_hz
        while True:
            self.changed.clear()
            if not self.queue:
                await self.changed.wait()
                continue
            head = self.queue[0]
            if isinstance(head, bytes):
                ms = len(head) / 2 / rate * 1000
                if not self._may_send(ms):
                    await self.changed.wait()
                    continue
                self.queue.popleft()
                seq += 1
                self._unacked.append((seq, ms))
                self.pending_s = max(0.0, self.pending_s - ms / 1000)
                yield pb.StreamingRequest(audio=pb.AudioChunk(seq=seq, data=head))
                continue
            self.queue.popleft()
            yield pb.StreamingRequest(control=pb.Control(action=head))  # type: ignore[arg-type]
            if head == pb.Control.FINISH:
                return

    async def _send(self, message: pb.StreamingResponse) -> None:
        kind = message.WhichOneof("response")
        events: list[dict[str, Any]] = []
        if kind == "started":
            self._credit_ms = int(message.started.credit_ms)
        elif kind == "ack":
            self._acked = int(message.ack.seq)
            self._credit_ms = int(message.ack.credit_ms)
            while self._unacked and self._unacked[0][0] <= self._acked:
                self._unacked.popleft()
        elif kind == "speech_event":
            begin = message.speech_event.kind == pb.SpeechEvent.BEGIN
            events = self.tracker.speech(begin, message.speech_event.time_s)
        elif kind == "result":
            r = message.result
            events = self.tracker.result(
                int(r.utterance_id),
                final=r.is_final,
                stable_text=r.stable_text,
                text=r.text,
                seconds=(r.segments[0].end_s - r.segments[0].start_s) if r.segments else 0.0,
            )
        self.changed.set()
        await self._emit(events)

    async def _emit(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            if event["type"] == "input_audio_buffer.committed":
                self.conn.last_item = event["item_id"]
        if not self.discard:
            await self.conn.send_all(events)

    async def _run(self) -> None:
        streams = self.conn.ctx.streams
        try:
            await streams.run(self._requests(), self._send, transport="openai-realtime")
        except StatusError as exc:
            await self._emit(self.tracker.failed(exc.message))
            await self.conn.send_error(_from_status(exc), None)
        except ConnectionLost:
            pass
        except Exception as exc:  # never let a stream's fault end the socket silently
            log.exception("openai realtime stream failed")
            await self._emit(self.tracker.failed(str(exc)))
        else:
            await self._emit(self.tracker.finished())
        finally:
            self.ended = True
            self.conn.streams.discard(self)
            if self.conn.stream is self:  # refused or failed: the next append opens another
                self.conn.stream = None


class _Connection:
    def __init__(self, ws: WebSocket, ctx: HttpContext, *, beta: bool) -> None:
        self.ws = ws
        self.ctx = ctx
        self.beta = beta
        self.ids = EventIds()
        self.settings = RealtimeSettings()
        self.stream: _Stream | None = None  # the one that takes appends
        self.streams: set[_Stream] = set()  # every one still running (finishing included)
        self.last_item: str | None = None
        self.audio_ms = 0  # every appended sample, for speech event times
        self.closed = False
        self._send_lock = asyncio.Lock()

    async def send_all(self, events: list[dict[str, Any]]) -> None:
        if self.closed:
            return  # the client left; the streams still finish (and reach the history)
        async with self._send_lock:
            for event in events:
                try:
                    await self.ws.send_text(json.dumps(event))
                except (WebSocketDisconnect, RuntimeError, OSError):
                    self.closed = True
                    return

    async def send_error(self, error: RealtimeError, client_event_id: str | None) -> None:
        await self.send_all([error_event(self.ids, error, client_event_id)])

    async def run(self) -> None:
        await self.send_all([session_event("created", self.ids, self.settings, beta=self.beta)])
        try:
            while not self.closed:
                try:
                    frame = await self.ws.receive()
                except (WebSocketDisconnect, RuntimeError):
                    break
                if frame["type"] == "websocket.disconnect":
                    break
                await self._frame(frame.get("text"), frame.get("bytes"))
        finally:
            self.closed = True
            for stream in list(self.streams):
                stream.finish()  # the engine finalises what it has (history keeps it)

    async def _frame(self, text: str | None, data: bytes | None) -> None:
        if text is None:
            await self.send_error(
                RealtimeError(
                    "binary frames are not part of this protocol: send JSON text events, "
                    'audio as {"type": "input_audio_buffer.append", "audio": BASE64}',
                    code="invalid_json",
                ),
                None,
            )
            return
        event_id: str | None = None
        try:
            try:
                event = json.loads(text)
            except json.JSONDecodeError as exc:
                raise RealtimeError(
                    f"the event is not valid JSON ({exc.msg} at character {exc.pos})",
                    code="invalid_json",
                ) from exc
            if not isinstance(event, dict):
                raise RealtimeError("an event must be a JSON object with a 'type'",
                                    code="invalid_json")  # fmt: skip
            raw_id = event.get("event_id")
            event_id = raw_id if isinstance(raw_id, str) else None
            await self._event(event)
        except RealtimeError as exc:
            await self.send_error(exc, event_id)
        except Exception as exc:  # a fault here must not end the other events' socket
            log.exception("openai realtime: event failed")
            await self.send_error(
                RealtimeError(f"internal error: {exc}", code="internal_error", kind="server_error"),
                event_id,
            )

    async def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in ("session.update", "transcription_session.update"):
            await self._update(str(kind), event.get("session"))
        elif kind == "input_audio_buffer.append":
            self._append(event.get("audio"))
        elif kind == "input_audio_buffer.commit":
            await self._commit()
        elif kind == "input_audio_buffer.clear":
            self._clear()
            await self.send_all(
                [{"type": "input_audio_buffer.cleared", "event_id": self.ids.event()}]
            )
        else:
            raise RealtimeError(
                f"unknown event type {kind!r}: a transcription session takes session.update "
                "(or transcription_session.update), input_audio_buffer.append, "
                "input_audio_buffer.commit and input_audio_buffer.clear",
                param="type",
            )

    async def _update(self, kind: str, session: Any) -> None:
        settings = update_settings(self.settings, kind, session)
        param = (
            "session.input_audio_transcription"
            if kind == "transcription_session.update"
            else "session.audio.input.transcription"
        )
        try:
            choice = await self.ctx.streams.pool.choose(server_model(settings.model), device_of(""))
            check_choice(choice, language_of(settings.language), "transcribe")
        except StatusError as exc:
            raise _from_status(exc, param) from exc
        if self.stream is not None and settings != self.settings:
            self.stream.finish()  # the next append opens a stream with the new settings
            self.stream = None
        self.settings = settings
        beta = kind == "transcription_session.update"
        await self.send_all([session_event("updated", self.ids, settings, beta=beta)])

    def _append(self, audio: Any) -> None:
        if not isinstance(audio, str) or not audio:
            raise RealtimeError("input_audio_buffer.append needs 'audio': base64 of the audio",
                                param="audio")  # fmt: skip
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RealtimeError(f"'audio' is not valid base64: {exc}", param="audio") from exc
        limit = self.ctx.streams.limits.max_chunk_bytes
        if len(data) > limit:
            raise RealtimeError(
                f"an append of {len(data)} bytes of audio is over this server's limit of "
                f"{limit} (serve --max-chunk-bytes); send smaller appends, e.g. 100 ms each",
                code="audio_too_large",
                param="audio",
            )
        fmt = self.settings.format
        if fmt == "audio/pcm":
            if len(data) % 2:
                raise RealtimeError(
                    f"{len(data)} bytes cannot be PCM16 (2 bytes a sample): send whole samples",
                    param="audio",
                )
            pcm = data
        else:
            samples = decode_mulaw(data) if fmt == "audio/pcmu" else decode_alaw(data)
            pcm = encode_pcm16(samples)
        if not pcm:
            return
        rate = self.settings.sample_rate_hz
        seconds = len(pcm) / 2 / rate
        stream = self.stream
        if stream is not None and stream.pending_s + seconds > _MAX_PENDING_S:
            raise RealtimeError(
                f"more than {_MAX_PENDING_S:g} s of audio are waiting for the engine; send "
                "at real time, or wait for transcripts before sending more",
                code="buffer_full",
                kind="server_error",
            )
        if stream is None:
            stream = self.stream = _Stream(self, self.settings, self.audio_ms)
            self.streams.add(stream)
        step = round(rate * _CHUNK_S) * 2
        for i in range(0, len(pcm), step):
            stream.push(pcm[i : i + step])
        stream.audio_s += seconds
        stream.pending_s += seconds
        self.audio_ms += round(seconds * 1000)

    async def _commit(self) -> None:
        stream = self.stream
        if stream is None or stream.audio_s == 0:
            raise RealtimeError(
                "the input audio buffer is empty: append audio before committing",
                code="input_audio_buffer_commit_empty",
            )
        if stream.tracker.manual:
            await stream._emit(stream.tracker.commit(stream.audio_s))
            stream.finish()  # its finals, then the stream's end, complete the item
            self.stream = None
        else:
            stream.push(pb.Control.FLUSH)  # the engine ends the utterance now

    def _clear(self) -> None:
        stream = self.stream
        if stream is None:
            return
        stream.discard = True
        stream.queue.clear()
        stream.pending_s = 0.0
        stream.finish()
        self.stream = None


def realtime_router(ctx: HttpContext) -> APIRouter:
    router = APIRouter()

    @router.websocket(REALTIME_PATH)
    async def realtime(ws: WebSocket) -> None:
        offered = list(ws.scope.get("subprotocols") or ())
        await ws.accept(subprotocol=REALTIME_PROTOCOL if REALTIME_PROTOCOL in offered else None)
        beta = ws.headers.get("openai-beta", "").startswith("realtime=v1") or any(
            p.startswith("openai-beta.realtime-v1") for p in offered
        )
        conn = _Connection(ws, ctx, beta=beta)
        try:
            check_origin(ws)
            check_bearer(ws, ctx.token)  # Bearer, or OpenAI's key subprotocol (browsers)
            intent = ws.query_params.get("intent", "transcription")
            if intent != "transcription":
                raise StatusError(
                    Status.INVALID_ARGUMENT,
                    f"intent {intent!r} is not served here: this server transcribes only "
                    "(connect with ?intent=transcription)",
                )
        except (StatusError, OpenAIError) as exc:
            refusal = (
                _from_status(exc)
                if isinstance(exc, StatusError)
                else RealtimeError(exc.message, code=exc.code or "invalid_api_key")
            )
            await conn.send_error(refusal, None)
            with contextlib.suppress(Exception):
                reason = exc.message.encode()[:123].decode(errors="ignore")
                await ws.close(CLOSE_POLICY, reason)
            return
        await conn.run()
        with contextlib.suppress(Exception):
            await ws.close()

    return router
