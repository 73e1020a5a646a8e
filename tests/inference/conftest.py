"""Fixtures for the inference tests: the shared tiny.en cache, models, and the speech corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audiototext.audio import log_mel_spectrogram, pad_or_trim
from audiototext.inference import Transcriber, WhisperModel
from audiototext.inference.whisper import CrossAttention
from inference.corpus import CLIPS, WINDOW_SENTENCES, Clip
from inference.models_support import entry_path, shared_model_cache
from support.fixture_cache import shared_speech_dir
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
def synth() -> SpeechSynthesizer:
    if not espeak_available():
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng)")
    return SpeechSynthesizer(shared_speech_dir())


@pytest.fixture(scope="session")
def corpus(synth: SpeechSynthesizer) -> list[tuple[Clip, Speech]]:
    return [(clip, synth.speak(clip.text)) for clip in CLIPS]


@pytest.fixture(scope="session")
def windows(synth: SpeechSynthesizer, fp32_model: WhisperModel) -> CrossAttention:
    """fp32 encoder output of three padded 30-s windows, one sentence each."""
    mels = [
        log_mel_spectrogram(pad_or_trim(synth.speak(s).audio), n_mels=fp32_model.n_mels)
        for s in WINDOW_SENTENCES
    ]
    return fp32_model.encode(np.stack(mels).astype(np.float32))
