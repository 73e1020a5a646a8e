"""Speech start → first text in streaming, per utterance: how much audio, how long, how good.

Run: ``.venv/bin/python bench/first_words.py [--cache DIR] [--variants base,new] [--rounds 2]``

Clips (espeak-ng, tiny.en int8, in process, no server):

* ``short``: a stream that opens with a one- or two-word utterance ("Yes.", "Good morning."),
  then a pause and a full sentence;
* ``corpus``: the streaming WER clip set (`tests/streaming/corpus.py`, 20 sentences with 1.2-s
  pauses).

Two passes per variant:

* **audio** (deterministic): 100-ms chunks, each processed before the next is sent
  (``adaptive_partials`` off). Per utterance: the audio that had been sent from the speech
  onset (the first sample above -40 dBFS) to the first text, partial or final.
* **real time**: 100-ms chunks at real-time pace, default options. Per utterance, wall time
  from the onset (when a speaker says it: the stream's start plus the onset's stream time)
  to the first text; end of speech → final.

Both passes report whether the utterance got a partial before its final, and whether its
first partial's words survive into the final (the first partial's words are a prefix of the
final's: flicker otherwise), and the finals' WER against the references. Variants are
RecognizerOptions overrides (``VARIANTS``), run alternately in one process. The machine is
shared: ``os.getloadavg()`` is printed with every run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "streaming")]

from streaming_helpers import normalise, wer  # noqa: E402

from audiototext.streaming import (  # noqa: E402
    RecognizerOptions,
    StreamingRecognizer,
    StreamOptions,
    StreamResult,
)
from corpus import GAP_S, SENTENCES, clips_with_spans  # noqa: E402
from support.speech import SpeechSynthesizer, join_with_gaps  # noqa: E402

RATE = 16_000
CHUNK = RATE // 10
SPEECH_LEVEL = 0.01  # -40 dBFS
SHORT = (
    "Yes.",
    "Hello.",
    "Okay.",
    "Good morning.",
    "Thank you.",
    "Not yet.",
    "Sounds good.",
    "Stop right there.",
)
# RecognizerOptions overrides per variant name (the defaults are "new" once the change is in).
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {"early_partials": False, "first_partial_logprob": None},  # before this branch
    "early": {"first_partial_logprob": None},  # the schedule alone
    "gate": {"early_partials": False},  # the confidence gate alone
    "gate10": {"first_partial_logprob": -1.0},  # Whisper's log-probability threshold
    "agree": {"first_partial_agreement": True},  # unsure first tries shown when two agree
    "new": {},
}


@dataclass
class Clip:
    audio: np.ndarray
    spans: list[tuple[int, int]]  # onset and end of speech (samples) per utterance
    texts: list[str]
    kind: str


@dataclass
class Utterance:
    kind: str
    first_text: float = float("nan")  # ms from onset (audio sent, or wall time)
    partial_before_final: bool = False
    survives: bool | None = None  # first partial's words a prefix of the final's (None: none)
    # the same, but its last word may be a word in progress (a prefix of the final's word)
    grows: bool | None = None
    final_latency: float = float("nan")  # ms, end of speech → final (real time only)
    final_text: str = ""
    first_partial: str = ""


@dataclass
class Pass:
    utterances: list[Utterance] = field(default_factory=list)
    references: list[str] = field(default_factory=list)


def loud_span(audio: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    loud = np.nonzero(np.abs(audio[lo:hi]) > SPEECH_LEVEL)[0]
    return lo + int(loud[0]), lo + int(loud[-1]) + 1


def make_clips(synth: SpeechSynthesizer) -> list[Clip]:
    clips: list[Clip] = []
    for k, short in enumerate(SHORT):
        sentence = SENTENCES[k % len(SENTENCES)]
        audio, spans = join_with_gaps(
            [synth.speak(short).audio, synth.speak(sentence).audio], GAP_S
        )
        audio = audio[round((GAP_S - 0.5) * RATE) :]  # 0.5 s before the first word
        shift = round((GAP_S - 0.5) * RATE)
        spans = [loud_span(audio, a - shift, b - shift) for a, b in spans]
        clips.append(Clip(audio, spans, [short, sentence], "short"))
    for audio, _, spans, texts in clips_with_spans(synth, list(SENTENCES)):
        clips.append(Clip(audio, [loud_span(audio, a, b) for a, b in spans], texts, "corpus"))
    return clips


def pct(values: list[float], q: float) -> float:
    ordered = sorted(v for v in values if v == v)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def owner(spans: list[tuple[int, int]], result: StreamResult) -> int:
    """The utterance (index into ``spans``) a result's time range overlaps most."""
    a, b = result.start_s * RATE, result.end_s * RATE

    def overlap(span: tuple[int, int]) -> float:
        return min(b, span[1]) - max(a, span[0])

    return max(range(len(spans)), key=lambda i: overlap(spans[i]))


def judge(
    clip: Clip, events: list[tuple[StreamResult, float]], onset_at: list[float], out: Pass
) -> list[Utterance]:
    """Per utterance from ``events`` (result, when: ms on the pass's clock) and each onset's
    time on that clock."""
    utts = [Utterance(clip.kind) for _ in clip.spans]
    first_partial: dict[int, str] = {}
    finals: dict[int, list[str]] = {i: [] for i in range(len(clip.spans))}
    has_final: set[int] = set()
    for result, when in events:
        i = owner(clip.spans, result)
        u = utts[i]
        if u.first_text != u.first_text:  # nan: the first text of this utterance
            u.first_text = when - onset_at[i]
        if result.is_final:
            finals[i].append(result.text)
            has_final.add(i)
        elif i not in has_final:
            u.partial_before_final = True
            first_partial.setdefault(i, result.text)
    for i, u in enumerate(utts):
        u.final_text = " ".join(t for t in finals[i] if t)
        if i in first_partial:
            u.first_partial = first_partial[i]
            words, final = normalise(first_partial[i]), normalise(u.final_text)
            u.survives = final[: len(words)] == words
            u.grows = bool(words) and (
                final[: len(words) - 1] == words[:-1]
                and len(final) >= len(words)
                and final[len(words) - 1].startswith(words[-1])
            )
    out.utterances += utts
    out.references += clip.texts
    return utts


async def audio_pass(rec: StreamingRecognizer, clip: Clip, out: Pass) -> None:
    session = rec.open(StreamOptions())
    events: list[tuple[StreamResult, float]] = []
    sent = 0

    async def collect() -> None:
        async for event in session.events():
            if isinstance(event, StreamResult):
                events.append((event, 1000 * sent / RATE))

    reader = asyncio.create_task(collect())
    for at in range(0, clip.audio.shape[0], CHUNK):
        piece = clip.audio[at : at + CHUNK]
        session.accept(piece, RATE)
        sent = at + piece.shape[0]
        await session.wait_idle()
        for _ in range(3):
            await asyncio.sleep(0)  # let the reader take what this chunk produced
    await session.finish()
    await reader
    judge(clip, events, [1000 * a / RATE for a, _ in clip.spans], out)


async def real_time_pass(rec: StreamingRecognizer, clip: Clip, out: Pass) -> None:
    session = rec.open(StreamOptions())
    events: list[tuple[StreamResult, float]] = []
    start = time.monotonic()

    async def collect() -> None:
        async for event in session.events():
            if isinstance(event, StreamResult):
                events.append((event, 1000 * (time.monotonic() - start)))

    reader = asyncio.create_task(collect())
    for at in range(0, clip.audio.shape[0], CHUNK):
        await asyncio.sleep(max(0.0, start + at / RATE - time.monotonic()))
        session.accept(clip.audio[at : at + CHUNK], RATE)
    await session.finish()
    await reader
    utts = judge(clip, events, [1000 * a / RATE for a, _ in clip.spans], out)
    for i, u in enumerate(utts):
        # the end of speech is heard when the chunk holding it is sent
        end_sent = 1000 * (-(-clip.spans[i][1] // CHUNK) * CHUNK) / RATE
        final_at = [w for r, w in events if r.is_final and owner(clip.spans, r) == i]
        if final_at:
            u.final_latency = final_at[-1] - end_sent


def summary(name: str, p: Pass, real_time: bool) -> str:
    lines = []
    for kind in ("short", "corpus", "all"):
        us = [u for u in p.utterances if kind in ("all", u.kind)]
        firsts = [u.first_text for u in us]
        with_partial = [u for u in us if u.partial_before_final]
        kept = [u for u in with_partial if u.survives]
        grown = [u for u in with_partial if u.grows]
        line = (
            f"  {name:5s} {kind:6s} n={len(us):2d} first text p50 {pct(firsts, 0.5):5.0f} "
            f"p90 {pct(firsts, 0.9):5.0f} max {pct(firsts, 1.0):5.0f} ms; partial before "
            f"final {len(with_partial)}/{len(us)}; first partial kept {len(kept)}/"
            f"{len(with_partial)} (or its last word in progress {len(grown)})"
        )
        if real_time:
            lat = [u.final_latency for u in us]
            line += f"; end→final p50 {pct(lat, 0.5):.0f} p95 {pct(lat, 0.95):.0f} ms"
        lines.append(line)
    if p.references:
        lines.append(
            f"  {name:5s} finals WER {wer(p.references, [u.final_text for u in p.utterances]):.2%}"
        )
    return "\n".join(lines)


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="model cache root")
    parser.add_argument("--variants", default="base,new")
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the variants")
    parser.add_argument("--skip-audio", action="store_true")
    parser.add_argument("--skip-real-time", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="each utterance's first text")
    args = parser.parse_args()
    from audiototext._blas import limit_blas_threads

    limit_blas_threads(1)
    synth = SpeechSynthesizer(Path("/tmp/audiototext-bench-espeak"))
    synth._cache_dir.mkdir(parents=True, exist_ok=True)
    clips = make_clips(synth)
    names = args.variants.split(",")
    base = StreamingRecognizer.load("tiny.en", precision="int8", cache_root=args.cache)
    model = base.model
    base.close()
    totals: dict[tuple[str, bool], Pass] = {}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            for real_time in (False, True):
                if (args.skip_audio and not real_time) or (args.skip_real_time and real_time):
                    continue
                extra = {} if real_time else {"adaptive_partials": False, "adaptive_finals": False}
                rec = StreamingRecognizer(
                    model, RecognizerOptions(**{**VARIANTS[name], **extra}), model_name="tiny.en"
                )
                p = Pass()
                began = time.monotonic()
                for clip in clips:
                    run = real_time_pass if real_time else audio_pass
                    asyncio.run(run(rec, clip, p))
                cpu = rec.stats().worker_cpu_s  # thread CPU of the worker and lanes
                audio_s = sum(c.audio.shape[0] for c in clips) / RATE
                rec.close()
                totals.setdefault((name, real_time), Pass())
                totals[(name, real_time)].utterances += p.utterances
                totals[(name, real_time)].references += p.references
                what = "real time (ms of wall)" if real_time else "audio (ms of audio sent)"
                print(f"round {r + 1} {name} {what}, {time.monotonic() - began:.0f} s, {load()}")
                print(summary(name, p, real_time))
                print(
                    f"  {name:5s} engine CPU per audio second: partials "
                    f"{1000 * cpu.get('partials', 0.0) / audio_s:.1f} ms, all "
                    f"{1000 * sum(cpu.values()) / audio_s:.1f} ms",
                    flush=True,
                )
                if args.verbose:
                    for u, ref in zip(p.utterances, p.references, strict=True):
                        print(
                            f"    {u.first_text:6.0f} {u.survives!s:5s} {u.first_partial!r} "
                            f"{ref!r} -> {u.final_text!r}"
                        )
    if args.rounds > 1:
        print("all rounds:")
        for (name, real_time), p in totals.items():
            print(("real time" if real_time else "audio"), summary(name, p, real_time), sep="\n")


if __name__ == "__main__":
    main()
