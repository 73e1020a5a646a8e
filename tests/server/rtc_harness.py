"""An aiortc peer that streams speech to ``POST /api/v1/webrtc/offer`` as a browser would:
the audio as an Opus track paced at real time, events read from the data channel, FINISH sent
on it when the audio is over. Optionally it loses RTP packets on the way out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np
import soxr
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import is_rtcp
from numpy.typing import NDArray

RATE_HZ = 48_000
FRAME = 960  # 20 ms


class SpeechTrack(MediaStreamTrack):
    """16-kHz speech as 20-ms 48-kHz s16 mono frames at the pace of speech; ends after it."""

    kind = "audio"

    def __init__(self, audio: NDArray[np.float32]) -> None:
        super().__init__()
        pcm = np.clip(np.round(soxr.resample(audio, 16_000, RATE_HZ) * 32767), -32768, 32767)
        self._pcm = pcm.astype("<i2")
        self._count = -(-self._pcm.shape[0] // FRAME)
        self._i = 0
        self.finished = asyncio.Event()
        self.t0: float | None = None  # monotonic time of the first frame sent

    async def recv(self) -> av.AudioFrame:
        if self._i >= self._count:
            self.finished.set()
            raise MediaStreamError
        if self.t0 is None:
            self.t0 = time.monotonic()
        wait = self.t0 + self._i * FRAME / RATE_HZ - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        block = np.zeros(FRAME, dtype="<i2")
        part = self._pcm[self._i * FRAME : (self._i + 1) * FRAME]
        block[: part.shape[0]] = part
        frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE_HZ
        frame.pts = self._i * FRAME
        frame.time_base = Fraction(1, RATE_HZ)
        self._i += 1
        return frame


@dataclass
class RtcRun:
    """What one WebRTC stream received on its data channel."""

    status: int = 0
    answer: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    partials: list[dict[str, Any]] = field(default_factory=list)
    finals: list[dict[str, Any]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    rtc_stats: list[dict[str, Any]] = field(default_factory=list)
    channel_closed: bool = False
    rtp_sent: int = 0
    rtp_dropped: int = 0
    audio_t0: float | None = None  # when the first frame was sent (monotonic)
    final_at: list[float] = field(default_factory=list)  # arrival of each final


def post_json(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    """(status, JSON body) of a POST; for the thread pool (its threads are in the namespace)."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _lose_packets(pc: RTCPeerConnection, keep: Callable[[int], bool], out: RtcRun) -> None:
    """Drop the RTP packets (not RTCP) of this peer's sender for which ``keep(n)`` is false."""
    transport: Any = pc.getSenders()[0].transport
    send_rtp = transport._send_rtp

    async def lossy(data: bytes) -> None:
        if is_rtcp(data):
            await send_rtp(data)
            return
        out.rtp_sent += 1
        if not keep(out.rtp_sent):
            out.rtp_dropped += 1
            return
        await send_rtp(data)

    transport._send_rtp = lossy


async def stream_speech(
    offer_url: str,
    audio: NDArray[np.float32],
    *,
    config: dict[str, Any] | None = None,
    keep_packet: Callable[[int], bool] | None = None,
    during: Callable[[RtcRun], Any] | None = None,
    cut_after_s: float | None = None,
    send_on_open: str | bytes | list[str | bytes] | None = None,
    prefix: NDArray[np.float32] | None = None,
    resume_prefix: NDArray[np.float32] | None = None,
    offer_extra: dict[str, Any] | None = None,
    timeout_s: float = 120.0,
) -> RtcRun:
    """Stream ``audio`` (16 kHz) over WebRTC; every data channel message until it closes.

    ``cut_after_s``: close the peer connection that long after the answer, without FINISH
    (a dropped connection; the server keeps the session for a resume). ``send_on_open``:
    messages for the data channel as soon as it opens. ``prefix``: audio (16 kHz) captured
    "before the track connected", sent as a browser does: the offer says ``"prefix": true``,
    the audio goes as PCM16 messages when the channel opens, then its end.
    ``resume_prefix``: the stream's audio (16 kHz, from its time 0) up to this track's start,
    for a resume: once ``session_started`` says the session's ``next_seq`` S, the part from
    (S - 1) x 100 ms on goes as the prefix, its end saying S. ``offer_extra``: more keys for
    the offer's body.
    """
    opening: list[str | bytes] = []
    if prefix is not None:
        pcm = np.clip(np.round(prefix * 32768.0), -32768, 32767).astype("<i2").tobytes()
        opening += [pcm[i : i + 3200] for i in range(0, len(pcm), 3200)]
        opening.append(json.dumps({"prefix": {"bytes": len(pcm)}}))
        offer_extra = {"prefix": True, **(offer_extra or {})}
    if resume_prefix is not None:
        offer_extra = {"prefix": True, **(offer_extra or {})}
    if isinstance(send_on_open, list):
        opening += send_on_open
    elif send_on_open is not None:
        opening.append(send_on_open)
    out = RtcRun()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel = pc.createDataChannel("events")
    closed = asyncio.Event()
    track = SpeechTrack(audio)
    pc.addTrack(track)
    if keep_packet is not None:
        _lose_packets(pc, keep_packet, out)

    def on_message(message: Any) -> None:
        msg = json.loads(message)
        out.messages.append(msg)
        if resume_prefix is not None and "started" in msg:
            seq = int(msg["started"]["next_seq"])
            missed = resume_prefix[(seq - 1) * 1600 :]
            pcm = np.clip(np.round(missed * 32768.0), -32768, 32767).astype("<i2").tobytes()
            for i in range(0, len(pcm), 3200):
                channel.send(pcm[i : i + 3200])
            channel.send(json.dumps({"prefix": {"bytes": len(pcm), "next_seq": seq}}))
        if "error" in msg:
            out.errors.append(msg["error"])
        if "webrtc" in msg:
            out.rtc_stats.append(msg["webrtc"])
        result = msg.get("result")
        if result is not None and msg.get("event_seq"):
            final = bool(result["is_final"])
            (out.finals if final else out.partials).append(result)
            out.kinds.append("final" if final else "partial")
            if final:
                out.final_at.append(time.monotonic())

    def on_close() -> None:
        out.channel_closed = True
        closed.set()

    def on_open() -> None:
        for message in opening:
            channel.send(message)

    channel.on("message", on_message)
    channel.on("close", on_close)
    channel.on("open", on_open)
    try:
        await pc.setLocalDescription(await pc.createOffer())
        offer = {
            "sdp": pc.localDescription.sdp,
            "type": "offer",
            "config": config if config is not None else {"interim_results": True},
            **(offer_extra or {}),
        }
        out.status, out.answer = await asyncio.to_thread(post_json, offer_url, offer)
        if out.status != 200:
            return out
        await pc.setRemoteDescription(RTCSessionDescription(out.answer["sdp"], "answer"))
        if during is not None:
            asyncio.get_running_loop().call_soon(during, out)
        async with asyncio.timeout(timeout_s):
            if cut_after_s is not None:
                await asyncio.sleep(cut_after_s)
                return out
            # The audio ends, or the server ends the stream first (e.g. it shuts down).
            waits = [asyncio.ensure_future(e.wait()) for e in (track.finished, closed)]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for wait in waits:
                wait.cancel()
            out.audio_t0 = track.t0
            if channel.readyState == "open":
                channel.send(json.dumps({"control": {"action": "FINISH"}}))
            await closed.wait()
    finally:
        with contextlib.suppress(Exception):
            await pc.close()
    return out
