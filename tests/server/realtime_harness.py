"""The official ``openai`` client against ``WS /v1/realtime?intent=transcription``: speech
streamed as ``input_audio_buffer.append`` events, every server event recorded with its time."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
import openai
import pydantic
from numpy.typing import NDArray
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime import RealtimeServerEvent

from support.speech import resample

APPEND_S = 0.1  # audio per append event


@dataclass
class RealtimeRun:
    """What one connection received: (arrival time, event as a dict) in order."""

    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    t0: float = 0.0  # when the first append was sent

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for _, e in self.events if e["type"] == kind]

    def types(self) -> list[str]:
        return [e["type"] for _, e in self.events]

    def deltas_by_item(self) -> dict[str, str]:
        out: dict[str, str] = defaultdict(str)
        for e in self.of("conversation.item.input_audio_transcription.delta"):
            out[e["item_id"]] += e["delta"]
        return dict(out)

    def completed(self) -> list[dict[str, Any]]:
        return self.of("conversation.item.input_audio_transcription.completed")


_GA_EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RealtimeServerEvent)
_BETA_EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(BetaServerEvent)


def check_shape(event: dict[str, Any], *, beta: bool = False) -> None:
    """Validate a server event against the ``openai`` package's own types (strict: every
    required field present with its type), GA or beta."""
    (_BETA_EVENTS if beta else _GA_EVENTS).validate_python(event)


def client(port: int, api_key: str = "unused") -> openai.AsyncOpenAI:
    # The beta client would take wss:// from an http:// base; the socket's URL is explicit.
    return openai.AsyncOpenAI(
        api_key=api_key,
        base_url=f"http://127.0.0.1:{port}/v1",
        websocket_base_url=f"ws://127.0.0.1:{port}/v1",
    )


def connect(port: int, *, beta: bool = False, api_key: str = "unused") -> Any:
    """The SDK's connection manager (``async with`` it) for a transcription session."""
    c = client(port, api_key)
    query = {"intent": "transcription"}
    if beta:  # the beta client needs a model in the URL; the session's model is what counts
        return c.beta.realtime.connect(model="whisper-1", extra_query=query)
    return c.realtime.connect(extra_query=query)


def pcm24k(audio: NDArray[np.float32]) -> bytes:
    """16-kHz float speech → 24-kHz PCM16 bytes (OpenAI's input format)."""
    up = resample(audio, 16_000, 24_000)
    return np.clip(np.round(up * 32767), -32768, 32767).astype("<i2").tobytes()


def g711(audio: NDArray[np.float32], codec: str) -> bytes:
    """16-kHz float speech → 8-kHz G.711 bytes, encoded by FFmpeg (``pcm_mulaw``/``pcm_alaw``)."""
    pcm = np.clip(np.round(resample(audio, 16_000, 8_000) * 32767), -32768, 32767)
    ctx = av.CodecContext.create(codec, "w")
    ctx.sample_rate, ctx.format, ctx.layout = 8000, "s16", "mono"  # type: ignore[attr-defined]
    frame = av.AudioFrame.from_ndarray(
        pcm.astype("<i2").reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = 8000
    packets = list(ctx.encode(frame)) + list(ctx.encode(None))  # type: ignore[attr-defined]
    return b"".join(bytes(p) for p in packets)


async def receive_until(conn: Any, run: RealtimeRun, done: Any, timeout_s: float = 60.0) -> None:
    """Record events until ``done(run)`` is true."""
    async with asyncio.timeout(timeout_s):
        while not done(run):
            event = await conn.recv()
            run.events.append((time.monotonic(), event.to_dict()))


async def send_audio(
    conn: Any, data: bytes, bytes_per_s: int, *, speed: float | None = 1.0
) -> float:
    """Append ``data`` in 100-ms pieces, at ``speed`` × real time (None: at once); when the
    first was sent."""
    step = int(bytes_per_s * APPEND_S)
    step -= step % 2
    t0 = time.monotonic()
    for i, start in enumerate(range(0, len(data), step)):
        if speed is not None:
            ahead = t0 + i * APPEND_S / speed - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        piece = base64.b64encode(data[start : start + step]).decode()
        await conn.input_audio_buffer.append(audio=piece)
    return t0


async def stream(
    conn: Any,
    data: bytes,
    bytes_per_s: int,
    done: Any,
    *,
    speed: float | None = 1.0,
    commit: bool = False,
    timeout_s: float = 120.0,
) -> RealtimeRun:
    """Send ``data`` while recording events; commit after it if asked; until ``done``."""
    run = RealtimeRun()
    receiver = asyncio.create_task(receive_until(conn, run, done, timeout_s))
    try:
        run.t0 = await send_audio(conn, data, bytes_per_s, speed=speed)
        if commit:
            await conn.input_audio_buffer.commit()
        await receiver
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
    return run
