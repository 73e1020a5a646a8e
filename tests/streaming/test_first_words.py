"""An utterance's first words: how much audio the first partial needs, short utterances.

Counted in audio, not wall time: each 100-ms chunk is processed before the next is sent
(``stream_audio``), so the results depend on the audio alone.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable

import numpy as np

from audiototext.streaming import SpeechEventKind, StreamingRecognizer
from streaming.corpus import SENTENCES
from streaming.streaming_helpers import StreamLog, normalise, stream_audio
from support.speech import SpeechSynthesizer, join_with_gaps

MakeRecognizer = Callable[..., StreamingRecognizer]


def _run(rec: StreamingRecognizer, audio: np.ndarray) -> StreamLog:
    async def go() -> StreamLog:
        return await stream_audio(rec.open(), audio, 16_000)

    return asyncio.run(go())


def _first_partial_audio_s(log: StreamLog) -> list[float]:
    """Per utterance with a partial: stream seconds from its BEGIN to the end of the audio
    its first partial covered."""
    begins = [e.time_s for e in log.speech_events if e.kind is SpeechEventKind.BEGIN]
    firsts: dict[int, float] = {}
    for r in log.partials:
        firsts.setdefault(r.utterance_id, r.end_s)
    return [firsts[u] - begins[u] for u in sorted(firsts)]


def test_the_first_partial_comes_after_less_audio_than_before(
    make_recognizer: MakeRecognizer, synth: SpeechSynthesizer
) -> None:
    audio, _ = join_with_gaps([synth.speak(t).audio for t in SENTENCES[:6]], 1.2)
    before = _first_partial_audio_s(_run(make_recognizer(early_partials=False), audio))
    after_log = _run(make_recognizer(), audio)
    after = _first_partial_audio_s(after_log)
    assert len(after) == len(before) == 6
    # Before: at least a whole partial interval (0.5 s) of utterance, often two or three.
    assert min(before) >= 0.5
    assert statistics.median(after) < statistics.median(before) - 0.15, (before, after)
    assert statistics.median(after) <= 0.6, after
    # Each first partial's words are where the final's start, or nearly (no rewrite to show).
    finals = {r.utterance_id: normalise(r.text) for r in after_log.finals}
    kept = 0
    for r in after_log.partials:
        if r.utterance_id in finals:
            words = normalise(r.text)
            kept += finals.pop(r.utterance_id)[: len(words)] == words
    assert kept >= 3, kept


def test_a_short_first_utterance_gets_a_partial_before_its_final(
    make_recognizer: MakeRecognizer, synth: SpeechSynthesizer
) -> None:
    """A stream that opens with "Hello.": before early partials its final came first (the
    utterance ended before a partial interval had passed)."""
    audio, _ = join_with_gaps([synth.speak("Hello.").audio, synth.speak(SENTENCES[1]).audio], 1.2)
    audio = audio[16_000 * 7 // 10 :]  # 0.5 s before the first word
    for early in (False, True):
        log = _run(make_recognizer(early_partials=early), audio)
        first = [r for r in log.results if r.utterance_id == 0]
        assert [normalise(r.text) for r in first if r.is_final] == [["hello"]]
        assert (not first[0].is_final) is early, [(r.is_final, r.text) for r in first]
        if early:
            assert normalise(first[0].text) == ["hello"]
