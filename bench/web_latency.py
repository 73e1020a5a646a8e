"""End of speech → final, and first chunk → first partial: WebSocket against gRPC, one server.

    PYTHONPATH=src .venv/bin/python bench/web_latency.py [--pairs 6] [--transports grpc,ws]

One in-process server (gRPC and the HTTP listener on 127.0.0.1, one engine: tiny.en int8 from
``--cache``, by default the test fixtures' converted model) serves every run. Each run streams
the same espeak-ng program (0.5 s of silence, then the four bench sentences separated by
``--gap-s`` of silence) at real time in 100-ms PCM16 chunks over one transport; runs alternate
between the transports (AB, then BA in the next pair, and so on: neither always runs first)
with a drained engine before each. The clients run in a child process by default
(``--clients process``), as in ``bench/streaming.py``: client CPU stays off the server's
loop, as with a browser.

Per final: the time from sending the chunk that holds its sentence's last sample above
-40 dBFS to the final's arrival, also split at the server (the clients' processes read the
same monotonic clock): chunk sent → taken by the engine, end of speech → the final handed to
the transport by the stream layer both share, hand-off → arrival. Per run: the time from the
first audio chunk sent to the first partial, and the server process's CPU per second.
Printed: each transport's median over its runs' medians, pooled p50/p95, and per pair the
ratio and difference against the first transport, with their medians.

Adding a transport (WebRTC) is one more ``async def client(addresses, audio) -> Trace`` in
``TRANSPORTS``: it sends ``audio`` at real time, records when each 100 ms of it
left (``Trace.sent``) and when each result arrived (``Trace.results``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from support.speech import SpeechSynthesizer  # noqa: E402

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things.",
    "She sells sea shells by the sea shore.",
    "We will meet at the train station tomorrow morning.",
)
RATE = 16_000
CHUNK = RATE // 10  # 100 ms
SPEECH_LEVEL = 0.01  # -40 dBFS: the last sample above it ends a sentence's speech
LEAD_S = 0.5


@dataclass
class Addresses:
    grpc: str  # host:port
    http: str  # http://host:port


@dataclass
class Result:
    at: float  # time.monotonic() of arrival
    is_final: bool
    utterance_id: int
    end_s: float  # stream time the result covers to
    text: str


@dataclass
class Trace:
    """What one run of a transport's client saw; the analysis is the same for every transport."""

    sent: list[float] = field(default_factory=list)  # chunk k (100 ms of audio) left at sent[k]
    results: list[Result] = field(default_factory=list)


Client = Callable[[Addresses, np.ndarray], Awaitable[Trace]]


def pcm16(audio: np.ndarray) -> bytes:
    return np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2").tobytes()


async def paced(audio: np.ndarray, send: Callable[[np.ndarray], Awaitable[None]]) -> list[float]:
    """Send ``audio`` in 100-ms chunks at real time; when each one was handed over."""
    sent: list[float] = []
    t0 = time.monotonic()
    for n, i in enumerate(range(0, audio.shape[0], CHUNK)):
        await send(audio[i : i + CHUNK])
        sent.append(time.monotonic())
        ahead = (n + 1) * 0.1 - (time.monotonic() - t0)
        if ahead > 0:
            await asyncio.sleep(ahead)
    return sent


# ---- transports ----------------------------------------------------------------------------


async def grpc_client(addr: Addresses, audio: np.ndarray) -> Trace:
    """The Python gRPC client (``audiototext.client``), PCM16 as the WebSocket sends."""
    from audiototext.client import AsyncClient, StreamSettings, TranscriptUpdate

    trace = Trace()
    async with AsyncClient(addr.grpc) as client:
        stream = await client.stream(StreamSettings(compression="pcm16"))

        async def collect() -> None:
            async for ev in stream.results():
                if isinstance(ev, TranscriptUpdate):
                    trace.results.append(
                        Result(time.monotonic(), ev.is_final, ev.utterance_id, ev.end_s, ev.text)
                    )

        task = asyncio.create_task(collect())
        trace.sent = await paced(audio, stream.send)
        await stream.finish()
        await asyncio.wait_for(task, 120)
        await stream.close()
    return trace


async def ws_client(addr: Addresses, audio: np.ndarray) -> Trace:
    """``WS /api/v1/stream`` as the page speaks it: config, then binary PCM16 chunks within
    the server's credit, FINISH; results are text frames."""
    import websockets

    trace = Trace()
    url = addr.http.replace("http://", "ws://") + "/api/v1/stream"
    config = {"encoding": "PCM16", "sample_rate_hz": RATE, "channels": 1, "interim_results": True}
    started = asyncio.Event()
    credit = {"acked": 0, "credit_ms": 0}
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"config": config}))

        async def receive() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for raw in ws:
                    now = time.monotonic()
                    msg = json.loads(raw)
                    if "error" in msg:
                        raise RuntimeError(f"the server refused the stream: {msg['error']}")
                    if "started" in msg:
                        credit["credit_ms"] = int(msg["started"]["credit_ms"])
                        started.set()
                    elif msg.get("ack"):
                        credit["acked"] = max(credit["acked"], int(msg["ack"]["seq"]))
                        credit["credit_ms"] = int(msg["ack"]["credit_ms"])
                    r = msg.get("result")
                    if r:
                        segments = r.get("segments") or []
                        trace.results.append(
                            Result(
                                now,
                                bool(r["is_final"]),
                                int(r["utterance_id"]),  # uint64: a string in JSON
                                float(segments[-1]["end_s"]) if segments else 0.0,
                                str(r["text"]),
                            )
                        )

        task = asyncio.create_task(receive())
        await asyncio.wait_for(started.wait(), 30)
        seq = 0

        async def send(chunk: np.ndarray) -> None:
            nonlocal seq
            seq += 1
            while (seq - credit["acked"]) * 100 > credit["credit_ms"] and not task.done():
                await asyncio.sleep(0.01)  # beyond the credit: wait for acknowledgements
            await ws.send(pcm16(chunk))

        trace.sent = await paced(audio, send)
        await ws.send(json.dumps({"control": {"action": "FINISH"}}))
        await asyncio.wait_for(task, 120)
    return trace


# WebRTC (aiortc) goes here as one more entry: an audio track that yields `audio` at real time
# and records when each 100 ms of it was handed to the peer connection, results from the data
# channel.
TRANSPORTS: dict[str, Client] = {"grpc": grpc_client, "ws": ws_client}


# ---- speech and analysis -------------------------------------------------------------------


def program(synth: SpeechSynthesizer, gap_s: float) -> tuple[np.ndarray, list[float]]:
    """The run's audio and the stream times where each sentence's speech ends."""
    parts = [np.zeros(int(LEAD_S * RATE), np.float32)]
    ends: list[float] = []
    t = LEAD_S
    for text in SENTENCES:
        s = synth.speak(text).audio
        loud = np.nonzero(np.abs(s) > SPEECH_LEVEL)[0]
        ends.append(t + (int(loud[-1]) + 1) / RATE)
        parts += [s, np.zeros(int(gap_s * RATE), np.float32)]
        t += s.shape[0] / RATE + gap_s
    return np.concatenate(parts), ends


def analyse(trace: Trace, ends: list[float]) -> dict[str, Any]:
    """Final latencies (s) from each sentence's end of speech, and first chunk → first result."""
    finals = [r for r in trace.results if r.is_final and r.text.strip()]
    latencies: list[float] = []
    matched: list[list[Any]] = []  # [utterance_id, text, when its end of speech was sent]
    for end in ends:
        # The sentence's final: the one ending nearest its speech (the VAD pads 30 ms; a
        # sentence split in two has its second part here, its first part unmatched).
        near = [r for r in finals if abs(r.end_s - end) < 0.6]
        chunk = int(end * 10)  # the 100-ms chunk holding the last loud sample
        if not near or chunk >= len(trace.sent):
            continue
        r = min(near, key=lambda r: abs(r.end_s - end))
        latencies.append(r.at - trace.sent[chunk])
        matched.append([r.utterance_id, r.text, trace.sent[chunk]])
    first = next((r for r in trace.results if r.text.strip()), None)
    first_partial = next((r for r in trace.results if not r.is_final and r.text.strip()), None)
    return {
        "finals": latencies,
        "finals_received": len(finals),
        "matched": matched,
        "sent": trace.sent,
        "first_result_s": (first.at - trace.sent[0]) if first and trace.sent else float("nan"),
        "first_partial_s": (
            (first_partial.at - trace.sent[0]) if first_partial and trace.sent else float("nan")
        ),
        "texts": [r.text for r in finals],
        # every result's arrival, for the server's hand-off times (same monotonic clock)
        "arrivals": [[r.at, r.is_final, r.utterance_id, r.text] for r in trace.results],
    }


class HandOffs:
    """When the server's stream layer handed each result to a transport's ``send`` (the
    layer both transports share: ``streams.result_message``). The clients' processes read the
    same system-wide monotonic clock, so arrival − hand-off is the transport's own delay."""

    def __init__(self) -> None:
        from audiototext.server import streams

        self.times: dict[tuple[bool, int, str], float] = {}
        original = streams.result_message

        def recorded(event_seq: int, ev: Any) -> Any:
            message = original(event_seq, ev)
            if message.WhichOneof("response") == "result":
                r = message.result
                self.times.setdefault((r.is_final, int(r.utterance_id), r.text), time.monotonic())
            return message

        streams.result_message = recorded

        # When the engine took each chunk (one run at a time: the k-th accept is chunk k).
        from audiototext.streaming.stream import RecognitionStream

        self.accepted: list[float] = []
        accept = RecognitionStream.accept

        def timed(stream: RecognitionStream, *args: Any, **kwargs: Any) -> None:
            accept(stream, *args, **kwargs)
            self.accepted.append(time.monotonic())

        RecognitionStream.accept = timed  # type: ignore[method-assign,assignment]

    def uplink(self, sent: list[float]) -> list[float]:
        """Chunk sent by the client → taken by the engine, per chunk of this run."""
        return [a - s for s, a in zip(sent, self.accepted, strict=False)]

    def engine(self, matched: list[list[Any]]) -> list[float]:
        """End of speech sent → the final handed to the transport, per matched final."""
        out: list[float] = []
        for utterance_id, text, sent in matched:
            handed = self.times.get((True, utterance_id, text))
            if handed is not None:
                out.append(handed - sent)
        return out

    def delays(self, arrivals: list[list[Any]]) -> tuple[list[float], list[float]]:
        """(finals', partials') arrival − hand-off of this run's results; then forgets them."""
        finals: list[float] = []
        partials: list[float] = []
        for at, is_final, utterance_id, text in arrivals:
            handed = self.times.get((is_final, utterance_id, text))
            if handed is not None:
                (finals if is_final else partials).append(at - handed)
        self.times.clear()
        self.accepted.clear()
        return finals, partials


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# ---- running -------------------------------------------------------------------------------


async def run_in_child(
    transport: str, addr: Addresses, gap_s: float, speech_dir: Path
) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--one-run",
        transport,
        "--grpc",
        addr.grpc,
        "--http",
        addr.http,
        "--gap-s",
        str(gap_s),
        "--speech-dir",
        str(speech_dir),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the {transport} client process failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def one_run(
    transport: str, addr: Addresses, gap_s: float, speech_dir: Path
) -> dict[str, Any]:
    audio, ends = program(SpeechSynthesizer(speech_dir), gap_s)
    trace = await TRANSPORTS[transport](addr, audio)
    return analyse(trace, ends)


async def settle(server: Any) -> None:
    """Wait for the engine to be idle and out of any overload hold (bounded); then undo the
    partials' stretch: it only relaxes during rounds, so a run would otherwise inherit the
    previous run's (seen: a first partial 4 s late after a run on a loaded machine)."""
    rec = server.recognizer
    monitor = getattr(rec, "load_monitor", None)
    for _ in range(300):
        if not rec.stats().overloaded and not (monitor and monitor.holding()):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    if monitor is not None:
        monitor.partial_scale = 1.0


def default_cache() -> Path:
    from support.model_fixtures import tiny_en_cache

    return tiny_en_cache()


async def main_async(args: argparse.Namespace) -> None:
    speech_dir = args.speech_dir or Path("/tmp/audiototext-bench-espeak")
    speech_dir.mkdir(parents=True, exist_ok=True)
    if args.one_run:
        r = await one_run(args.one_run, Addresses(args.grpc, args.http), args.gap_s, speech_dir)
        print(json.dumps(r))
        return
    from audiototext._blas import limit_blas_threads
    from audiototext.server.app import GrpcServer, ServerConfig

    limit_blas_threads(1)  # as the server's CLI does
    transports = args.transports
    for name in transports:
        if name not in TRANSPORTS:
            raise SystemExit(f"unknown transport {name!r}; known: {', '.join(TRANSPORTS)}")
    cache = args.cache or default_cache()
    server = GrpcServer(
        ServerConfig(port=0, http_port=0, precision="int8", cache_root=cache, max_sessions=4)
    )
    await server.start()
    assert server.http is not None
    addr = Addresses(f"127.0.0.1:{server.port}", f"http://127.0.0.1:{server.http.port}")
    audio, ends = program(SpeechSynthesizer(speech_dir), args.gap_s)
    one, five, _ = os.getloadavg()
    print(
        f"one server (gRPC {addr.grpc}, HTTP {addr.http}), tiny.en int8 from {cache}; "
        f"{audio.shape[0] / RATE:.1f} s per run ({len(ends)} sentences, {args.gap_s:g} s "
        f"gaps), real time, 100-ms PCM16 chunks; clients: {args.clients}; load {one:.2f} "
        f"{five:.2f}",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in transports}
    handoffs = HandOffs()
    try:
        for pair in range(args.pairs):
            order = transports if pair % 2 == 0 else transports[::-1]
            for name in order:
                await settle(server)
                handoffs.times.clear()
                handoffs.accepted.clear()
                cpu0, wall0 = time.process_time(), time.monotonic()
                if args.clients == "process":
                    r = await run_in_child(name, addr, args.gap_s, speech_dir)
                else:
                    r = await one_run(name, addr, args.gap_s, speech_dir)
                r["load"] = os.getloadavg()[0]
                # The server process's CPU (the clients run in a child process by default).
                r["server_cpu"] = (time.process_time() - cpu0) / (time.monotonic() - wall0)
                r["engine_finals"] = handoffs.engine(r["matched"])
                r["uplink"] = handoffs.uplink(r["sent"])
                r["delivery_finals"], r["delivery_partials"] = handoffs.delays(r["arrivals"])
                runs[name].append(r)
                print(
                    f"pair {pair + 1} {name:>5}: finals {len(r['finals'])} matched of "
                    f"{r['finals_received']}, median "
                    f"{1000 * median(r['finals']):.0f} ms "
                    f"[{', '.join(f'{1000 * x:.0f}' for x in r['finals'])}], first partial "
                    f"{1000 * r['first_partial_s']:.0f} ms; chunk sent → engine "
                    f"{1000 * median(r['uplink']):.1f} ms, end of speech → server hand-off "
                    f"{1000 * median(r['engine_finals']):.0f} ms, hand-off → arrival: finals "
                    f"{1000 * median(r['delivery_finals']):.1f} ms, partials "
                    f"{1000 * median(r['delivery_partials']):.1f} ms (medians); server CPU "
                    f"{r['server_cpu']:.2f} s/s; load "
                    f"{r['load']:.2f}",
                    flush=True,
                )
    finally:
        await server.stop(5.0)
    report(runs, transports)
    if args.json:
        args.json.write_text(json.dumps({"runs": runs}, indent=1))


def report(runs: dict[str, list[dict[str, Any]]], transports: list[str]) -> None:
    print()
    print(
        f"{'transport':>10} {'runs':>5} {'finals':>7} {'final p50':>10} {'pooled p50':>11} "
        f"{'pooled p95':>11} {'1st partial':>12} {'uplink p50':>11} {'delivery p50':>13} "
        f"{'p95':>8} {'server CPU/s':>13}"
    )
    for name in transports:
        rs = runs[name]
        pooled = [x for r in rs for x in r["finals"]]
        delivered = [x for r in rs for x in r["delivery_finals"] + r["delivery_partials"]]
        print(
            f"{name:>10} {len(rs):>5} {len(pooled):>7} "
            f"{1000 * median([median(r['finals']) for r in rs]):>8.0f} ms "
            f"{1000 * median(pooled):>8.0f} ms {1000 * pct(pooled, 95):>8.0f} ms "
            f"{1000 * median([r['first_partial_s'] for r in rs]):>9.0f} ms "
            f"{1000 * median([x for r in rs for x in r['uplink']]):>8.1f} ms "
            f"{1000 * median(delivered):>10.1f} ms {1000 * pct(delivered, 95):>5.1f} ms "
            f"{median([r['server_cpu'] for r in rs]):>13.3f}"
        )
    base = transports[0]
    for name in transports[1:]:
        ratios: list[float] = []
        diffs: list[float] = []
        first_diffs: list[float] = []
        for a, b in zip(runs[base], runs[name], strict=False):
            ma, mb = median(a["finals"]), median(b["finals"])
            ratios.append(mb / ma)
            diffs.append(mb - ma)
            first_diffs.append(b["first_partial_s"] - a["first_partial_s"])
        engine_diffs = [
            median(b["engine_finals"]) - median(a["engine_finals"])
            for a, b in zip(runs[base], runs[name], strict=False)
        ]
        uplink_diffs = [
            median(b["uplink"]) - median(a["uplink"])
            for a, b in zip(runs[base], runs[name], strict=False)
        ]
        cpu_ratios = [
            b["server_cpu"] / a["server_cpu"] for a, b in zip(runs[base], runs[name], strict=False)
        ]
        delivery_diffs = [
            median(b["delivery_finals"] + b["delivery_partials"])
            - median(a["delivery_finals"] + a["delivery_partials"])
            for a, b in zip(runs[base], runs[name], strict=False)
        ]
        print(
            f"{name} − {base}, per pair, medians: chunk sent → engine "
            f"{1000 * median(uplink_diffs):+.1f} ms (the transport), end of speech → hand-off "
            f"{1000 * median(engine_diffs):+.0f} ms (uplink and engine), "
            f"hand-off → arrival {1000 * median(delivery_diffs):+.1f} ms (the transport); "
            f"server CPU per second, ratio median {median(cpu_ratios):.3f} (range "
            f"{min(cpu_ratios):.3f}-{max(cpu_ratios):.3f})"
        )
        print(
            f"{name} / {base}, end of speech → final, per pair of runs: ratio median "
            f"{median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}), difference "
            f"median {1000 * median(diffs):+.0f} ms (range {1000 * min(diffs):+.0f} to "
            f"{1000 * max(diffs):+.0f} ms); first partial: difference median "
            f"{1000 * median(first_diffs):+.0f} ms"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=6, help="runs of each transport")
    p.add_argument(
        "--transports",
        default=["grpc", "ws"],
        type=lambda s: s.split(","),
        help="comma-separated; the first is the reference (default grpc,ws)",
    )
    p.add_argument("--gap-s", type=float, default=1.5, help="silence between sentences")
    p.add_argument("--cache", type=Path, default=None, help="model cache root")
    p.add_argument("--clients", choices=("process", "same"), default="process")
    p.add_argument("--speech-dir", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, default=None, help="write every run's figures here")
    p.add_argument("--one-run", default="", help=argparse.SUPPRESS)
    p.add_argument("--grpc", default="", help=argparse.SUPPRESS)
    p.add_argument("--http", default="", help=argparse.SUPPRESS)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
