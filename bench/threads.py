"""What changing the streaming engine's threads at run time costs, and whether fewer threads
help while another process takes a core.

Run: ``PYTHONPATH=src .venv/bin/python bench/threads.py [--cache DIR] [--rounds 3]``

1. Swap cost: a tiny.en int8 engine (2 threads per lane) streams espeak-ng speech fed as
   fast as it takes it; meanwhile its sessions are rebuilt (``build_threads``, the work the
   controller runs in a background thread at nice +10) alternately with 1 and 2 threads
   and handed in (``swap_model``). Printed: the rebuild's wall time, how long the swap
   waited for the lanes (while it waits the worker hands out no new batch: the stall), the
   worker's longest gap between rounds and when the last final came out, against the same
   stream run with no swap, alternating.
2. Contention: one CPU hog (a process spinning on one core) runs while one stream is fed at
   real time; end of speech → final latency with 2 threads per lane against 1, alternating
   engines round by round, same hog. The clock starts when the chunk holding a sentence's
   last sample is accepted and stops when its final arrives.

The machine is shared: ``os.getloadavg()`` is printed with each round.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from audiototext.audio import SileroVad  # noqa: E402
from audiototext.inference import OrtConfig, WhisperModel  # noqa: E402
from audiototext.models import ModelCache, pull  # noqa: E402
from audiototext.server.background import run_in_background  # noqa: E402
from audiototext.streaming import (  # noqa: E402
    RecognizerOptions,
    StreamingRecognizer,
    StreamResult,
)
from support.fixture_cache import shared_speech_dir  # noqa: E402
from support.speech import SpeechSynthesizer, join_with_gaps  # noqa: E402

RATE = 16_000
CHUNK = RATE // 10
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please take a seat and open your notebooks.",
    "We will meet again tomorrow at nine in the morning.",
    "She sells sea shells by the sea shore.",
    "Turn left at the second traffic light.",
]


def engine(path: Path, threads: int) -> StreamingRecognizer:
    options = RecognizerOptions(adaptive_partials=False, adaptive_finals=False)
    model = WhisperModel(path, OrtConfig(device="cpu", intra_op_threads=threads))
    return StreamingRecognizer(model, options, model_name="tiny.en", vad=SileroVad())


class RoundGaps:
    """The worker's longest gap between rounds (wraps ``LoadMonitor.record_round``)."""

    def __init__(self, rec: StreamingRecognizer) -> None:
        self.last: float | None = None
        self.longest = 0.0
        monitor = rec.load_monitor
        original = monitor.record_round

        def record(began: float, *args: Any) -> None:
            now = time.monotonic()
            if self.last is not None:
                self.longest = max(self.longest, began - self.last)
            self.last = now
            original(began, *args)

        monitor.record_round = record  # type: ignore[method-assign]


async def stream(
    rec: StreamingRecognizer, audio: np.ndarray, *, real_time: bool, during: Any = None
) -> tuple[list[tuple[float, StreamResult]], dict[int, float]]:
    """Feed ``audio``; returns the finals with their arrival time and each chunk's feed time
    (by its last sample)."""
    s = rec.open()
    finals: list[tuple[float, StreamResult]] = []
    fed: dict[int, float] = {}

    async def collect() -> None:
        async for e in s.events():
            if isinstance(e, StreamResult) and e.is_final:
                finals.append((time.monotonic(), e))

    reader = asyncio.create_task(collect())
    side = asyncio.create_task(during()) if during is not None else None
    t0 = time.monotonic()
    for i, at in enumerate(range(0, len(audio), CHUNK)):
        if real_time:
            await asyncio.sleep(max(0.0, t0 + i * CHUNK / RATE - time.monotonic()))
        s.accept(audio[at : at + CHUNK], RATE)
        fed[min(at + CHUNK, len(audio))] = time.monotonic()
        await asyncio.sleep(0)
    await s.finish()
    await reader
    if side is not None:
        await side
    return finals, fed


async def swap_cost(path: Path, audio: np.ndarray, rounds: int) -> None:
    print("## swap cost (fed as fast as taken; tiny.en int8, 2 lanes)")
    builds, waits = [], []
    gaps: dict[str, list[float]] = {"swap": [], "none": []}
    walls: dict[str, list[float]] = {"swap": [], "none": []}
    for r in range(rounds):
        for mode in ("swap", "none") if r % 2 == 0 else ("none", "swap"):
            rec = engine(path, 2)
            watch = RoundGaps(rec)

            async def swaps(rec: StreamingRecognizer = rec) -> None:
                for threads in (1, 2):
                    await asyncio.sleep(0.5)  # the stream's decoding is under way
                    began = time.perf_counter()
                    built = await run_in_background("threads", rec.build_threads, threads)
                    builds.append(time.perf_counter() - began)
                    done = await asyncio.wrap_future(rec.swap_model(built))
                    waits.append(done.waited_s)

            began = time.monotonic()
            finals, _ = await stream(
                rec, audio, real_time=False, during=swaps if mode == "swap" else None
            )
            wall = finals[-1][0] - began  # the last final: the whole stream decoded
            await rec.close()
            gaps[mode].append(watch.longest)
            walls[mode].append(wall)
            print(
                f"round {r} {mode}: {len(finals)} finals, all out after {wall:.2f} s, longest"
                f" gap between rounds {watch.longest * 1000:.0f} ms,"
                f" load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    print(
        f"rebuild (both sessions): median {statistics.median(builds):.3f} s, "
        f"max {max(builds):.3f} s over {len(builds)}"
    )
    print(
        f"swap waited for the lanes: median {statistics.median(waits) * 1000:.0f} ms, "
        f"max {max(waits) * 1000:.0f} ms"
    )
    wall_ratio = statistics.median(walls["swap"]) / statistics.median(walls["none"])
    print(
        f"stream decoded (last final), two swaps / none: {wall_ratio:.2f} "
        f"({statistics.median(walls['swap']):.2f} / {statistics.median(walls['none']):.2f} s)"
    )
    ratio = statistics.median(gaps["swap"]) / statistics.median(gaps["none"])
    print(
        f"longest worker gap, swap / none: {ratio:.2f} "
        f"({statistics.median(gaps['swap']) * 1000:.0f} / "
        f"{statistics.median(gaps['none']) * 1000:.0f} ms medians)"
    )


def hog() -> None:
    while True:
        pass


def latencies(
    finals: list[tuple[float, StreamResult]], fed: dict[int, float], ends: list[int]
) -> list[float]:
    """Per sentence: its final's arrival minus the feed time of the chunk with its end."""
    marks = sorted(fed)
    out = []
    for arrived, r in finals:
        if not r.text:
            continue
        end = min(ends, key=lambda e: abs(e / RATE - r.end_s))
        chunk_end = next(m for m in marks if m >= end)
        out.append(arrived - fed[chunk_end])
    return out


async def contention(path: Path, audio: np.ndarray, ends: list[int], rounds: int) -> None:
    print("## contention: one CPU hog, one stream at real time, final latency")
    spinner = multiprocessing.Process(target=hog, daemon=True)
    spinner.start()
    try:
        got: dict[int, list[float]] = {1: [], 2: []}
        for r in range(rounds):
            for threads in (2, 1) if r % 2 == 0 else (1, 2):
                rec = engine(path, threads)
                finals, fed = await stream(rec, audio, real_time=True)
                await rec.close()
                lat = latencies(finals, fed, ends)
                got[threads] += lat
                print(
                    f"round {r} threads {threads}: finals {len(finals)}, latency median "
                    f"{statistics.median(lat):.3f} s, max {max(lat):.3f} s, "
                    f"load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    finally:
        spinner.kill()
        spinner.join()
    for t in (2, 1):
        lat = sorted(got[t])
        print(
            f"threads {t}: median {statistics.median(lat):.3f} s, "
            f"p90 {lat[int(0.9 * (len(lat) - 1))]:.3f} s over {len(lat)} finals"
        )
    print(
        f"median latency, 1 thread / 2 threads: "
        f"{statistics.median(got[1]) / statistics.median(got[2]):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-swap", action="store_true")
    parser.add_argument("--skip-contention", action="store_true")
    args = parser.parse_args()
    path = pull("tiny.en", precision="int8", cache=ModelCache(args.cache)).entry.path
    synth = SpeechSynthesizer(shared_speech_dir())
    audio, spans = join_with_gaps([synth.speak(s).audio for s in SENTENCES], 1.0)
    # A sentence ends at its last sample above -40 dBFS (espeak-ng pads each with silence).
    ends = [
        start + int(np.flatnonzero(np.abs(audio[start:stop]) > 0.01)[-1]) for start, stop in spans
    ]
    print(f"audio {len(audio) / RATE:.1f} s, {len(SENTENCES)} sentences; cores {os.cpu_count()}")
    if not args.skip_swap:
        asyncio.run(swap_cost(path, audio, args.rounds))
    if not args.skip_contention:
        asyncio.run(contention(path, audio, ends, args.rounds))


if __name__ == "__main__":
    main()
