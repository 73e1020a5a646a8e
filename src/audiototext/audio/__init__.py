"""Audio in: decoding, resampling, Whisper features and voice activity detection.

Everything here works on 16 kHz mono float32 numpy arrays.

* :mod:`~audiototext.audio.decode` — files and bytes to samples (PyAV + soxr).
* :mod:`~audiototext.audio.features` — Whisper's log-mel spectrogram (numpy).
* :mod:`~audiototext.audio.vad` — Silero VAD on ONNX Runtime, for files and streams.
* :mod:`~audiototext.audio.chunks` — an input (file, bytes or samples) read 30 s at a time.
* :mod:`~audiototext.audio.feature_stream` — log-mel frames of a long input, block by block.
* :mod:`~audiototext.audio.speech_only` — only the speech of an input, and the map back.
* :mod:`~audiototext.audio.pauses` — where to cut an input into parts: in its pauses.
* :mod:`~audiototext.audio.speech_chunks` — an input's speech in chunks of up to 28 s.
"""

from __future__ import annotations

from audiototext.audio.decode import (
    SAMPLE_RATE_HZ,
    AudioSource,
    iter_audio_chunks,
    load_audio,
    resample,
)
from audiototext.audio.features import log_mel_spectrogram, pad_or_trim
from audiototext.audio.vad import (
    SileroVad,
    SpeechEndpointDetector,
    SpeechEvent,
    SpeechEventKind,
    SpeechSpan,
    VadOptions,
    VadState,
    get_speech_timestamps,
)

__all__ = [
    "SAMPLE_RATE_HZ",
    "AudioSource",
    "SileroVad",
    "SpeechEndpointDetector",
    "SpeechEvent",
    "SpeechEventKind",
    "SpeechSpan",
    "VadOptions",
    "VadState",
    "get_speech_timestamps",
    "iter_audio_chunks",
    "load_audio",
    "log_mel_spectrogram",
    "pad_or_trim",
    "resample",
]
