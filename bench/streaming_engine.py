"""In-process benchmark of the streaming engine (no server): latency, cadence, capacity, WER.

Run: ``.venv/bin/python bench/streaming_engine.py [--cache DIR] [--max-streams N]``

* end of speech -> final latency (p50/p95): one stream fed at real time; the clock starts when
  the chunk holding the end of the endpoint silence is accepted (the earliest moment any
  endpointer could know the utterance is over) and stops when its final is delivered.
* partial cadence: wall time between successive partials of an utterance, and how much new
  speech each covers.
* capacity: N streams of continuous speech fed at real time, N doubling until final latency
  p95 passes 1 s or the engine reports overload.
* WER: the test clip set, streamed (processed chunk by chunk) vs file transcription.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "streaming")]

from streaming_helpers import stream_audio, wer  # noqa: E402

from audiototext.inference import Transcriber  # noqa: E402
from audiototext.streaming import (  # noqa: E402
    RecognizerOptions,
    StreamingRecognizer,
    StreamOptions,
    StreamResult,
)
from corpus import clip_set  # noqa: E402
from support.speech import SpeechSynthesizer  # noqa: E402

CHUNK_S = 0.1


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def real_time_stream(
    rec: StreamingRecognizer, audio: np.ndarray, opts: StreamOptions
) -> tuple[list[float], list[float], list[float]]:
    """Feed at real time; (final latencies, partial gaps, speech per partial)."""
    session = rec.open(opts)
    chunk = round(CHUNK_S * 16_000)
    accepted_at: list[tuple[float, float]] = []  # (stream end time, wall time)
    latencies: list[float] = []
    gaps: list[float] = []
    speech_per_partial: list[float] = []

    async def read() -> None:
        last: dict[int, tuple[float, float]] = {}
        async for event in session.events():
            now = time.monotonic()
            if not isinstance(event, StreamResult):
                continue
            if event.is_final:
                # The END is known once endpoint_silence_ms of silence after the speech is in.
                needed = event.end_s + opts.endpoint_silence_ms / 1000 - 0.03
                wall = next((w for t, w in accepted_at if t >= needed), None)
                if wall is not None:
                    latencies.append(now - wall)
            else:
                prev = last.get(event.utterance_id)
                if prev is not None:
                    gaps.append(now - prev[0])
                    speech_per_partial.append(event.end_s - prev[1])
                last[event.utterance_id] = (now, event.end_s)

    reader = asyncio.create_task(read())
    start = time.monotonic()
    for i in range(0, audio.shape[0], chunk):
        due = start + i / 16_000
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        session.accept(audio[i : i + chunk], 16_000)
        accepted_at.append(((i + chunk) / 16_000, time.monotonic()))
    await session.finish()
    await reader
    return latencies, gaps, speech_per_partial


async def capacity(
    rec: StreamingRecognizer, audio: np.ndarray, n: int
) -> tuple[list[float], bool, float]:
    results = await asyncio.gather(
        *(real_time_stream(rec, np.roll(audio, 16_000 * k), StreamOptions()) for k in range(n))
    )
    lat = [x for r in results for x in r[0]]
    stats = rec.stats()
    return lat, stats.overloaded, stats.partial_interval_scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="model cache root")
    parser.add_argument("--max-streams", type=int, default=16)
    parser.add_argument("--skip-wer", action="store_true")
    args = parser.parse_args()

    rec = StreamingRecognizer.load("tiny.en", precision="int8", cache_root=args.cache)
    synth = SpeechSynthesizer(Path("/tmp/audiototext-bench-espeak"))
    synth._cache_dir.mkdir(parents=True, exist_ok=True)
    clips = clip_set(synth)
    speech = np.concatenate([a for a, _ in clips])
    print(f"model tiny.en int8, {len(clips)} clips, {speech.shape[0] / 16_000:.0f} s of speech")

    lat, gaps, per = asyncio.run(real_time_stream(rec, speech, StreamOptions()))
    print(
        f"1 stream: end-of-speech -> final latency p50 {1000 * pct(lat, 0.5):.0f} ms, "
        f"p95 {1000 * pct(lat, 0.95):.0f} ms over {len(lat)} finals "
        f"(plus the {StreamOptions().endpoint_silence_ms} ms endpoint silence itself)"
    )
    print(
        f"partial cadence: median gap {1000 * statistics.median(gaps):.0f} ms "
        f"(p95 {1000 * pct(gaps, 0.95):.0f} ms), median new speech per partial "
        f"{1000 * statistics.median(per):.0f} ms"
    )
    rec.close()

    n = 1
    best = 0
    while n <= args.max_streams:
        rec = StreamingRecognizer.load(
            "tiny.en",
            RecognizerOptions(max_sessions=max(16, n)),
            precision="int8",
            cache_root=args.cache,
        )
        lat, overloaded, scale = asyncio.run(capacity(rec, clips[0][0], n))
        p95 = pct(lat, 0.95)
        print(
            f"{n:2d} streams: final p95 {1000 * p95:.0f} ms, partial interval x{scale:.2f}, "
            f"overloaded={overloaded}"
        )
        rec.close()
        if p95 >= 1.0 or overloaded:
            break
        best = n
        n *= 2
    print(f"concurrent real-time streams with final p95 < 1 s: {best} (doubling search)")

    if args.skip_wer:
        return
    rec = StreamingRecognizer.load(
        "tiny.en",
        RecognizerOptions(adaptive_partials=False),
        precision="int8",
        cache_root=args.cache,
    )
    refs = [t for _, t in clips]
    transcriber = Transcriber(rec.model)
    file_text = [" ".join(s.text for s in transcriber.transcribe(a)) for a, _ in clips]

    async def run() -> list[str]:
        return [(await stream_audio(rec.open(), a, 16_000)).text for a, _ in clips]

    stream_text = asyncio.run(run())
    print(f"WER file {wer(refs, file_text):.2%}  streaming {wer(refs, stream_text):.2%}")
    rec.close()


if __name__ == "__main__":
    main()
