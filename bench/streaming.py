"""Streaming latency and capacity against a real gRPC server (tiny.en int8 by default).

    .venv/bin/python bench/streaming.py [--server HOST:PORT] [--streams 1,2,4,8,16] [--gap-s 0]

Without ``--server`` it starts one in-process on 127.0.0.1 (a real grpc.aio server over TCP)
with the model from the cache, and runs the clients of each level in a child process
(``--clients process``, the default: clients are on other machines in a deployment, and in one
process the 16 clients' event loop took CPU and the GIL from the server and engine);
``--clients same`` runs them in the server's process and event loop, as before. Each stream
sends espeak-ng sentences at real time in 100-ms chunks, back to back (``--gap-s 0``, the
default: continuous speech, only espeak-ng's own ~0.35-s pauses between sentences) or
separated by ``--gap-s`` seconds of silence (1.5 gives the earlier "speech with pauses", about
55 % speech). Reported: end-of-speech → final latency
(from the moment the chunk holding a sentence's last speech sample, the last one above
-40 dBFS, was sent, to its final's arrival: VAD reaction, endpoint silence, decoding and the
network path), partial cadence (time between partials of an utterance), and the largest
number of concurrent real-time streams whose final latency p95 stays under 1 s.
``--stagger-s`` opens stream k that many seconds times k later (default 0: all at once, so
their first finals, which have no context to drop, all come within about a second).
Per level it also prints the engine's and the server process's CPU per second, the time the
server's threads waited for a CPU per second (``CPU wait/s``, the kernel's schedstat: the
machine's other load), the p95 of the streams' first finals and of their later ones, and
speech start → first text (p50 / p90: from a sentence's first sample above -40 dBFS, on the
sender's real-time clock, to the first partial or final that reaches into it); with
the in-process server, a line from the engine's own record (``FinalTrace``): how many finals
came from speculations, how long the others waited for a lane after their endpoint and how long
their batch took to decode, and the batch sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audiototext.client import AsyncClient, ClientError, StreamSettings, TranscriptUpdate

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things.",
    "She sells sea shells by the sea shore.",
    "We will meet at the train station tomorrow morning.",
)
RATE = 16_000
SPEECH_LEVEL = 0.01  # -40 dBFS


def speak(text: str, folder: Path) -> np.ndarray:
    path = folder / f"{abs(hash(text))}.wav"
    if not path.exists():
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True)
    with wave.open(str(path), "rb") as w:
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") / 32768.0
        rate = w.getframerate()
    import soxr

    return np.asarray(soxr.resample(raw, rate, RATE), dtype=np.float32)


def program(
    folder: Path, seconds: float, offset: int, gap_s: float
) -> tuple[np.ndarray, list[float], list[float]]:
    """Speech of about ``seconds``; returns audio and the stream times where speech ends and
    where it starts (first and last sample above -40 dBFS of each sentence)."""
    parts = [np.zeros(int(0.5 * RATE), np.float32)]
    ends: list[float] = []
    starts: list[float] = []
    t = 0.5
    i = offset
    while t < seconds:
        s = speak(SENTENCES[i % len(SENTENCES)], folder)
        loud = np.nonzero(np.abs(s) > SPEECH_LEVEL)[0]
        ends.append(t + (int(loud[-1]) + 1) / RATE)
        starts.append(t + int(loud[0]) / RATE)
        parts += [s, np.zeros(int(gap_s * RATE), np.float32)]
        t += s.shape[0] / RATE + gap_s
        i += 1
    return np.concatenate(parts), ends, starts


@dataclass
class StreamRun:
    """What one stream saw: seconds from the end of speech to each final (``first``: the
    stream's first final), between partials, from each sentence's speech start to its first
    text and to its first partial, the sentences sent, and the finals (start s, end s, text)."""

    latencies: list[float]
    gaps: list[float]
    finals: int
    first: list[float]
    first_text: list[float]
    first_partial: list[float]
    sentences: int
    texts: list[tuple[float, float, str]]


async def one_stream(
    client: AsyncClient,
    audio: np.ndarray,
    ends: list[float],
    starts: list[float],
    delay_s: float = 0.0,
) -> StreamRun:
    await asyncio.sleep(delay_s)
    stream = await client.stream(StreamSettings(compression="pcm16"))
    sent_at: dict[int, float] = {}  # 100-ms chunk index → wall time it was sent
    latencies: list[float] = []
    first: list[float] = []  # the stream's first final (no earlier text: beam search)
    gaps: list[float] = []
    finals = 0
    texts: list[tuple[float, float, str]] = []
    # sentence → its speech start to its first text, partial or final; and to its first partial
    first_text: dict[int, float] = {}
    first_partial: dict[int, float] = {}
    t0 = time.monotonic()

    async def collect() -> None:
        nonlocal finals
        last_partial: dict[int, float] = {}
        async for ev in stream.results():
            if not isinstance(ev, TranscriptUpdate):
                continue
            now = time.monotonic()
            # the sentence this text belongs to: the last whose speech starts before its end
            said = [k for k, s in enumerate(starts) if s < ev.end_s]
            if said and said[-1] not in first_text:
                first_text[said[-1]] = now - (t0 + starts[said[-1]])
            if said and not ev.is_final and said[-1] not in first_partial:
                first_partial[said[-1]] = now - (t0 + starts[said[-1]])
            if ev.is_final:
                finals += 1
                texts.append((ev.start_s, ev.end_s, ev.text))
                end = min(ends, key=lambda e: abs(e - ev.end_s))  # this sentence's speech end
                chunk = int(end * 10)
                if chunk in sent_at:
                    latencies.append(now - sent_at[chunk])
                    if finals == 1:
                        first.append(now - sent_at[chunk])
            else:
                prev = last_partial.get(ev.utterance_id)
                if prev is not None:
                    gaps.append(now - prev)
                last_partial[ev.utterance_id] = now

    task = asyncio.create_task(collect())
    t0 = time.monotonic()  # the speaker's clock: sentence k starts at t0 + starts[k]
    step = RATE // 10
    for n, i in enumerate(range(0, audio.shape[0], step)):
        await stream.send(audio[i : i + step])
        sent_at[n] = time.monotonic()
        ahead = (n + 1) * 0.1 - (time.monotonic() - t0)
        if ahead > 0:
            await asyncio.sleep(ahead)
    await stream.finish()
    await task
    await stream.close()
    return StreamRun(
        latencies,
        gaps,
        finals,
        first,
        list(first_text.values()),
        list(first_partial.values()),
        len(starts),
        texts,
    )


def run_queue_wait_s() -> float:
    """Seconds this process's threads have spent runnable but waiting for a CPU (Linux
    ``/proc/self/task/*/schedstat``; nan elsewhere): the share of a level's wall time the
    machine's other work took from the server."""
    total = 0
    try:
        for task in Path("/proc/self/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue  # a thread that ended meanwhile
    except OSError:
        return float("nan")
    return total / 1e9


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


async def run_level(
    target: str, n: int, folder: Path, seconds: float, gap_s: float, stagger_s: float = 0.0
) -> dict[str, float]:
    programs = [program(folder, seconds, k, gap_s) for k in range(n)]
    async with AsyncClient(target) as client:
        results = await asyncio.gather(
            *(one_stream(client, a, e, st, k * stagger_s) for k, (a, e, st) in enumerate(programs)),
            return_exceptions=True,
        )
    lat: list[float] = []
    gaps: list[float] = []
    first: list[float] = []
    later: list[float] = []
    first_text: list[float] = []
    refused = 0
    for r in results:
        if isinstance(r, BaseException):
            refused += 1
            continue
        lat += r.latencies
        gaps += r.gaps
        first += r.first
        later += r.latencies[len(r.first) :]
        first_text += r.first_text
    return {
        "streams": n,
        "refused": refused,
        "finals": len(lat),
        "final_p50_ms": pct(lat, 50),
        "final_p95_ms": pct(lat, 95),
        "partial_gap_p50_ms": pct(gaps, 50),
        "partial_gap_p95_ms": pct(gaps, 95),
        "first_p95_ms": pct(first, 95),
        "later_p95_ms": pct(later, 95),
        "first_text_p50_ms": pct(first_text, 50),
        "first_text_p90_ms": pct(first_text, 90),
    }


async def level_in_child(
    target: str, n: int, seconds: float, gap_s: float, stagger_s: float
) -> dict[str, float]:
    """One level run by a child process (``--one-level``), its result read back as JSON."""
    return await run_child(
        __file__,
        "--server",
        target,
        "--one-level",
        str(n),
        "--seconds",
        str(seconds),
        "--gap-s",
        str(gap_s),
        "--stagger-s",
        str(stagger_s),
    )


async def run_child(script: str, *args: str) -> dict[str, Any]:
    """Run ``script`` with ``args`` in a child process; its last stdout line, read as JSON."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, script, *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the client process failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def scrape_forever(server: Any) -> None:
    """GET /metrics every second (what Prometheus costs the server)."""
    import urllib.request

    url = f"http://127.0.0.1:{server.http.port}/metrics"
    while True:
        await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
        await asyncio.sleep(1.0)


def engine_cpu(server: object) -> float:
    """The engine's CPU seconds so far (worker and lanes), or nan for a remote server."""
    stats = getattr(getattr(server, "recognizer", None), "stats", None)
    if stats is None:
        return float("nan")
    return float(sum(stats().worker_cpu_s.values()))


def final_traces(server: object) -> list[Any]:
    """The in-process engine's record of its finals so far (``FinalTrace``), or none."""
    return list(getattr(getattr(server, "recognizer", None), "final_trace", ()))


def trace_summary(traces: list[Any]) -> str:
    """Where the finals' time went, from the engine's own account (in-process server only)."""
    if not traces:
        return "engine: no final traces (external server)"
    handed = [t for t in traces if not t.speculative]
    head = (
        f"engine: {len(traces)} finals, {len(traces) - len(handed)} from speculations (decoded "
        f"before the endpoint), {sum(t.reduced for t in traces)} reduced"
    )
    if not handed:
        return head
    waits = [t.wait_s for t in handed]
    decodes = [t.decode_s for t in handed]
    batches = collections.Counter(t.batch for t in handed)
    return (
        f"{head}; the others waited {pct(waits, 50):.0f} / {pct(waits, 95):.0f} ms (p50 / p95) "
        f"for a lane after the endpoint, then decoded in {pct(decodes, 50):.0f} / "
        f"{pct(decodes, 95):.0f} ms; finals per batch "
        + ", ".join(f"{k}: {v}" for k, v in sorted(batches.items()))
    )


async def main_async(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-speech-"))
    if args.one_level:
        r = await run_level(
            args.server, args.one_level, folder, args.seconds, args.gap_s, args.stagger_s
        )
        print(json.dumps(r))
        return
    server = None
    target = args.server
    # (label, server, target): with --metrics ab, two in-process servers take turns per level.
    arms: list[tuple[str, Any, str]] = []
    scrapers: list[asyncio.Task[None]] = []
    if target is None:
        from audiototext.server.app import GrpcServer, ServerConfig

        for with_metrics in {"on": [True], "off": [False], "ab": [True, False]}[args.metrics]:
            server = GrpcServer(
                ServerConfig(
                    port=0,
                    max_sessions=max(args.streams) + 2,
                    precision="int8",
                    metrics=with_metrics,
                    http_port=0 if with_metrics else None,
                    controller=with_metrics
                    if args.controller == "with-metrics"
                    else args.controller == "on",
                )
            )
            await server.start()
            if with_metrics:  # scraped every second, as Prometheus would
                scrapers.append(asyncio.create_task(scrape_forever(server)))
            label = "metrics" if with_metrics else "no metrics"
            if args.controller == "with-metrics":
                label = "metrics+ctl" if with_metrics else "neither"
            arms.append((label, server, f"127.0.0.1:{server.port}"))
        target = arms[0][2]
    else:
        arms.append(("", None, target))
    separate = server is not None and args.clients == "process"
    try:
        one, five, _ = os.getloadavg()
        where = (
            "a real server started by this process, clients in a child process"
            if separate
            else "a real server started by this process, clients in its event loop"
            if server is not None
            else "an external server"
        )
        print(
            f"server {target} ({where}); {args.seconds:.0f} s of speech per stream, real "
            f"time, {args.gap_s:g} s of silence between sentences; load {one:.2f} {five:.2f}"
        )
        header = (
            "streams",
            "refused",
            "finals",
            "final p50",
            "final p95",
            "partial gap p50",
            "p95",
            "engine CPU/s",
            "server CPU/s",
            "CPU wait/s",
            "1st p95",
            "later p95",
            "1st text p50",
            "p90",
            "load",
            "server",
        )
        print("  ".join(f"{h:>12}" for h in header))
        best = 0
        # level -> arm -> its runs (a level listed twice runs twice, each arm first once)
        by_level: dict[int, dict[str, list[dict[str, Any]]]] = collections.defaultdict(
            lambda: collections.defaultdict(list)
        )
        turns = [
            (n, arm)
            for i, n in enumerate(args.streams)
            for arm in (arms if i % 2 == 0 else arms[::-1])  # alternate who goes first
        ]
        for n, (label, server, target) in turns:
            await asyncio.sleep(6.0)  # drain the previous level; an overload flag holds 5 s
            cpu0, eng0, wall0 = time.process_time(), engine_cpu(server), time.monotonic()
            wait0 = run_queue_wait_s()
            traced = len(final_traces(server))
            if separate:
                r = await level_in_child(target, n, args.seconds, args.gap_s, args.stagger_s)
            else:
                r = await run_level(target, n, folder, args.seconds, args.gap_s, args.stagger_s)
            wall = time.monotonic() - wall0
            # CPU seconds per second of the level: the engine's threads, and the whole server
            # process (with --clients same, the clients too).
            r["engine_cpu"] = (engine_cpu(server) - eng0) / wall
            r["server_cpu"] = (time.process_time() - cpu0) / wall if server else float("nan")
            # Time the server's threads were ready to run but had no CPU, per second: ~0 on a
            # quiet machine; a level with much of it measures the machine's other load more
            # than the engine.
            r["cpu_wait"] = (run_queue_wait_s() - wait0) / wall if server else float("nan")
            print(
                "  ".join(
                    f"{v:>12.0f}" if isinstance(v, float) else f"{v:>12}"
                    for v in (
                        r["streams"],
                        r["refused"],
                        r["finals"],
                        r["final_p50_ms"],
                        r["final_p95_ms"],
                        r["partial_gap_p50_ms"],
                        r["partial_gap_p95_ms"],
                        f"{r['engine_cpu']:.2f}",
                        f"{r['server_cpu']:.2f}",
                        f"{r['cpu_wait']:.2f}",
                        r["first_p95_ms"],
                        r["later_p95_ms"],
                        r["first_text_p50_ms"],
                        r["first_text_p90_ms"],
                        f"{os.getloadavg()[0]:.2f}",
                        label,
                    )
                ),
                flush=True,
            )
            by_level[n][label].append(r)
            if server is not None:
                print("    " + trace_summary(final_traces(server)[traced:]), flush=True)
            if r["refused"] == 0 and r["final_p95_ms"] < 1000:
                best = n
        print(f"largest real-time concurrency with final p95 < 1 s: {best}")
        if len(arms) == 2:  # the A/B: each figure's mean over the runs, first arm / second
            a, b = arms[0][0], arms[1][0]
            for n, runs in by_level.items():
                if a in runs and b in runs:

                    def mean(arm: str, key: str, runs: Any = runs) -> float:
                        return float(np.mean([r[key] for r in runs[arm]]))

                    ratios = ", ".join(
                        f"{key} {mean(a, key) / mean(b, key):.3f}"
                        for key in ("server_cpu", "engine_cpu", "final_p50_ms", "final_p95_ms")
                        if mean(b, key)
                    )
                    print(f"{n} streams ({len(runs[a])} runs each), {a} / {b}: {ratios}")
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
    finally:
        for task in scrapers:
            task.cancel()
        for _, arm_server, _ in arms:
            if arm_server is not None:
                await arm_server.stop(5.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", help="host:port of a running server (default: start one)")
    p.add_argument("--streams", default="1,2,4,8,16", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--gap-s", type=float, default=0.0, help="silence between sentences")
    p.add_argument(
        "--clients",
        choices=("process", "same"),
        default="process",
        help="with the in-process server: clients in a child process (default) or its loop",
    )
    p.add_argument(
        "--stagger-s",
        type=float,
        default=0.0,
        help="stream k opens k times this later (default 0: all at once, as before)",
    )
    p.add_argument(
        "--metrics",
        choices=("on", "off", "ab"),
        default="on",
        help="the in-process server with /metrics scraped every second, without metrics, or "
        "two servers taking turns level by level (ab: the cost of metrics, same run)",
    )
    p.add_argument(
        "--controller",
        choices=("with-metrics", "on", "off"),
        default="with-metrics",
        help="the adaptive controller in the in-process servers: where metrics are on "
        "(default; with --metrics ab the other arm has neither), always, or never",
    )
    p.add_argument("--one-level", type=int, default=0, help=argparse.SUPPRESS)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
