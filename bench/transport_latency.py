"""End of speech → final over WebRTC (aiortc peer, Opus), the WebSocket, gRPC (PCM16) and
OpenAI's realtime transcription socket (``/v1/realtime``, the ``openai`` client, 24-kHz PCM16).

A measurement to run by hand, as root when WebRTC is among the transports (it makes a network
namespace: aioice offers no loopback address), with the converted tiny.en the tests use::

    PYTHONPATH=src .venv/bin/python bench/transport_latency.py --runs 6
    PYTHONPATH=src .venv/bin/python bench/transport_latency.py --transports grpc,realtime,grpc24k

Clients run in processes of their own (``--client``, one per run; WebRTC's stays in the
bench's, which is the server's, as it needs the namespace): a client in the server's process
competes with it for the GIL and the event loop, which adds to the transport it measures.
``--in-process`` runs every client in the server's process (the earlier way).

For the realtime socket the final is the first
``conversation.item.input_audio_transcription.completed`` event (server_vad, the engine's own
endpoint silence as for the others).

Runs rotate between the transports (each run starts with the next one) on one server with
the real engine (int8); each sends
one espeak-ng sentence at real time with 0.5 s of silence before and 1.5 s after, and the
time from the last sample of speech leaving the client to the final's arrival is reported
(median, p95 and every run). FINISH is sent only after the trailing silence, so the final comes
from the engine's own end-of-utterance detection, as with a person speaking.

Both clients send a block as soon as its time starts (the WebSocket a 100-ms chunk, WebRTC a
20-ms frame); a microphone has a block only when its time has passed, so the times are taken
from the capture's start (a block's length before the first send): the WebSocket's 100-ms
chunks cost it 100 ms, WebRTC's frames 20 ms, as in the page. "End of speech" is the end of
espeak's clip, which has some silence of its own after the last word.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import websockets
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from audiototext.streaming import RecognizerOptions, StreamingRecognizer  # noqa: E402
from server.grpc_harness import pcm_chunks  # noqa: E402
from server.real_engine import SENTENCES, settled  # noqa: E402
from server.realtime_harness import (  # noqa: E402
    RealtimeRun,
    connect,
    pcm24k,
    receive_until,
    send_audio,
)
from server.rtc_harness import stream_speech  # noqa: E402
from server.ws_harness import PCM16_CONFIG, http_server, pcm16_frames  # noqa: E402
from support.fixture_cache import fixtures_root  # noqa: E402
from support.netns import namespace, run_inside  # noqa: E402
from support.speech import SpeechSynthesizer, resample, with_silence  # noqa: E402

LEAD_S, TAIL_S = 0.5, 1.5
Run = tuple[float, str, float]  # (end of speech → final ms, text, end of speech: monotonic s)
CLIENT_CPU_S: dict[str, list[float]] = {}  # each client process's CPU seconds per run


def _result(final_at: float, end_at: float, text: str) -> Run:
    return 1000 * (final_at - end_at), text, end_at


async def ws_latency(url: str, audio: NDArray[np.float32], speech_end_s: float) -> Run:
    finals: list[float] = []
    texts: list[str] = []
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"config": PCM16_CONFIG}))

        async def receive() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for raw in ws:
                    msg = json.loads(raw)
                    result = msg.get("result")
                    if result is not None and result["is_final"]:
                        finals.append(time.monotonic())
                        texts.append(result["text"])

        receiver = asyncio.create_task(receive())
        t0 = time.monotonic()
        for i, chunk in enumerate(pcm16_frames(audio)):
            ahead = t0 + i * 0.1 - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            await ws.send(chunk)
        await ws.send(json.dumps({"control": {"action": "FINISH"}}))
        await receiver
    capture_t0 = t0 - 0.1  # the first 100-ms chunk existed only 100 ms after capture began
    return _result(finals[0], capture_t0 + speech_end_s, " ".join(texts))


async def grpc_latency(
    target: str, audio: NDArray[np.float32], speech_end_s: float, rate: int = 16_000
) -> Run:
    """``rate`` other than 16 kHz: the audio resampled to it first, so the engine resamples
    it back (the control for the realtime socket's 24 kHz)."""
    from audiototext.client import AsyncClient, StreamSettings, TranscriptUpdate

    finals: list[float] = []
    texts: list[str] = []
    audio = resample(audio, 16_000, rate)
    async with AsyncClient(target) as client:
        stream = await client.stream(StreamSettings(compression="pcm16", sample_rate_hz=rate))

        async def receive() -> None:
            async for ev in stream.results():
                if isinstance(ev, TranscriptUpdate) and ev.is_final:
                    finals.append(time.monotonic())
                    texts.append(ev.text)

        receiver = asyncio.create_task(receive())
        t0 = time.monotonic()
        for i, chunk in enumerate(pcm_chunks(audio, rate=rate)):
            ahead = t0 + i * 0.1 - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            await stream.send(chunk)
        await stream.finish()
        await asyncio.wait_for(receiver, 120)
        await stream.close()
    capture_t0 = t0 - 0.1  # as the WebSocket's: 100-ms chunks
    return _result(finals[0], capture_t0 + speech_end_s, " ".join(texts))


async def rtc_latency(url: str, audio: NDArray[np.float32], speech_end_s: float) -> Run:
    out = await stream_speech(url, audio)
    assert out.audio_t0 is not None and out.final_at, out.answer
    text = " ".join(f["text"] for f in out.finals)
    capture_t0 = out.audio_t0 - 0.02  # likewise for the first 20-ms frame
    return _result(out.final_at[0], capture_t0 + speech_end_s, text)


async def realtime_latency(
    port: int, audio: NDArray[np.float32], speech_end_s: float, prefix_padding_ms: int = 300
) -> Run:
    """``prefix_padding_ms``: OpenAI's default (300), or the engine's (30) as gRPC has it."""
    run = RealtimeRun()
    vad = {"type": "server_vad", "prefix_padding_ms": prefix_padding_ms}
    async with connect(port) as conn:
        await conn.session.update(
            session={"type": "transcription", "audio": {"input": {"turn_detection": vad}}}
        )
        receiver = asyncio.create_task(receive_until(conn, run, lambda r: bool(r.completed())))
        t0 = await send_audio(conn, pcm24k(audio), 48_000)
        await receiver
    at = next(t for t, e in run.events if e["type"].endswith("transcription.completed"))
    capture_t0 = t0 - 0.1  # as the WebSocket's: 100-ms appends
    return _result(at, capture_t0 + speech_end_s, run.completed()[0]["transcript"])


# Clients a --client process runs; realtime30: the realtime socket with gRPC's 30-ms prefix.
_SEPARATE = ("grpc", "grpc24k", "websocket", "realtime", "realtime30")


async def client_latency(
    kind: str, grpc_target: str, http_port: int, audio: NDArray[np.float32], end_s: float
) -> Run:
    """One run of a client of ``kind`` (in the calling process)."""
    if kind == "grpc":
        return await grpc_latency(grpc_target, audio, end_s)
    if kind == "grpc24k":
        return await grpc_latency(grpc_target, audio, end_s, rate=24_000)
    if kind == "websocket":
        url = f"ws://127.0.0.1:{http_port}/api/v1/stream"
        return await ws_latency(url, audio, end_s)
    if kind == "realtime":
        return await realtime_latency(http_port, audio, end_s)
    if kind == "realtime30":
        return await realtime_latency(http_port, audio, end_s, prefix_padding_ms=30)
    raise ValueError(f"no client process for {kind!r}")


async def client_process(
    kind: str, grpc_target: str, http_port: int, audio: NDArray[np.float32], end_s: float
) -> Run:
    """One run of a client of ``kind`` in a process of its own; the server's process only
    waits for it (the times are taken in the client)."""
    with tempfile.NamedTemporaryFile(suffix=".npy") as f:
        np.save(f, audio)
        f.flush()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client", kind, "--grpc-target", grpc_target,
            "--http-port", str(http_port), "--audio", f.name, "--end-s", repr(end_s),
            stdout=subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} client exited with {proc.returncode}")
    answer = json.loads(out.decode().strip().splitlines()[-1])
    CLIENT_CPU_S.setdefault(kind, []).append(float(answer["cpu_s"]))
    return float(answer["ms"]), str(answer["text"]), float(answer["end_at"])


def run_client(args: argparse.Namespace) -> None:
    """``--client``: one run, its result as a JSON line on stdout."""
    audio = np.load(args.audio)
    cpu0 = time.process_time()
    ms, text, end_at = asyncio.run(
        client_latency(args.client, args.grpc_target, args.http_port, audio, args.end_s)
    )
    cpu_s = time.process_time() - cpu0  # the client's own CPU over the run (not imports)
    # time.monotonic() is CLOCK_MONOTONIC, one clock for every process of the machine.
    print(json.dumps({"ms": ms, "text": text, "end_at": end_at, "cpu_s": cpu_s}))


class StageTracer:
    """``--trace``: where a run's time goes, from the engine's side of the server (this
    process): the client's end of speech → the engine accepting the chunk with it (ingest)
    → the VAD's end of speech (endpoint: the silence must arrive) → the final emitted
    (decode) → the client receiving it (delivery). Wraps ``RecognitionStream.accept`` and
    ``emit``; the newest stream is the run's."""

    def __init__(self) -> None:
        from audiototext.streaming.stream import RecognitionStream

        self.accepts: dict[int, list[tuple[float, int]]] = {}
        self.events: dict[int, list[tuple[float, str]]] = {}
        accept, emit, end = RecognitionStream.accept, RecognitionStream.emit, RecognitionStream.end
        self.ended: dict[int, float] = {}
        self.stages: dict[str, list[tuple[float, float, float]]] = {}
        tracer = self

        def traced_end(stream: Any) -> None:
            tracer.ended[stream.id] = time.monotonic()
            end(stream)

        def traced_accept(stream: Any, *a: Any, **k: Any) -> None:
            accept(stream, *a, **k)
            received = round(stream.audio_received_s * 16_000)
            tracer.accepts.setdefault(stream.id, []).append((time.monotonic(), received))

        def traced_emit(stream: Any, item: Any) -> None:
            kind = "final" if getattr(item, "is_final", False) else type(item).__name__
            if getattr(item, "kind", None) is not None:
                kind = f"speech-{item.kind.value}"
            tracer.events.setdefault(stream.id, []).append((time.monotonic(), kind))
            emit(stream, item)

        setattr(RecognitionStream, "accept", traced_accept)  # noqa: B010
        setattr(RecognitionStream, "emit", traced_emit)  # noqa: B010
        setattr(RecognitionStream, "end", traced_end)  # noqa: B010
        # The realtime socket: when its `completed` event has been written to the socket.
        from audiototext.server.http import openai_realtime

        self.completed_sent: list[float] = []
        send_all = openai_realtime._Connection.send_all

        async def traced_send_all(conn: Any, events: list[dict[str, Any]]) -> None:
            await send_all(conn, events)
            if any(e["type"].endswith("transcription.completed") for e in events):
                tracer.completed_sent.append(time.monotonic())

        setattr(openai_realtime._Connection, "send_all", traced_send_all)  # noqa: B010

    def summary(self) -> None:
        """Per transport: end of speech → the VAD's end (ingest + endpoint), decode, delivery
        (the engine's final → the client): median, mean and p95 over the runs."""
        for kind, rows in self.stages.items():
            parts = []
            for name, values in zip(
                ("to VAD end", "decode", "delivery"), zip(*rows, strict=True), strict=True
            ):
                v = list(values)
                parts.append(
                    f"{name} {statistics.median(v):4.0f}/{statistics.mean(v):4.0f}/{_p95(v):4.0f}"
                )
            print(f"{kind:9s} stages ms (median/mean/p95): " + "  ".join(parts))

    def split(self, kind: str, end_at: float, ms: float, end_sample: float) -> str:
        sid = max(self.accepts)
        accepted = next(t for t, n in self.accepts[sid] if n >= end_sample)
        events = self.events.get(sid, [])
        vad_end = next((t for t, k in events if k == "speech-end"), math.nan)
        final = next((t for t, k in events if k == "final"), math.nan)
        got = end_at + ms / 1000
        parts = [accepted - end_at, vad_end - accepted, final - vad_end, got - final]
        names = ["ingest", "endpoint", "decode", "delivery"]
        sent = [t for t in self.completed_sent if final <= t <= got]
        if sent:  # the realtime socket: delivery = the server's sending, then the client's
            parts[-1:] = [sent[0] - final, got - sent[0]]
            names[-1:] = ["sent", "client"]
        # Streams open when the final came (others slow speculation: SHARED_PAUSE_MS).
        open_ = sum(
            1
            for i, acc in self.accepts.items()
            if acc[0][0] <= final and self.ended.get(i, math.inf) > final
        )
        delivery = sum(parts[3:])
        self.stages.setdefault(kind, []).append(
            (1000 * (parts[0] + parts[1]), 1000 * parts[2], 1000 * delivery)
        )
        split = "  ".join(f"{n} {1000 * v:5.0f}" for n, v in zip(names, parts, strict=True))
        return f"{split}  streams open {open_}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per transport")
    parser.add_argument("--cache", type=Path, help="a converted-model cache (default: tests')")
    parser.add_argument(
        "--transports",
        default="grpc,websocket,webrtc,realtime",
        help="comma-separated, from grpc, websocket, webrtc, realtime, realtime30 (with a "
        "30-ms prefix padding), grpc24k (gRPC with "
        "24-kHz audio); gRPC is the reference",
    )
    parser.add_argument("--in-process", action="store_true", help="clients in the server's process")
    parser.add_argument(
        "--trace", action="store_true", help="split each run: ingest, endpoint, decode, delivery"
    )
    parser.add_argument("--client", choices=_SEPARATE, help=argparse.SUPPRESS)
    parser.add_argument("--grpc-target", help=argparse.SUPPRESS)
    parser.add_argument("--http-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    parser.add_argument("--end-s", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        run_client(args)
        return
    built = [p for p in fixtures_root().glob("tiny-en-cache-*") if p.is_dir()]
    cache = args.cache or max(built, key=_mtime)
    tracer = StageTracer() if args.trace else None
    recognizer = StreamingRecognizer.load(
        "tiny.en", RecognizerOptions(max_sessions=4), precision="int8", cache_root=cache
    )
    synth = SpeechSynthesizer(Path(tempfile.mkdtemp()))
    kinds = tuple(args.transports.split(","))
    assert "grpc" in kinds, "gRPC is the reference the others are compared with"
    results: dict[str, list[float]] = {k: [] for k in kinds}

    async def measure() -> None:
        async with http_server(recognizer) as srv:
            assert srv.http is not None
            host = "127.0.0.1"
            base = f"{host}:{srv.http.port}/api/v1"
            for i in range(args.runs):
                spoken = synth.speak(SENTENCES[i % len(SENTENCES)]).audio
                audio = with_silence(spoken, LEAD_S, TAIL_S)
                end_s = LEAD_S + spoken.shape[0] / 16_000
                n = len(kinds)
                for kind in kinds[i % n :] + kinds[: i % n]:
                    await settled(recognizer)
                    target = f"{host}:{srv.port}"
                    if kind == "webrtc":
                        ms, text, end_at = await rtc_latency(
                            f"http://{base}/webrtc/offer", audio, end_s
                        )
                    elif args.in_process:
                        ms, text, end_at = await client_latency(
                            kind, target, srv.http.port, audio, end_s
                        )
                    else:
                        ms, text, end_at = await client_process(
                            kind, target, srv.http.port, audio, end_s
                        )
                    results[kind].append(ms)
                    print(f"run {i + 1} {kind:9s} end of speech -> final {ms:6.0f} ms  {text!r}")
                    if tracer is not None:
                        print("    " + tracer.split(kind, end_at, ms, 16_000 * end_s))

    if "webrtc" in kinds:
        with namespace() as name:
            run_inside(name, measure, 1800)
    else:
        asyncio.run(measure())
    recognizer.close()
    grpc_median = statistics.median(results["grpc"])
    grpc_p95 = _p95(results["grpc"])
    for kind, values in results.items():
        median, p95 = statistics.median(values), _p95(values)
        print(
            f"{kind:9s} median {median:6.0f} ms ({median - grpc_median:+.0f} ms against gRPC)"
            f"  p95 {p95:6.0f} ms ({p95 - grpc_p95:+.0f})  runs {_fmt(values)}"
        )
    _client_cpu()
    if tracer is not None:
        tracer.summary()


def _client_cpu() -> None:
    for kind, values in CLIENT_CPU_S.items():
        print(f"{kind:9s} client CPU per run: median {statistics.median(values):.2f} s")


def _p95(values: list[float]) -> float:
    """The 95th percentile, interpolated between the runs."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


if __name__ == "__main__":
    main()
