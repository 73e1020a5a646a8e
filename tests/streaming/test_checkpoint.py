"""A stream carried on from a checkpoint gives the finals the uninterrupted stream gave."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from audiototext.streaming import StreamingRecognizer, StreamResult
from audiototext.streaming.checkpoint import StreamCheckpoint
from streaming.streaming_helpers import stream_audio
from support.speech import SpeechSynthesizer, join_with_gaps

MakeRecognizer = Callable[..., StreamingRecognizer]
RATE = 16_000
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please take a seat and open your notebooks.",
    "We will meet again tomorrow at nine in the morning.",
    "She sells sea shells by the sea shore.",
    "Turn left at the second traffic light.",
]


def _finals(events: list[object]) -> list[tuple[int, str]]:
    return [(e.utterance_id, e.text) for e in events if isinstance(e, StreamResult) and e.is_final]


@pytest.mark.parametrize("wait_idle", [True, False])
def test_restored_stream_gives_the_same_finals(
    make_recognizer: MakeRecognizer, synth: SpeechSynthesizer, wait_idle: bool
) -> None:
    audio, _ = join_with_gaps([synth.speak(s).audio for s in SENTENCES], 1.0)

    async def scenario() -> None:
        first = make_recognizer()
        reference = first.open()
        reference.keep_checkpoints = True
        log = await stream_audio(reference, audio, RATE, wait_idle=wait_idle)
        finals = _finals(list(log.events))
        assert len(finals) >= 4, finals
        cut_at = finals[1][0]  # the second final's checkpoint
        cp = reference.checkpoints[cut_at]
        assert isinstance(cp, StreamCheckpoint)
        assert cp.received <= audio.shape[0]  # fed fast, the rest may all be queued

        # Another engine (as another process would have) takes it from there.
        second = make_recognizer()
        restored = second.open(restore=cp)
        rest = await stream_audio(restored, audio[cp.received :], RATE, wait_idle=wait_idle)
        after = _finals(list(rest.events))
        # Finals already out before the cut are not repeated; every later one is the same.
        assert after == [f for f in finals if f[0] > cut_at]
        assert after, "nothing left to compare after the cut"
        # Speech events resume in stream time (absolute positions kept).
        assert all(e.time_s >= cp.vad_position / RATE - 1.0 for e in rest.speech_events)

    asyncio.run(scenario())


def test_checkpoint_refuses_audio_that_does_not_match() -> None:
    from audiototext.audio.vad import DetectorSnapshot

    snap = DetectorSnapshot(
        np.zeros((2, 1, 128), np.float32),
        np.zeros(64, np.float32),
        np.zeros(0, np.float32),
        0,
        False,
        0,
        0.0,
        (False, 0, 0, 0, 0, 0),
    )
    with pytest.raises(ValueError, match="does not end"):
        StreamCheckpoint(
            received=10,
            vad_position=0,
            audio_start=0,
            audio=np.zeros(5, np.float32),
            detector_base=0,
            detector=snap,
            next_utterance_id=0,
            last_utterance_stop=0,
            processed=0,
            earlier=(),
            pending=(),
            utterance=None,
            detected_language=None,
        )
