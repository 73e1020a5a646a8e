"""Helpers for the streaming tests and bench/streaming_engine.py: WER and stream driving."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from audiototext.streaming import RecognitionStream, SpeechEvent, StreamResult

# A small normaliser in the spirit of Whisper's English one: case, punctuation, hyphens and
# the spelled/digit forms of small numbers do not count as errors.
_NUMBERS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
    "7": "seven", "8": "eight", "9": "nine", "10": "ten", "11": "eleven", "12": "twelve",
    "20": "twenty", "30": "thirty", "100": "hundred",
}  # fmt: skip


def normalise(text: str) -> list[str]:
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return [_NUMBERS.get(w, w) for w in text.split()]


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        diagonal, row[0] = row[0], i
        for j in range(1, len(b) + 1):
            current = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1]))
            diagonal = current
    return row[len(b)]


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Word error rate over a corpus: total edits over total reference words."""
    errors = words = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        r = normalise(ref)
        errors += edit_distance(r, normalise(hyp))
        words += len(r)
    return errors / max(words, 1)


@dataclass
class StreamLog:
    """Everything a session emitted, in order."""

    events: list[StreamResult | SpeechEvent] = field(default_factory=list)

    @property
    def results(self) -> list[StreamResult]:
        return [e for e in self.events if isinstance(e, StreamResult)]

    @property
    def finals(self) -> list[StreamResult]:
        return [r for r in self.results if r.is_final]

    @property
    def partials(self) -> list[StreamResult]:
        return [r for r in self.results if not r.is_final]

    @property
    def speech_events(self) -> list[SpeechEvent]:
        return [e for e in self.events if isinstance(e, SpeechEvent)]

    @property
    def text(self) -> str:
        return " ".join(r.text for r in self.finals if r.text)


def chunk_sizes(total: int, mode: str | int, rate: int, seed: int = 0) -> list[int]:
    """Sizes (in frames) cutting ``total`` frames: fixed milliseconds, or ``random`` 1-300 ms."""
    sizes: list[int] = []
    rng = np.random.default_rng(seed)
    left = total
    while left > 0:
        if mode == "random":
            n = int(rng.integers(max(1, rate // 1000), rate * 3 // 10))
        else:
            n = max(1, int(mode) * rate // 1000)
        n = min(n, left)
        sizes.append(n)
        left -= n
    return sizes


async def stream_audio(
    session: RecognitionStream,
    audio: NDArray[np.float32],
    rate: int,
    *,
    channels: int = 1,
    chunk: str | int = 100,
    seed: int = 0,
    pace: Callable[[int], float] | None = None,
    wait_idle: bool = True,
) -> StreamLog:
    """Feed ``audio`` (frames x channels, interleaved when flattened) and collect the events.

    With ``wait_idle`` each chunk is fully processed before the next is sent, so the result
    depends on the audio alone; ``pace(frames)`` instead sleeps that many seconds per chunk.
    """
    log = StreamLog()

    async def collect() -> None:
        async for event in session.events():
            log.events.append(event)

    reader = asyncio.create_task(collect())
    frames = audio.reshape(-1, channels)
    at = 0
    for n in chunk_sizes(frames.shape[0], chunk, rate, seed):
        session.accept(frames[at : at + n].reshape(-1), rate, channels)
        at += n
        if wait_idle:
            await session.wait_idle()
        if pace is not None:
            await asyncio.sleep(pace(n))
    await session.finish()
    await reader
    return log
