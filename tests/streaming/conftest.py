"""Fixtures for the streaming tests: espeak-ng speech and one recognizer on tiny.en int8."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from audiototext.audio import SileroVad
from audiototext.inference import OrtConfig, WhisperModel
from audiototext.models import ModelCache, pull
from audiototext.streaming import RecognizerOptions, StreamingRecognizer
from support.fixture_cache import shared_speech_dir
from support.speech import Speech, SpeechSynthesizer, espeak_available


@pytest.fixture(scope="session")
def synth() -> SpeechSynthesizer:
    if not espeak_available():
        pytest.skip("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    return SpeechSynthesizer(shared_speech_dir())


@pytest.fixture(scope="session")
def sentence(synth: SpeechSynthesizer) -> Speech:
    return synth.speak("Please take a seat and open your notebooks.")


@pytest.fixture(scope="session")
def tiny_model(built_cache: Path) -> WhisperModel:
    entry = pull("tiny.en", precision="int8", cache=ModelCache(built_cache)).entry
    return WhisperModel(entry.path, OrtConfig(device="cpu"))


@pytest.fixture(scope="session")
def shared_vad() -> SileroVad:
    return SileroVad()


@pytest.fixture
def make_recognizer(
    tiny_model: WhisperModel, shared_vad: SileroVad
) -> Iterator[Callable[..., StreamingRecognizer]]:
    """A factory of recognizers sharing the loaded model; each is closed after the test.

    Partial timing and final settings are made to depend on the audio alone
    (``adaptive_partials=False``, ``adaptive_finals=False``) so that results do not vary with
    the load of the shared machine.
    """
    made: list[StreamingRecognizer] = []

    def factory(**overrides: Any) -> StreamingRecognizer:
        options = RecognizerOptions(
            **{"adaptive_partials": False, "adaptive_finals": False, **overrides}
        )
        rec = StreamingRecognizer(tiny_model, options, model_name="tiny.en", vad=shared_vad)
        made.append(rec)
        return rec

    yield factory
    for rec in made:
        rec.close()
