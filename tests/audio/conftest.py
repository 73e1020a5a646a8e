"""Fixtures for the audio tests: espeak-ng speech (cached per session) and a shared VAD model."""

from __future__ import annotations

import pytest

from audiototext.audio.vad import SileroVad
from support.fixture_cache import shared_speech_dir
from support.speech import Speech, SpeechSynthesizer, espeak_available

SENTENCES = (
    "Good morning, everyone.",
    "Please take a seat and open your notebooks.",
    "We will start with the first chapter today.",
)


@pytest.fixture(scope="session")
def synth() -> SpeechSynthesizer:
    if not espeak_available():
        pytest.skip("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    return SpeechSynthesizer(shared_speech_dir())


@pytest.fixture(scope="session")
def speech(synth: SpeechSynthesizer) -> Speech:
    """About 9 s of English speech at 16 kHz."""
    return synth.speak(
        "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore. "
        "Speech recognition on your own machine is private and fast."
    )


@pytest.fixture(scope="session")
def sentences(synth: SpeechSynthesizer) -> list[Speech]:
    return [synth.speak(text) for text in SENTENCES]


@pytest.fixture(scope="session")
def vad() -> SileroVad:
    return SileroVad()
