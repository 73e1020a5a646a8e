"""The engine's final latency (stats, the streams' metrics) runs from the end of speech.

It ran from the endpoint: a final speculated during the pause is ready when the endpoint
confirms it, so the page's live indicator read about 2 ms while a speaker waited 0.3-0.5 s.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest

from audiototext.audio import SpeechEndpointDetector, SpeechEvent
from audiototext.audio import SpeechEventKind as VadEventKind
from audiototext.streaming._load import LoadMonitor
from audiototext.streaming.options import RecognizerOptions
from audiototext.streaming.stream import RecognitionStream
from audiototext.streaming.types import StreamOptions

CHUNK = 1600  # 100 ms at 16 kHz


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_latency_percentiles_run_from_the_end_of_speech_the_policy_from_the_endpoint() -> None:
    clock = Clock()
    load = LoadMonitor(RecognizerOptions(), clock)
    # Speech ended 0.45 s ago; the endpoint came 0.25 s later; the final is out now.
    for _ in range(5):
        load.record_final(clock.now - 0.2, clock.now - 0.45)
    assert load.latency_percentile(0.5) == pytest.approx(0.45)
    assert load.latency_percentile(0.95) == pytest.approx(0.45)
    # Without a known end of speech, the endpoint as before.
    load.record_final(clock.now - 0.2)
    assert load.latency_percentile(0.0) == pytest.approx(0.2)
    # The load policy's recent finals stay measured from the endpoint: its thresholds were
    # set that way (a final speculated during the pause counts as on time).
    recent = load._recent_finals
    assert [round(lat, 3) for _, lat in recent] == [0.2] * 6


class _Detector:
    """Speech from sample 0; its end at ``end_sample``, reported ``delay`` chunks later."""

    def __init__(self, end_sample: int, report_after: int) -> None:
        self.end_sample = end_sample
        self.report_after = report_after
        self.fed = 0

    def feed(self, audio: Any) -> list[SpeechEvent]:
        first = self.fed == 0
        self.fed += int(np.asarray(audio).shape[0])
        events = [SpeechEvent(VadEventKind.START, 0)] if first else []
        if self.fed - CHUNK < self.report_after <= self.fed:
            events.append(SpeechEvent(VadEventKind.END, self.end_sample))
        return events

    def flush(self) -> list[SpeechEvent]:
        return []


def test_a_pending_final_knows_when_the_audio_holding_its_end_of_speech_arrived() -> None:
    # Speech ends inside the third chunk; the VAD says so two chunks later (its silence).
    detector = _Detector(end_sample=2 * CHUNK + 300, report_after=5 * CHUNK)
    stream = RecognitionStream(
        lambda: None, 1, StreamOptions(), cast(SpeechEndpointDetector, detector), 10.0
    )
    for _ in range(5):
        stream.accept(np.full(CHUNK, 0.1, np.float32), 16_000)
    inbox = list(stream._inbox)
    for k, item in enumerate(inbox):
        item.accepted_at = 1000.0 + 0.1 * k  # type: ignore[union-attr]  # chunks, not markers
    stream.ingest()
    (final,) = stream.pending_finals
    assert final.stop == 2 * CHUNK + 300
    assert final.triggered_at == pytest.approx(1000.4)  # the chunk that ended it
    assert final.speech_end_at == pytest.approx(1000.2)  # the chunk that held the speech end
