"""Test audio made in code: espeak-ng speech, noise, silence, resampling, files in many encodings.

Everything is deterministic: noise takes a fixed seed, and espeak-ng renders the same text the
same way. Speech is cached on disk (one WAV per text/voice/rate) in a directory the caller
chooses, normally a session-scoped pytest tmp dir, and in memory.

Needs the ``espeak-ng`` program (Debian package ``espeak-ng``) for speech; the rest needs only
numpy, soxr and PyAV.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
import pytest
import soxr
from numpy.typing import NDArray

SAMPLE_RATE_HZ = 16_000
# Debian's pocketsphinx-testdata (test.sh installs it): people reading, with transcripts.
POCKETSPHINX_DATA = Path("/usr/share/pocketsphinx/test/data")

FloatArray = NDArray[np.float32]
WavSampleFormat = Literal["u8", "s16", "s24", "s32", "f32", "f64"]

_WAVE_FORMAT_PCM = 1
_WAVE_FORMAT_IEEE_FLOAT = 3


@dataclass(frozen=True)
class Speech:
    """Synthesised speech: 16 kHz mono float32 samples and the text spoken."""

    audio: FloatArray
    text: str
    sample_rate_hz: int = SAMPLE_RATE_HZ

    @property
    def duration_s(self) -> float:
        return int(self.audio.shape[0]) / self.sample_rate_hz


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


class SpeechSynthesizer:
    """espeak-ng text-to-speech with a per-session cache."""

    def __init__(self, cache_dir: Path) -> None:
        self._cache_dir = cache_dir
        self._memory: dict[str, Speech] = {}

    def speak(self, text: str, *, voice: str = "en-us", words_per_minute: int = 160) -> Speech:
        key = hashlib.sha256(f"{voice}|{words_per_minute}|{text}".encode()).hexdigest()[:16]
        cached = self._memory.get(key)
        if cached is not None:
            return cached
        path = self._cache_dir / f"espeak-{key}.wav"
        if not path.exists():
            # One name per process: test workers may render the same text at once.
            partial = path.with_suffix(f".{os.getpid()}.part")
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(partial), text],
                check=True,
                capture_output=True,
                timeout=60,
            )
            os.replace(partial, path)
        audio, rate = read_wav(path)
        speech = Speech(resample(audio, rate, SAMPLE_RATE_HZ), text)
        self._memory[key] = speech
        return speech


def read_wav(path: Path) -> tuple[FloatArray, int]:
    """Read a 16-bit PCM WAV (espeak-ng's output) as mono float32 and its sample rate."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * wav.getsampwidth()}-bit")
        channels = wav.getnchannels()
        raw = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        rate = wav.getframerate()
    samples = raw.reshape(-1, channels).mean(axis=1) / 32768.0
    return samples.astype(np.float32), rate


def resample(audio: NDArray[np.floating], from_hz: int, to_hz: int) -> FloatArray:
    """Reference resampler for building fixtures (independent of the code under test)."""
    if from_hz == to_hz:
        return np.asarray(audio, dtype=np.float32).copy()
    return np.asarray(soxr.resample(audio, from_hz, to_hz, quality="VHQ"), dtype=np.float32)


def silence(duration_s: float, sample_rate_hz: int = SAMPLE_RATE_HZ) -> FloatArray:
    return np.zeros(round(duration_s * sample_rate_hz), dtype=np.float32)


def tone(
    frequency_hz: float,
    duration_s: float,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
    amplitude: float = 0.5,
) -> FloatArray:
    t = np.arange(round(duration_s * sample_rate_hz)) / sample_rate_hz
    return (amplitude * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32)


def white_noise(
    duration_s: float,
    amplitude_rms: float = 0.1,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
    *,
    seed: int = 0,
) -> FloatArray:
    rng = np.random.default_rng(seed)
    count = round(duration_s * sample_rate_hz)
    return (amplitude_rms * rng.standard_normal(count)).astype(np.float32)


def add_white_noise(audio: FloatArray, snr_db: float, *, seed: int = 0) -> FloatArray:
    """``audio`` plus white Gaussian noise at ``snr_db`` relative to the audio's mean power."""
    signal_power = float(np.mean(np.square(audio, dtype=np.float64)))
    noise_rms = float(np.sqrt(signal_power / 10 ** (snr_db / 10)))
    rng = np.random.default_rng(seed)
    return (audio + noise_rms * rng.standard_normal(audio.shape[0])).astype(np.float32)


def with_silence(
    audio: FloatArray,
    before_s: float = 0.0,
    after_s: float = 0.0,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
) -> FloatArray:
    """``audio`` with digital silence before and after it."""
    return np.concatenate(
        [silence(before_s, sample_rate_hz), audio, silence(after_s, sample_rate_hz)]
    )


def join_with_gaps(
    parts: list[FloatArray], gap_s: float, sample_rate_hz: int = SAMPLE_RATE_HZ
) -> tuple[FloatArray, list[tuple[int, int]]]:
    """Concatenate ``parts`` with ``gap_s`` of silence around and between them.

    Returns the audio and the ``(start_sample, end_sample)`` of each part in it.
    """
    gap = silence(gap_s, sample_rate_hz)
    pieces = [gap]
    spans: list[tuple[int, int]] = []
    position = gap.shape[0]
    for part in parts:
        spans.append((position, position + part.shape[0]))
        pieces += [part, gap]
        position += part.shape[0] + gap.shape[0]
    return np.concatenate(pieces), spans


def _pcm_bytes(audio: NDArray[np.floating], sample_format: WavSampleFormat) -> bytes:
    if sample_format == "f32":
        return audio.astype("<f4").tobytes()
    if sample_format == "f64":
        return audio.astype("<f8").tobytes()
    # Full scale is 2**(bits - 1), as FFmpeg reads it; +1.0 clips to the largest code.
    scaled = audio.astype(np.float64)
    if sample_format == "u8":
        return np.clip(np.round(scaled * 128.0 + 128.0), 0, 255).astype(np.uint8).tobytes()
    bits = {"s16": 16, "s24": 24, "s32": 32}[sample_format]
    full_scale = 2.0 ** (bits - 1)
    codes = np.clip(np.round(scaled * full_scale), -full_scale, full_scale - 1).astype("<i4")
    if sample_format == "s16":
        return codes.astype("<i2").tobytes()
    if sample_format == "s32":
        return codes.tobytes()
    return codes.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()  # s24: low three bytes


def write_wav(
    path: Path,
    audio: NDArray[np.floating],
    sample_rate_hz: int,
    sample_format: WavSampleFormat = "s16",
) -> Path:
    """Write a WAV file; ``audio`` is ``(samples,)`` or ``(samples, channels)`` in [-1, 1].

    Floats are written as they are (NaN and Inf included); integers are rounded and clipped,
    with full scale 2**(bits - 1) as FFmpeg reads them.
    """
    frames = audio if audio.ndim == 2 else audio[:, None]
    channels = frames.shape[1]
    bits = {"u8": 8, "s16": 16, "s24": 24, "s32": 32, "f32": 32, "f64": 64}[sample_format]
    tag = _WAVE_FORMAT_IEEE_FLOAT if sample_format.startswith("f") else _WAVE_FORMAT_PCM
    data = _pcm_bytes(frames.reshape(-1), sample_format)
    block_align = channels * bits // 8
    header = b"".join(
        [
            b"RIFF",
            struct.pack("<I", 36 + len(data)),
            b"WAVE",
            b"fmt ",
            struct.pack(
                "<IHHIIHH",
                16,
                tag,
                channels,
                sample_rate_hz,
                sample_rate_hz * block_align,
                block_align,
                bits,
            ),
            b"data",
            struct.pack("<I", len(data)),
        ]
    )
    path.write_bytes(header + data)
    return path


_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def encode_audio(
    path: Path,
    audio: NDArray[np.floating],
    sample_rate_hz: int,
    codec: str,
    *,
    container_format: str | None = None,
    bit_rate: int | None = None,
) -> Path:
    """Encode ``audio`` (``(samples,)`` or ``(samples, channels)``) with PyAV.

    E.g. ``codec="libmp3lame"`` for .mp3, ``"flac"``, ``"libopus"`` for .ogg/.webm,
    ``"aac"`` for .m4a, ``"vorbis"`` for .ogg (FFmpeg's encoder: stereo only).
    """
    frames = np.asarray(audio, dtype=np.float32)
    frames = frames if frames.ndim == 2 else frames[:, None]
    channels = frames.shape[1]
    with av.open(str(path), mode="w", format=container_format) as container:
        # FFmpeg's own Vorbis encoder is marked experimental.
        options = {"strict": "experimental"} if codec == "vorbis" else {}
        stream = container.add_stream(
            codec, rate=sample_rate_hz, layout=_LAYOUTS[channels], options=options
        )
        if not isinstance(stream, av.AudioStream):
            raise ValueError(f"{codec} is not an audio codec")
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        block = 4096
        for start in range(0, frames.shape[0], block):
            chunk = np.ascontiguousarray(frames[start : start + block].T)  # planar
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=_LAYOUTS[channels])
            frame.sample_rate = sample_rate_hz
            frame.pts = start
            frame.time_base = Fraction(1, sample_rate_hz)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def pocketsphinx_file(*parts: str) -> Path:
    """A file of pocketsphinx-testdata; the test is skipped, saying how to get it, without it."""
    path = POCKETSPHINX_DATA.joinpath(*parts)
    if not path.is_file():
        pytest.skip("Debian package pocketsphinx-testdata is not installed (test.sh installs it)")
    return path
