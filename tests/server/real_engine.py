"""Fixtures for end-to-end tests with the real streaming engine and tiny.en int8."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from numpy.typing import NDArray

from support.fixture_cache import shared_speech_dir
from support.speech import SpeechSynthesizer, espeak_available, join_with_gaps

if TYPE_CHECKING:
    from audiototext.server.engine import Engine
    from audiototext.streaming import StreamingRecognizer

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things.",
    "She sells sea shells by the sea shore.",
    "We will meet at the train station tomorrow morning.",
)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@pytest.fixture(scope="module")
def recognizer(built_cache: Path) -> Iterator[StreamingRecognizer]:
    streaming = pytest.importorskip("audiototext.streaming")
    rec: StreamingRecognizer = streaming.StreamingRecognizer.load(
        "tiny.en",
        streaming.RecognizerOptions(max_sessions=24),
        precision="int8",
        cache_root=built_cache,
    )
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def speech() -> SpeechSynthesizer:
    if not espeak_available():
        pytest.skip("needs espeak-ng (Debian package espeak-ng)")
    return SpeechSynthesizer(shared_speech_dir())


def long_speech(synth: SpeechSynthesizer, seconds: float) -> NDArray[np.float32]:
    """Sentences separated by 1.2 s of silence, repeated up to ``seconds``."""
    parts = []
    total = 0.0
    i = 0
    while total < seconds - 1.2:
        s = synth.speak(SENTENCES[i % len(SENTENCES)])
        parts.append(s.audio)
        total += s.duration_s + 1.2
        i += 1
    audio, _ = join_with_gaps(parts, 1.2)
    return audio


async def settled(recognizer: Engine, limit_s: float = 60.0) -> None:
    """Wait (bounded) until the engine no longer reports overload from an earlier stream.

    Idle, the engine reports no overload, but it holds the flag for a few seconds after the
    last late final: the second stream to open would be refused. So this also waits for that
    hold to run out (the real engine's load monitor; fakes have none).
    """
    import asyncio

    from audiototext.streaming import StreamingRecognizer

    monitor = recognizer.load_monitor if isinstance(recognizer, StreamingRecognizer) else None
    for _ in range(int(limit_s / 0.1)):
        if not recognizer.stats().overloaded and not (monitor and monitor.holding()):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the engine still refuses streams after {limit_s} s (overload)")
