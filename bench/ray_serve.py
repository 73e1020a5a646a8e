"""What Ray Serve's gRPC proxy costs a live stream, and final latency with 1 vs 2 replicas.

Run by hand (needs redis-server and Ray Serve; the converted tiny.en the tests use)::

    PYTHONPATH=src .venv/bin/python bench/ray_serve.py --runs 6 --streams 4

A two-node local cluster (tests/support/ray_cluster.py), a redis-server, the deployment of
``audiototext.rayserve`` (tiny.en int8). Each replica also listens on a loopback port of its
own: that is the *direct* peer, the same engine in the same process without Serve.

1. **Per chunk**: a bare ``StreamingTranscribe`` call sends 100-ms PCM16 chunks in lockstep
   (next chunk when the last one's Ack came); the time from write to Ack, median per run.
2. **Per final**: an espeak-ng sentence at real time with 0.5 s of silence before and 1.5 s
   after; the time from the end of speech to the final. Runs alternate direct and Serve.
3. **The same two over the page's WebSocket** (``/api/v1/stream``, PCM16 binary frames, JSON
   acks and results): through Serve's HTTP proxy (with ``x-session-id``) against a plain
   ``audiototext serve`` on this machine (same model and precision; its HTTP listener is the
   direct peer, as the replicas have none of their own). Runs alternate.
4. **Final p95 under load**: N concurrent streams of 3 sentences each through Serve, with
   1 replica and with 2 (a redeploy between; rounds alternate the order), end of speech ->
   final p95 over all finals of each count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

import grpc  # noqa: E402

from audiototext.client import AsyncClient, StreamSettings, TranscriptUpdate  # noqa: E402
from audiototext.rayserve.deploy import (  # noqa: E402
    APP_NAME,
    DEPLOYMENT_NAME,
    ServeSettings,
    deploy,
)
from audiototext.server.config import ServerConfig  # noqa: E402
from audiototext.wire._proto import transcription_pb2 as pb  # noqa: E402
from audiototext.wire._proto import transcription_pb2_grpc  # noqa: E402
from server.real_engine import SENTENCES  # noqa: E402
from support.fixture_cache import shared_speech_dir  # noqa: E402
from support.model_fixtures import tiny_en_cache  # noqa: E402
from support.ray_cluster import ray_cluster  # noqa: E402
from support.services import Server, free_port, running_redis  # noqa: E402
from support.speech import SpeechSynthesizer, with_silence  # noqa: E402

LEAD_S, TAIL_S = 0.5, 1.5
CHUNK = 1600  # 100 ms at 16 kHz


async def chunk_rtt_ms(target: str, audio: np.ndarray) -> float:
    """Median write -> Ack time of lockstep chunks on one call."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub: Any = transcription_pb2_grpc.TranscriptionStub(channel)
        call = stub.StreamingTranscribe(metadata=(("session_id", f"bench-{time.time_ns()}"),))
        await call.write(
            pb.StreamingRequest(config=pb.StreamConfig(encoding=pb.PCM16, sample_rate_hz=16000))
        )
        times: list[float] = []
        acked = 0
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
        for seq, at in enumerate(range(0, pcm.shape[0] - CHUNK, CHUNK), start=1):
            began = time.perf_counter()
            await call.write(
                pb.StreamingRequest(
                    audio=pb.AudioChunk(seq=seq, data=pcm[at : at + CHUNK].tobytes())
                )
            )
            while acked < seq:
                msg = await call.read()
                if msg.WhichOneof("response") == "ack":
                    acked = msg.ack.seq
            times.append(1000 * (time.perf_counter() - began))
        await call.write(pb.StreamingRequest(control=pb.Control(action=pb.Control.FINISH)))
        await call.done_writing()
        while await call.read() is not grpc.aio.EOF:
            pass
    return statistics.median(times)


async def final_latencies(target: str, audio: np.ndarray, speech_ends: list[float]) -> list[float]:
    """End of each utterance's speech -> its final's arrival, ms (real-time sending)."""
    async with AsyncClient(target) as client:
        s = await client.stream(StreamSettings(compression="pcm16"))
        arrivals: list[float] = []

        async def read() -> None:
            async for r in s.results():
                if isinstance(r, TranscriptUpdate) and r.is_final:
                    arrivals.append(time.monotonic())

        reader = asyncio.create_task(read())
        t0 = time.monotonic()
        for n, at in enumerate(range(0, audio.shape[0], CHUNK)):
            await asyncio.sleep(max(0.0, t0 + n * 0.1 - time.monotonic()))
            await s.send(audio[at : at + CHUNK])
        await s.finish()
        await reader
        await s.close()
    # A chunk's audio was captured 100 ms before it was sent.
    return [1000 * (a - (t0 - 0.1 + e)) for a, e in zip(arrivals, speech_ends, strict=False)]


async def ws_chunk_rtt_ms(url: str, audio: np.ndarray) -> float:
    """Median binary frame -> its JSON ack, lockstep, over the page's WebSocket."""
    key = f"bench-{time.time_ns()}"
    async with websockets.connect(url, additional_headers={"x-session-id": key}) as ws:
        await ws.send(json.dumps({"config": {"encoding": "PCM16", "sample_rate_hz": 16000}}))
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
        times: list[float] = []
        for seq, at in enumerate(range(0, pcm.shape[0] - CHUNK, CHUNK), start=1):
            began = time.perf_counter()
            await ws.send(pcm[at : at + CHUNK].tobytes())
            while True:
                msg = json.loads(await ws.recv())
                if "error" in msg:
                    raise RuntimeError(f"refused: {msg}")
                if "ack" in msg and int(msg["ack"]["seq"]) >= seq:
                    break
            times.append(1000 * (time.perf_counter() - began))
        await ws.send(json.dumps({"control": {"action": "FINISH"}}))
        async for _ in ws:
            pass
    return statistics.median(times)


async def ws_final_ms(url: str, audio: np.ndarray, speech_end: float) -> float:
    """End of speech -> the first final's arrival, ms, sending at real time."""
    key = f"bench-{time.time_ns()}"
    async with websockets.connect(url, additional_headers={"x-session-id": key}) as ws:
        await ws.send(json.dumps({"config": {"encoding": "PCM16", "sample_rate_hz": 16000}}))
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
        arrivals: list[float] = []

        async def read() -> None:
            async for raw in ws:
                result = json.loads(raw).get("result")
                if result is not None and result["is_final"]:
                    arrivals.append(time.monotonic())

        reader = asyncio.create_task(read())
        t0 = time.monotonic()
        for n, at in enumerate(range(0, pcm.shape[0], CHUNK)):
            await asyncio.sleep(max(0.0, t0 + n * 0.1 - time.monotonic()))
            await ws.send(pcm[at : at + CHUNK].tobytes())
        await ws.send(json.dumps({"control": {"action": "FINISH"}}))
        await reader
    if not arrivals:
        raise RuntimeError("no final came")
    return 1000 * (arrivals[0] - (t0 - 0.1 + speech_end))


async def measure_ws(
    urls: dict[str, str], one: np.ndarray, one_end: float, three: np.ndarray, runs: int
) -> None:
    """Serve's HTTP proxy against a plain server's HTTP listener, alternating."""
    await ws_final_ms(urls["serve"], one, one_end)  # warm-up
    chunk: dict[str, list[float]] = {name: [] for name in urls}
    final: dict[str, list[float]] = {name: [] for name in urls}
    for i in range(runs):
        for name in list(urls) if i % 2 == 0 else list(reversed(urls)):
            c = await ws_chunk_rtt_ms(urls[name], three)
            f = await ws_final_ms(urls[name], one, one_end)
            chunk[name].append(c)
            final[name].append(f)
            print(f"  ws run {i + 1} {name}: chunk->ack {c:.1f} ms, final {f:.0f} ms", flush=True)
    report_pairs("WebSocket", chunk, final)


def report_pairs(
    transport: str, chunk: dict[str, list[float]], final: dict[str, list[float]]
) -> None:
    for label, table in (("chunk->ack", chunk), ("end of speech->final", final)):
        pairs = [s - d for s, d in zip(table["serve"], table["direct"], strict=True)]
        print(
            f"{transport} {label}: direct median {statistics.median(table['direct']):.1f} ms, "
            f"serve {statistics.median(table['serve']):.1f} ms; serve - direct median of "
            f"pairs {statistics.median(pairs):+.1f} ms, ratio "
            f"{statistics.median(table['serve']) / statistics.median(table['direct']):.2f}"
        )


def replica_port() -> int:
    from ray import serve

    handle = serve.get_deployment_handle(DEPLOYMENT_NAME, APP_NAME)
    report: dict[str, Any] = handle.options(session_id="bench").report.remote().result()
    return int(report["loopback_port"])


def p95(values: list[float]) -> float:
    return float(np.percentile(np.asarray(values), 95))


async def concurrent(target: str, audio: np.ndarray, ends: list[float], n: int) -> list[float]:
    runs = await asyncio.gather(*(final_latencies(target, audio, ends) for _ in range(n)))
    return [ms for run in runs for ms in run]


async def measure(
    config: ServerConfig,
    settings: Callable[[int], ServeSettings],
    one: np.ndarray,
    one_end: list[float],
    three: np.ndarray,
    ends: list[float],
    args: argparse.Namespace,
) -> None:
    """Every measurement on one event loop (grpc.aio keeps to the loop it first ran on)."""
    first = settings(1)
    await asyncio.to_thread(deploy, config, first)
    targets = {
        "direct": f"127.0.0.1:{await asyncio.to_thread(replica_port)}",
        "serve": f"127.0.0.1:{first.grpc_port}",
    }
    await final_latencies(targets["serve"], one, one_end)  # warm-up
    chunk: dict[str, list[float]] = {name: [] for name in targets}
    final: dict[str, list[float]] = {name: [] for name in targets}
    for i in range(args.runs):
        order = list(targets) if i % 2 == 0 else list(reversed(targets))
        for name in order:
            c = await chunk_rtt_ms(targets[name], three)
            f = (await final_latencies(targets[name], one, one_end))[0]
            chunk[name].append(c)
            final[name].append(f)
            print(f"  run {i + 1} {name}: chunk->ack {c:.1f} ms, final {f:.0f} ms", flush=True)
    report_pairs("gRPC", chunk, final)
    if args.ws_runs:
        plain = Server(config.session_store).start()
        try:
            urls = {
                "direct": f"ws://127.0.0.1:{plain.http_port}/api/v1/stream",
                "serve": f"ws://127.0.0.1:{first.http_port}/api/v1/stream",
            }
            await measure_ws(urls, one, one_end[0], three, args.ws_runs)
        finally:
            plain.stop()
    if not args.rounds:
        return
    finals_by: dict[int, list[float]] = {1: [], 2: []}
    for r in range(args.rounds):
        for replicas in (1, 2) if r % 2 == 0 else (2, 1):
            await asyncio.to_thread(deploy, config, settings(replicas))
            finals = await concurrent(targets["serve"], three, ends, args.streams)
            finals_by[replicas] += finals
            print(f"  round {r + 1}, {replicas} replica(s): p95 {p95(finals):.0f} ms", flush=True)
    for replicas, finals in finals_by.items():
        print(
            f"{args.streams} streams, {replicas} replica(s): {len(finals)} finals, "
            f"median {statistics.median(finals):.0f} ms, p95 {p95(finals):.0f} ms"
        )
    print(f"p95 ratio 2 replicas / 1: {p95(finals_by[2]) / p95(finals_by[1]):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="1 then 2 replicas, alternating")
    parser.add_argument("--ws-runs", type=int, default=6, help="WebSocket runs (0: none)")
    args = parser.parse_args()
    home = str(tiny_en_cache())
    os.environ["AUDIOTOTEXT_HOME"] = home
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    synth = SpeechSynthesizer(shared_speech_dir())
    sentence = synth.speak(SENTENCES[0])
    one = with_silence(sentence.audio, LEAD_S, TAIL_S)
    one_end = [LEAD_S + sentence.duration_s]
    parts, ends, at = [], [], 0.0
    for text in SENTENCES[:3]:
        s = synth.speak(text)
        parts.append(with_silence(s.audio, LEAD_S, TAIL_S))
        ends.append(at + LEAD_S + s.duration_s)
        at += LEAD_S + s.duration_s + TAIL_S
    three = np.concatenate(parts)
    with running_redis() as store, ray_cluster(env, nodes=2, cpus_per_node=2) as cluster:
        import ray

        os.environ["RAY_AUTH_MODE"] = "disabled"
        ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
        config = ServerConfig(precision="int8", session_store=store.url, max_sessions=16)
        grpc_port, http_port = free_port(), free_port()

        def settings(replicas: int) -> ServeSettings:
            return ServeSettings(replicas=replicas, grpc_port=grpc_port, http_port=http_port)

        try:
            asyncio.run(measure(config, settings, one, one_end, three, ends, args))
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
