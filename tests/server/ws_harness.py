"""Test helpers for the HTTP listener: a running server with HTTP, WebSocket streams, REST."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets
from numpy.typing import NDArray
from websockets.typing import Subprotocol

from audiototext.server.app import GrpcServer, ServerConfig
from audiototext.server.engine import Engine
from server.grpc_harness import config

PCM16_CONFIG: dict[str, Any] = {
    "encoding": "PCM16",
    "sample_rate_hz": 16000,
    "channels": 1,
    "interim_results": True,
}
CHUNK_SAMPLES = 1600  # 100 ms at 16 kHz


@contextlib.asynccontextmanager
async def http_server(
    recognizer: Engine, cfg: ServerConfig | None = None, **changes: Any
) -> AsyncIterator[GrpcServer]:
    """gRPC and HTTP on free ports of 127.0.0.1, over ``recognizer``."""
    server = GrpcServer(cfg or config(http_port=0, **changes), recognizer=recognizer)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(2.0)


def ws_url(server: GrpcServer, query: str = "") -> str:
    assert server.http is not None
    return f"ws://127.0.0.1:{server.http.port}/api/v1/stream{query}"


def cut_websockets(server: GrpcServer, path: str = "/api/v1/stream") -> int:
    """Abort the TCP connection of every open WebSocket on ``path``, server side: a network
    failure (no close frame; the browser sees code 1006). How many were cut.

    Reaches into uvicorn's connection set (its protocols keep the ASGI scope and transport).
    """
    assert server.http is not None
    cut = 0
    for conn in list(server.http._server.server_state.connections):
        scope = getattr(conn, "scope", None)
        transport = getattr(conn, "transport", None)
        if (
            isinstance(scope, dict)
            and scope.get("type") == "websocket"
            and scope.get("path") == path
            and transport is not None
            and not transport.is_closing()
        ):
            transport.abort()
            cut += 1
    return cut


async def cut_webrtc_peers(server: GrpcServer) -> int:
    """Close every open WebRTC peer connection, server side, as a lost connection would
    (the sessions are detached and wait for a resume). How many were closed."""
    assert server.webrtc is not None
    peers = list(server.webrtc._peers)
    for peer in peers:
        await peer.close()
    return len(peers)


def pcm16_frames(audio: NDArray[np.float32]) -> list[bytes]:
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2")
    return [pcm[i : i + CHUNK_SAMPLES].tobytes() for i in range(0, pcm.shape[0], CHUNK_SAMPLES)]


async def http_get(
    server: GrpcServer, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a request to the server's HTTP listener."""
    assert server.http is not None
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.http.port}{path}", headers=headers or {}, method=method
    )

    def fetch() -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    return await asyncio.to_thread(fetch)


def sse_events(body: bytes) -> list[tuple[str, Any]]:
    """(event, data as JSON) of each event of a ``text/event-stream`` body."""
    out = []
    for block in body.decode().split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields["event"], json.loads(fields["data"])))
    return out


async def exchange(
    url: str,
    frames: Sequence[str | bytes],
    *,
    headers: dict[str, str] | None = None,
    origin: str | None = None,
    timeout_s: float = 30.0,
) -> tuple[list[dict[str, Any]], int | None, str]:
    """Send ``frames`` (stopping at the first that fails), then read every message until the
    server closes; (messages as JSON, close code, close reason)."""
    messages: list[dict[str, Any]] = []
    async with websockets.connect(
        url,
        additional_headers=headers,
        origin=websockets.Origin(origin) if origin else None,
        max_size=None,
    ) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):
            for frame in frames:
                await ws.send(frame)
        with contextlib.suppress(websockets.ConnectionClosed):
            async with asyncio.timeout(timeout_s):
                async for message in ws:
                    messages.append(json.loads(message))
        return messages, ws.close_code, ws.close_reason or ""


@dataclass
class WsRun:
    """What a stream over the WebSocket received."""

    partials: list[dict[str, Any]] = field(default_factory=list)
    finals: list[dict[str, Any]] = field(default_factory=list)
    started: list[dict[str, Any]] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)
    events_seen: list[int] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # "partial" / "final", in arrival order


class WsStreamer:
    """A resuming WebSocket client, as the page is meant to be: credit-paced binary chunks,
    event numbers remembered, and after a cut a new socket with ``session_id``,
    ``resume_from_seq`` (the oldest unacknowledged chunk) and ``resume_from_event``."""

    def __init__(
        self,
        url: str,
        stream_config: dict[str, Any] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.headers = headers  # sent on every connection (e.g. Ray Serve's x-session-id)
        # serve --token: offered as the page does, beside the protocol's name
        self.subprotocols = (
            [Subprotocol("audiototext.v1"), Subprotocol(f"audiototext.token.{token}")]
            if token
            else None
        )
        self.config = dict(stream_config or PCM16_CONFIG)
        self.out = WsRun()
        self._session_id = ""
        self._last_event = 0
        self._acked = 0
        self._credit_ms = 0
        self._ws: Any = None
        self._changed = asyncio.Event()
        self._done = False

    async def _connect(self, resume_from_seq: int) -> asyncio.Task[None]:
        cfg = dict(self.config)
        if self._session_id:
            cfg.update(
                session_id=self._session_id,
                resume_from_seq=resume_from_seq,
                resume_from_event=self._last_event + 1,
            )
        self._ws = await websockets.connect(
            self.url,
            max_size=None,
            subprotocols=self.subprotocols,
            additional_headers=self.headers,
        )
        await self._ws.send(json.dumps({"config": cfg}))
        return asyncio.create_task(self._receive(self._ws))

    async def _receive(self, ws: Any) -> None:
        try:
            async for raw in ws:
                msg = json.loads(raw)
                if "error" in msg:
                    raise AssertionError(f"server refused: {msg}")
                if "started" in msg:
                    self.out.started.append(msg["started"])
                    self._session_id = msg["started"]["session_id"]
                    self._credit_ms = int(msg["started"]["credit_ms"])
                elif "ack" in msg:
                    self._acked = max(self._acked, int(msg["ack"]["seq"]))
                    self._credit_ms = int(msg["ack"]["credit_ms"])
                seq = int(msg.get("event_seq", 0))
                if seq:
                    if seq <= self._last_event:
                        continue  # a repeat after a resume
                    self._last_event = seq
                    self.out.events_seen.append(seq)
                    result = msg.get("result")
                    if result is not None:
                        final = result["is_final"]
                        (self.out.finals if final else self.out.partials).append(result)
                        self.out.kinds.append("final" if final else "partial")
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.out.close_codes.append(ws.close_code)
            self._changed.set()

    async def run(
        self,
        audio: NDArray[np.float32],
        *,
        speed: float | None = 1.0,
        cut_at_s: Sequence[float] = (),
    ) -> WsRun:
        frames = pcm16_frames(audio)
        receiver = await self._connect(1)
        cuts = sorted(cut_at_s)
        t0 = time.monotonic()
        seq = 1
        while seq <= len(frames):
            if cuts and (seq - 1) * 0.1 >= cuts[0]:
                cuts.pop(0)
                self._ws.transport.abort()  # a network failure: no close handshake
                await receiver
                receiver = await self._connect(self._acked + 1)
                seq = self._acked + 1
                continue
            # Credit: audio beyond the last acknowledged chunk (100 ms each).
            if (seq - self._acked) * 100 > self._credit_ms:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await self._changed.wait()
                continue
            await self._ws.send(frames[seq - 1])
            seq += 1
            if speed is not None:
                ahead = (seq - 1) * 0.1 / speed - (time.monotonic() - t0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await self._ws.send(json.dumps({"control": {"action": "FINISH"}}))
        async with asyncio.timeout(300):
            await receiver
        return self.out
