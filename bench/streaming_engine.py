"""In-process benchmark of the streaming engine (no server): latency, cadence, capacity, WER.

Run: ``.venv/bin/python bench/streaming_engine.py [--cache DIR] [--streams 1,2,4,8,16]``

* end of speech -> final latency (p50/p95): one stream fed at real time in 100-ms chunks. The
  clock starts when the chunk holding the last speech sample of a sentence is accepted (the
  last sample above -40 dBFS in the utterance's audio: the moment a listener would say the
  speaker stopped) and stops when the sentence's final is delivered. It therefore includes
  the VAD's reaction, the endpoint silence (``StreamOptions.endpoint_silence_ms``) and the
  decoding that is not done ahead of it.
* partial cadence: wall time between successive partials of an utterance, and how much new
  speech each covers.
* capacity: N streams of continuous speech (sentences back to back, only espeak-ng's own
  pauses between them, ~85 % speech) fed at real time; final latency p95 at each N, the
  partial interval stretch, overload, and the engine's CPU time per audio second.
* WER: the test clip set, streamed (processed chunk by chunk) vs file transcription.

The machine is shared: ``os.getloadavg()`` is printed with every level.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "streaming")]

from streaming_helpers import stream_audio, wer  # noqa: E402

from audiototext.inference import Transcriber  # noqa: E402
from audiototext.streaming import (  # noqa: E402
    EngineStats,
    RecognizerOptions,
    SpeechEvent,
    SpeechEventKind,
    StreamingRecognizer,
    StreamOptions,
    StreamResult,
)
from corpus import SENTENCES, clip_set  # noqa: E402
from support.speech import SpeechSynthesizer  # noqa: E402

CHUNK_S = 0.1
RATE = 16_000
SPEECH_LEVEL = 0.01  # -40 dBFS: quieter samples count as the pause after speech


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def speech_end(audio: np.ndarray, start_s: float, end_s: float) -> float | None:
    """Stream time of the last speech sample in ``[start_s, end_s + 0.25 s)``.

    0.25 s past the VAD's end (which comes ~70 ms after the last loud sample) catches a soft
    ending the VAD cut, and stops short of the next sentence in continuous speech (espeak-ng
    pauses ~0.35 s); with 0.5 s the clock of the capacity runs started at the next onset.
    """
    lo = max(0, round(start_s * RATE))
    hi = min(audio.shape[0], round((end_s + 0.25) * RATE))
    loud = np.nonzero(np.abs(audio[lo:hi]) > SPEECH_LEVEL)[0]
    return None if loud.size == 0 else (lo + int(loud[-1]) + 1) / RATE


def chunk_arrival(sample: int) -> float:
    """Stream time at which the 100-ms chunk holding ``sample`` (exclusive end) is accepted."""
    chunk = round(CHUNK_S * RATE)
    return -(-sample // chunk) * chunk / RATE


@dataclass
class Phases:
    """Per final, seconds from the acceptance of the chunk holding the end of speech."""

    began: list[float] = field(default_factory=list)  # its decoding could start (audio-wise)
    cpu: list[float] = field(default_factory=list)  # CPU of its decoding
    end_seen: list[float] = field(default_factory=list)  # the VAD's END was read
    idle: list[float] = field(default_factory=list)  # latency on an idle machine: max of
    # (began + cpu, end_seen); the wall-clock latency minus this is waiting for a CPU
    speculative: int = 0
    reduced: int = 0

    def report(self) -> str:
        def ms(values: list[float]) -> str:
            return f"{1000 * pct(values, 0.5):.0f} / {1000 * pct(values, 0.95):.0f}"

        return (
            f"decoding began {ms(self.began)} ms (p50 / p95) after the end of speech, CPU "
            f"{ms(self.cpu)} ms, END read {ms(self.end_seen)} ms; idle-machine latency "
            f"{ms(self.idle)} ms; {self.speculative} of {len(self.cpu)} finals speculative, "
            f"{self.reduced} reduced"
        )


async def real_time_stream(
    rec: StreamingRecognizer,
    audio: np.ndarray,
    opts: StreamOptions,
    end_events: list[float] | None = None,
    phases: Phases | None = None,
) -> tuple[list[float], list[float], list[float]]:
    """Feed at real time; (final latencies, partial gaps, speech per partial).

    ``end_events`` collects, per final, when the VAD's speech END event arrived (seconds
    after the end of speech), to split the latency into endpointing and decoding; ``phases``
    the engine's own account of each final (:class:`FinalTrace`), in stream time.
    """
    session = rec.open(opts)
    chunk = round(CHUNK_S * RATE)
    accepted_at: list[tuple[float, float]] = []  # (stream end time, wall time)
    latencies: list[float] = []
    gaps: list[float] = []
    speech_per_partial: list[float] = []

    async def read() -> None:
        last: dict[int, tuple[float, float]] = {}
        end_at = 0.0
        async for event in session.events():
            now = time.monotonic()
            if isinstance(event, SpeechEvent) and event.kind is SpeechEventKind.END:
                end_at = now
            if not isinstance(event, StreamResult):
                continue
            if event.is_final:
                end = speech_end(audio, event.start_s, event.end_s)
                wall = None if end is None else next((w for t, w in accepted_at if t >= end), None)
                if wall is not None:
                    latencies.append(now - wall)
                    if end_events is not None:
                        end_events.append(end_at - wall)
                trace = next(
                    (
                        t
                        for t in reversed(rec.final_trace)
                        if (t.session_id, t.utterance_id) == (session.id, event.utterance_id)
                    ),
                    None,
                )
                if phases is not None and end is not None and trace is not None:
                    zero = chunk_arrival(round(end * RATE))
                    began = chunk_arrival(trace.began_at) - zero
                    seen = chunk_arrival(trace.emitted_at) - zero
                    phases.began.append(began)
                    phases.cpu.append(trace.cpu_s)
                    phases.end_seen.append(seen)
                    phases.idle.append(max(began + trace.cpu_s, seen))
                    phases.speculative += trace.speculative
                    phases.reduced += trace.reduced
            else:
                prev = last.get(event.utterance_id)
                if prev is not None:
                    gaps.append(now - prev[0])
                    speech_per_partial.append(event.end_s - prev[1])
                last[event.utterance_id] = (now, event.end_s)

    reader = asyncio.create_task(read())
    start = time.monotonic()
    for i in range(0, audio.shape[0], chunk):
        due = start + i / RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        session.accept(audio[i : i + chunk], RATE)
        accepted_at.append(((i + chunk) / RATE, time.monotonic()))
    await session.finish()
    await reader
    return latencies, gaps, speech_per_partial


async def capacity(
    rec: StreamingRecognizer,
    audio: np.ndarray,
    n: int,
    opts: StreamOptions,
    phases: Phases | None = None,
) -> tuple[list[float], list[float], float]:
    """Final latencies, partial gaps, and the share of the run the engine reported overload."""
    # Each stream starts at another point of the program, so utterances do not end together.
    shift = audio.shape[0] // max(n, 1)
    samples: list[bool] = []

    async def watch() -> None:
        while True:
            await asyncio.sleep(0.5)
            samples.append(rec.stats().overloaded)

    watcher = asyncio.create_task(watch())
    results = await asyncio.gather(
        *(real_time_stream(rec, np.roll(audio, shift * k), opts, phases=phases) for k in range(n))
    )
    watcher.cancel()
    overloaded = sum(samples) / len(samples) if samples else 0.0
    return [x for r in results for x in r[0]], [x for r in results for x in r[1]], overloaded


def breakdown(stats: EngineStats, samples: int) -> str:
    seconds = samples / RATE
    parts = [f"{k} {v / seconds * 1000:.1f} ms" for k, v in sorted(stats.worker_cpu_s.items())]
    return ", ".join(parts) + (
        f"; speculative finals used {stats.speculative_finals_used}, "
        f"wasted {stats.speculative_finals_wasted} (cancelled on their lane "
        f"{stats.speculative_finals_cancelled})"
    )


def continuous_speech(synth: SpeechSynthesizer, seconds: float) -> np.ndarray:
    """Sentences back to back (espeak-ng's own ~0.35-s pauses only) for about ``seconds``."""
    parts: list[np.ndarray] = [np.zeros(RATE // 2, dtype=np.float32)]
    total = 0.0
    for text in SENTENCES:
        if total >= seconds:
            break
        a = synth.speak(text).audio
        parts.append(a)
        total += a.shape[0] / RATE
    return np.concatenate(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="model cache root")
    parser.add_argument(
        "--streams", default="1,2,4,8,16", type=lambda s: [int(x) for x in s.split(",")]
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="speech per capacity stream")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument("--endpoint-ms", type=int, default=StreamOptions().endpoint_silence_ms)
    parser.add_argument("--no-speculation", action="store_true")
    parser.add_argument(
        "--final-context-s", type=float, default=RecognizerOptions().final_context_s
    )
    parser.add_argument("--final-tail-ms", type=int, default=RecognizerOptions().final_tail_ms)
    parser.add_argument(
        "--context-beam", type=int, default=RecognizerOptions().final_context_beam_size
    )
    parser.add_argument("--no-adaptive-finals", action="store_true")
    parser.add_argument(
        "--speculation-pause-ms", type=int, default=RecognizerOptions().speculation_pause_ms
    )
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-capacity", action="store_true")
    parser.add_argument("--skip-wer", action="store_true")
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="OpenBLAS threads (1, as the server sets; 0 keeps numpy's default)",
    )
    args = parser.parse_args()
    if args.blas_threads:
        from audiototext._blas import limit_blas_threads

        limit_blas_threads(args.blas_threads)

    def recognizer(**overrides: object) -> StreamingRecognizer:
        options = RecognizerOptions(
            **{"max_sessions": max(16, *args.streams), **overrides},  # type: ignore[arg-type]
            speculative_finals=not args.no_speculation,
            final_context_s=args.final_context_s,
            final_tail_ms=args.final_tail_ms,
            # the tail and the zeros after it keep 400 ms after the VAD's end
            final_silence_ms=max(0, 400 - args.final_tail_ms),
            final_context_beam_size=args.context_beam,
            adaptive_finals=not args.no_adaptive_finals,
            speculation_pause_ms=args.speculation_pause_ms,
        )
        return StreamingRecognizer.load(
            "tiny.en", options, precision="int8", threads=args.threads, cache_root=args.cache
        )

    opts = StreamOptions(endpoint_silence_ms=args.endpoint_ms)
    synth = SpeechSynthesizer(Path("/tmp/audiototext-bench-espeak"))
    synth._cache_dir.mkdir(parents=True, exist_ok=True)
    clips = clip_set(synth)
    print(
        f"model tiny.en int8, threads {args.threads or 'default'}, endpoint "
        f"{opts.endpoint_silence_ms} ms, speculative finals {not args.no_speculation}, final "
        f"context {args.final_context_s:g} s, tail {args.final_tail_ms} ms, beam "
        f"{args.context_beam}, adaptive finals {not args.no_adaptive_finals}, speculation "
        f"pause {args.speculation_pause_ms} ms; {load()}"
    )

    if not args.skip_latency:
        speech = np.concatenate([a for a, _ in clips])
        rec = recognizer()
        cpu = time.process_time()
        ends: list[float] = []
        phases = Phases()
        lat, gaps, per = asyncio.run(real_time_stream(rec, speech, opts, ends, phases))
        cpu = time.process_time() - cpu
        stats = rec.stats()
        print(
            f"1 stream ({speech.shape[0] / RATE:.0f} s, {len(clips) * 5} sentences with 1.2-s "
            f"pauses): end of speech -> final p50 {1000 * pct(lat, 0.5):.0f} ms, "
            f"p95 {1000 * pct(lat, 0.95):.0f} ms, max {1000 * max(lat):.0f} ms over "
            f"{len(lat)} finals; speculative finals used {stats.speculative_finals_used}, "
            f"wasted {stats.speculative_finals_wasted}; CPU {cpu / (speech.shape[0] / RATE):.2f} "
            f"s per audio s; {load()}"
        )
        print(f"  worker CPU per audio second: {breakdown(stats, speech.shape[0])}")
        print(
            f"  of which the VAD's END event came p50 {1000 * pct(ends, 0.5):.0f} ms, p95 "
            f"{1000 * pct(ends, 0.95):.0f} ms after the end of speech"
        )
        print(f"  engine's account: {phases.report()}")
        print(
            f"partial cadence: median gap {1000 * statistics.median(gaps):.0f} ms "
            f"(p95 {1000 * pct(gaps, 0.95):.0f} ms), median new speech per partial "
            f"{1000 * statistics.median(per):.0f} ms"
        )
        rec.close()

    if not args.skip_capacity:
        program = continuous_speech(synth, args.seconds)
        print(f"capacity: {program.shape[0] / RATE:.0f} s of continuous speech per stream")
        best = 0
        for n in args.streams:
            rec = recognizer()
            cpu = time.process_time()
            phases = Phases()
            lat, gaps, overloaded = asyncio.run(capacity(rec, program, n, opts, phases))
            cpu = time.process_time() - cpu
            stats = rec.stats()
            p95 = pct(lat, 0.95)
            print(
                f"{n:2d} streams: finals {len(lat)}, p50 {1000 * pct(lat, 0.5):.0f} ms, "
                f"p95 {1000 * p95:.0f} ms; partial gap p50 {1000 * pct(gaps, 0.5):.0f} ms, "
                f"p95 {1000 * pct(gaps, 0.95):.0f} ms, interval x{stats.partial_interval_scale:.2f}"
                f", skipped {stats.partials_skipped}; overloaded {overloaded:.0%} of the time; CPU "
                f"{cpu / (n * program.shape[0] / RATE):.3f} s per stream-second; {load()}",
                flush=True,
            )
            print(f"    worker CPU per stream-second: {breakdown(stats, n * program.shape[0])}")
            print(f"    engine's account: {phases.report()}")
            rec.close()
            if p95 < 1.0 and len(lat) >= n:
                best = max(best, n)
        print(f"concurrent real-time streams with final p95 < 1 s: {best}")

    if args.skip_wer:
        return
    rec = recognizer(adaptive_partials=False)
    refs = [t for _, t in clips]
    transcriber = Transcriber(rec.model)
    file_text = [" ".join(s.text for s in transcriber.transcribe(a)) for a, _ in clips]

    async def run() -> list[str]:
        return [(await stream_audio(rec.open(opts), a, RATE)).text for a, _ in clips]

    stream_text = asyncio.run(run())
    print(f"WER file {wer(refs, file_text):.2%}  streaming {wer(refs, stream_text):.2%}")
    rec.close()


if __name__ == "__main__":
    main()
