"""Fixtures for the inference tests: the shared tiny.en cache, models, and the speech corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiototext.inference import Transcriber, WhisperModel
from inference.corpus import CLIPS, Clip
from inference.models_support import entry_path, shared_model_cache
from support.speech import Speech, SpeechSynthesizer, espeak_available


@pytest.fixture(scope="session")
def model_cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_model_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def fp32_model(model_cache_root: Path) -> WhisperModel:
    return WhisperModel(entry_path(model_cache_root, "fp32"))


@pytest.fixture(scope="session")
def int8_model(model_cache_root: Path) -> WhisperModel:
    return WhisperModel(entry_path(model_cache_root, "int8"))


@pytest.fixture(scope="session")
def fp32(fp32_model: WhisperModel) -> Transcriber:
    return Transcriber(fp32_model)


@pytest.fixture(scope="session")
def int8(int8_model: WhisperModel) -> Transcriber:
    return Transcriber(int8_model)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> SpeechSynthesizer:
    if not espeak_available():
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng)")
    return SpeechSynthesizer(tmp_path_factory.mktemp("espeak"))


@pytest.fixture(scope="session")
def corpus(synth: SpeechSynthesizer) -> list[tuple[Clip, Speech]]:
    return [(clip, synth.speak(clip.text)) for clip in CLIPS]
