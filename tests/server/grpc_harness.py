"""Test helpers: a real grpc.aio server on 127.0.0.1, a cutting/throttling TCP proxy, speech."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from audiototext.client import AsyncClient, Stream, StreamSettings, TranscriptUpdate
from audiototext.server.app import GrpcServer, ServerConfig
from audiototext.server.engine import Engine
from audiototext.server.files import FileTranscribeFn

if TYPE_CHECKING:
    import grpc

    from audiototext.wire._proto import transcription_pb2 as pb

T = TypeVar("T")

BASE_CONFIG = ServerConfig(
    port=0, resume_grace_s=20.0, metrics_interval_s=0.5, shutdown_grace_s=5.0
)


@contextlib.asynccontextmanager
async def running_server(
    recognizer: Engine,
    config: ServerConfig | None = None,
    *,
    transcribe_file: FileTranscribeFn | None = None,
) -> AsyncIterator[GrpcServer]:
    server = GrpcServer(
        config or BASE_CONFIG, recognizer=recognizer, transcribe_file=transcribe_file
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop(2.0)


class ThreadedServer:
    """A server on its own event loop in a background thread, for callers that run their own
    loop (``asyncio.run`` in the CLI) or none. ``make_recognizer`` runs on the server's loop."""

    def __init__(
        self, make_recognizer: Callable[[], Engine], config: ServerConfig | None = None
    ) -> None:
        self._make = make_recognizer
        self._config = config or BASE_CONFIG
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server: GrpcServer | None = None

    def __enter__(self) -> GrpcServer:
        self._thread.start()

        async def start() -> GrpcServer:
            server = GrpcServer(self._config, recognizer=self._make())
            await server.start()
            return server

        self.server = asyncio.run_coroutine_threadsafe(start(), self._loop).result(60)
        return self.server

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.stop(2.0), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def self_signed_cert(folder: Path, host: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` and its key (PEM files), made with openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={host}",
            "-addext",
            f"subjectAltName=DNS:{host}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def config(**changes: Any) -> ServerConfig:
    return replace(BASE_CONFIG, **changes)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; can cut every connection and limit bandwidth.

    ``rate_bytes_s`` throttles the client→server direction (the audio uplink) with small
    buffers, so a slow link shows up as delay to the sender rather than a deep queue.
    """

    def __init__(self, target_port: int, rate_bytes_s: float | None = None) -> None:
        self.target_port = target_port
        self.rate_bytes_s = rate_bytes_s
        self.port = 0
        self.cuts = 0
        self.bytes_up = 0
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            c_writer.close()
            return
        pair = (c_writer, s_writer)
        self._conns.add(pair)
        up = asyncio.create_task(self._pipe(c_reader, s_writer, throttle=True))
        down = asyncio.create_task(self._pipe(s_reader, c_writer, throttle=False))
        self._tasks |= {up, down}
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for t in (up, down):
            t.cancel()
        for w in pair:
            w.close()
        self._conns.discard(pair)
        self._tasks -= {up, down}

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, throttle: bool
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError, ConnectionError):
            while True:
                rate = self.rate_bytes_s if throttle else None
                data = await reader.read(1024 if rate else 65536)
                if not data:
                    return
                if throttle:
                    self.bytes_up += len(data)
                if rate:
                    await asyncio.sleep(len(data) / rate)
                writer.write(data)
                await writer.drain()

    def cut(self) -> int:
        """Drop every open connection at once (like a network failure); returns how many."""
        self.cuts += 1
        return self._abort_all()

    def _abort_all(self) -> int:
        n = len(self._conns)
        for c_writer, s_writer in list(self._conns):
            for w in (c_writer, s_writer):
                w.transport.abort()
        self._conns.clear()
        return n

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._abort_all()
        for t in list(self._tasks):
            t.cancel()


def pcm_chunks(
    audio: NDArray[np.float32], chunk_s: float = 0.1, rate: int = 16_000
) -> list[NDArray[np.float32]]:
    step = int(chunk_s * rate)
    return [audio[i : i + step] for i in range(0, audio.shape[0], step)]


async def stream_audio(
    client: AsyncClient,
    audio: NDArray[np.float32],
    settings: StreamSettings | None = None,
    *,
    speed: float | None = 1.0,
    during: Sequence[tuple[float, Callable[[], object]]] | None = None,
) -> tuple[list[TranscriptUpdate], list[TranscriptUpdate], Stream]:
    """Stream ``audio`` (16 kHz mono) at ``speed`` × real time (None: as fast as credit
    allows); returns (partials, finals, stream). ``during``: (stream second, callable) hooks.
    """
    stream = await client.stream(settings or StreamSettings())
    partials: list[TranscriptUpdate] = []
    finals: list[TranscriptUpdate] = []

    async def collect() -> None:
        async for ev in stream.results():
            if isinstance(ev, TranscriptUpdate):
                (finals if ev.is_final else partials).append(ev)

    collector = asyncio.create_task(collect())
    hooks = sorted(during or [], key=lambda h: h[0])
    t0 = time.monotonic()
    sent_s = 0.0
    for chunk in pcm_chunks(audio):
        await stream.send(chunk)
        sent_s += chunk.shape[0] / 16_000
        while hooks and hooks[0][0] <= sent_s:
            hook = hooks.pop(0)[1]
            assert callable(hook)
            hook()
        if speed is not None:
            ahead = sent_s / speed - (time.monotonic() - t0)
            if ahead > 0:
                await asyncio.sleep(ahead)
    await stream.finish()
    await asyncio.wait_for(collector, timeout=300)
    await stream.close()
    return partials, finals, stream


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 300.0) -> T:
    """Run a test coroutine with an upper bound (a hang fails the test instead of the run)."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(bounded())


async def raw_stream(
    port: int,
    requests: Sequence[pb.StreamingRequest],
    *,
    metadata: tuple[tuple[str, str], ...] = (),
    credentials: grpc.ChannelCredentials | None = None,
) -> tuple[grpc.StatusCode, str, list[pb.StreamingResponse]]:
    """Send ``requests`` on a bare StreamingTranscribe call; (status code, details, responses)."""
    import grpc

    from audiototext.wire._proto import transcription_pb2_grpc

    if credentials is None:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    else:
        channel = grpc.aio.secure_channel(f"localhost:{port}", credentials)
    async with channel:
        stub = transcription_pb2_grpc.TranscriptionStub(channel)
        call = stub.StreamingTranscribe(metadata=metadata)
        responses: list[pb.StreamingResponse] = []

        async def reader() -> None:
            with contextlib.suppress(grpc.aio.AioRpcError):
                async for msg in call:
                    responses.append(msg)

        task = asyncio.create_task(reader())
        # Lockstep: after each chunk wait for its Ack (or the end of the call), so a refusal
        # arrives before the next write; writing to a call the server already ended makes the
        # client report INTERNAL ("Internal error from Core") instead of the server's status.
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            for req in requests:
                if task.done():
                    break
                await call.write(req)
                seq = req.audio.seq if req.WhichOneof("request") == "audio" else 0
                for _ in range(2000):
                    acked = [r.ack.seq for r in responses if r.WhichOneof("response") == "ack"]
                    if not seq or task.done() or (acked and acked[-1] >= seq):
                        break
                    await asyncio.sleep(0.005)
            if not task.done():
                await call.done_writing()
        await task
        return await call.code(), await call.details() or "", responses


def speech_like(seconds: float, *, seed: int = 0, rate: int = 16_000) -> NDArray[np.float32]:
    """Noise bursts separated by 1-s silences: utterances for the fake engine."""
    rng = np.random.default_rng(seed)
    parts: list[NDArray[np.float32]] = []
    total = 0.0
    while total < seconds:
        burst = float(rng.uniform(1.0, 2.5))
        parts += [
            np.zeros(rate, dtype=np.float32),
            (0.2 * rng.standard_normal(int(burst * rate))).astype(np.float32),
        ]
        total += 1.0 + burst
    parts.append(np.zeros(rate, dtype=np.float32))
    return np.concatenate(parts)
