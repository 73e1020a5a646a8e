from __future__ import annotations

import gc
import io
import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import psutil
import pytest
from numpy.typing import NDArray

from audiototext.audio.decode import SAMPLE_RATE_HZ, iter_audio_chunks, load_audio
from audiototext.audio.decode import resample as decode_resample
from audiototext.errors import AudioError
from support.speech import (
    Speech,
    WavSampleFormat,
    encode_audio,
    resample,
    silence,
    tone,
    white_noise,
    write_wav,
)

FloatArray = NDArray[np.float32]


def similarity(decoded: FloatArray, reference: FloatArray, max_lag: int = 200) -> float:
    """Best normalised correlation over small lags (codecs may shift audio by a few samples)."""
    n = min(decoded.size, reference.size) - 2 * max_lag
    ref = reference[max_lag : max_lag + n]
    best = -1.0
    for lag in range(-max_lag, max_lag + 1, 1):
        seg = decoded[max_lag + lag : max_lag + lag + n]
        best = max(best, float(np.dot(seg, ref) / (np.linalg.norm(seg) * np.linalg.norm(ref))))
    return best


# (file name, codec, container format, sample rate, channels, minimum similarity)
COMPRESSED = [
    ("speech.mp3", "libmp3lame", None, 44_100, 1, 0.99),
    ("speech.flac", "flac", None, 44_100, 1, 0.9999),
    ("speech.ogg", "libopus", None, 48_000, 1, 0.99),
    ("speech_vorbis.ogg", "vorbis", None, 44_100, 2, 0.99),
    ("speech.m4a", "aac", "mp4", 44_100, 1, 0.98),
    ("speech.webm", "libopus", "webm", 48_000, 2, 0.99),
    ("speech_22k.mp3", "libmp3lame", None, 22_050, 2, 0.99),
]


@pytest.mark.parametrize(
    ("name", "codec", "container_format", "rate_hz", "channels", "min_similarity"),
    COMPRESSED,
    ids=[case[0] for case in COMPRESSED],
)
def test_decodes_compressed_formats(
    tmp_path: Path,
    speech: Speech,
    name: str,
    codec: str,
    container_format: str | None,
    rate_hz: int,
    channels: int,
    min_similarity: float,
) -> None:
    native = resample(speech.audio, SAMPLE_RATE_HZ, rate_hz)
    if channels > 1:
        native = np.stack([native] * channels, axis=1)
    path = encode_audio(tmp_path / name, native, rate_hz, codec, container_format=container_format)

    audio = load_audio(path)

    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert abs(audio.size - speech.audio.size) < 0.01 * speech.audio.size
    assert similarity(audio, speech.audio) > min_similarity


@pytest.mark.parametrize("sample_format", ["u8", "s16", "s24", "s32", "f32", "f64"])
def test_wav_sample_formats_at_16k_pass_through(
    tmp_path: Path, speech: Speech, sample_format: WavSampleFormat
) -> None:
    path = write_wav(tmp_path / "x.wav", speech.audio, SAMPLE_RATE_HZ, sample_format)

    audio = load_audio(path)

    # Half a quantisation step; s32 is limited by float32's 24-bit mantissa instead.
    half_step = {"u8": 2**-8, "s16": 2**-16, "s24": 2**-24, "s32": 2**-24}.get(sample_format, 0.0)
    assert audio.shape == speech.audio.shape
    np.testing.assert_allclose(audio, speech.audio, rtol=1e-7, atol=half_step * 1.001)


@pytest.mark.parametrize("sample_format", ["u8", "s24", "f32"])
def test_wav_sample_formats_at_44k_are_resampled(
    tmp_path: Path, speech: Speech, sample_format: WavSampleFormat
) -> None:
    native = resample(speech.audio, SAMPLE_RATE_HZ, 44_100)
    path = write_wav(tmp_path / "x.wav", native, 44_100, sample_format)

    audio = load_audio(path)

    assert abs(audio.size - speech.audio.size) <= 1
    assert similarity(audio, speech.audio, max_lag=2) > (0.999 if sample_format == "u8" else 0.9999)


def test_resamples_once_like_the_in_memory_resampler(tmp_path: Path, speech: Speech) -> None:
    native = resample(speech.audio, SAMPLE_RATE_HZ, 44_100)
    path = write_wav(tmp_path / "x.wav", native, 44_100, "f32")

    streamed = load_audio(path)
    one_shot = decode_resample(native, 44_100, SAMPLE_RATE_HZ)

    assert streamed.shape == one_shot.shape
    np.testing.assert_allclose(streamed, one_shot, atol=1e-4)


def test_telephone_audio_8k(tmp_path: Path, speech: Speech) -> None:
    narrow = resample(speech.audio, SAMPLE_RATE_HZ, 8_000)
    reference = resample(narrow, 8_000, SAMPLE_RATE_HZ)
    pcm = write_wav(tmp_path / "phone.wav", narrow, 8_000, "s16")
    mulaw = encode_audio(tmp_path / "phone_ulaw.wav", narrow, 8_000, "pcm_mulaw")

    for path, min_similarity in ((pcm, 0.9999), (mulaw, 0.99)):
        audio = load_audio(path)
        assert abs(audio.size - speech.audio.size) <= 2
        assert similarity(audio, reference, max_lag=2) > min_similarity


def test_six_channels_are_averaged(tmp_path: Path) -> None:
    rate = 48_000
    channels = np.stack(
        [tone(200.0 * (k + 1), 1.0, rate, amplitude=0.1 * (k + 1)) for k in range(6)], axis=1
    )
    expected = resample(channels.mean(axis=1), rate, SAMPLE_RATE_HZ)

    for path in (
        write_wav(tmp_path / "six.wav", channels, rate, "f32"),
        encode_audio(tmp_path / "six.flac", channels, rate, "flac"),
    ):
        audio = load_audio(path)
        assert audio.shape == expected.shape
        np.testing.assert_allclose(audio[100:-100], expected[100:-100], atol=2e-3)


def test_accepts_path_str_bytes_and_file_objects(tmp_path: Path, speech: Speech) -> None:
    path = write_wav(tmp_path / "x.wav", speech.audio, SAMPLE_RATE_HZ, "s16")
    data = path.read_bytes()
    expected = load_audio(path)

    for source in (str(path), data, bytearray(data), memoryview(data), io.BytesIO(data)):
        np.testing.assert_array_equal(load_audio(source), expected)


def test_tenth_of_a_second(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "short.wav", tone(440.0, 0.1, 44_100), 44_100, "s16")
    assert load_audio(path).size == 1600


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "nope.wav")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="directory"):
        load_audio(tmp_path)


def test_empty_file_and_bytes(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(empty)
    with pytest.raises(AudioError, match="empty"):
        load_audio(b"")


def test_zero_length_audio(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "none.wav", np.zeros(0, dtype=np.float32), 16_000, "s16")
    with pytest.raises(AudioError, match="no samples"):
        load_audio(path)
    with pytest.raises(AudioError, match="no samples"):
        list(iter_audio_chunks(path))


@pytest.mark.parametrize(
    "content",
    [
        b"This is a text file, not audio.\n" * 50,
        np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes(),
    ],
    ids=["text", "random"],
)
def test_not_audio(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.mp3"
    path.write_bytes(content)
    with pytest.raises(AudioError, match="cannot be read as audio"):
        load_audio(path)


def test_no_audio_stream(tmp_path: Path) -> None:
    path = tmp_path / "picture.png"
    with av.open(str(path), mode="w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height = 8, 8
        stream.pix_fmt = "rgb24"
        frame = av.VideoFrame.from_ndarray(np.zeros((8, 8, 3), dtype=np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)

    with pytest.raises(AudioError, match="no audio stream"):
        load_audio(path)


def _mp3(tmp_path: Path, speech: Speech) -> bytes:
    native = resample(speech.audio, SAMPLE_RATE_HZ, 44_100)
    return encode_audio(tmp_path / "speech.mp3", native, 44_100, "libmp3lame").read_bytes()


def test_truncated_mp3_keeps_what_decodes(
    tmp_path: Path, speech: Speech, caplog: pytest.LogCaptureFixture
) -> None:
    data = _mp3(tmp_path, speech)
    with caplog.at_level(logging.WARNING, logger="audiototext.audio.decode"):
        audio = load_audio(data[: len(data) // 2])

    assert 0.3 * speech.audio.size < audio.size < 0.7 * speech.audio.size
    assert "truncated" in caplog.text


def test_mp3_cut_inside_its_header(tmp_path: Path, speech: Speech) -> None:
    with pytest.raises(AudioError):
        load_audio(_mp3(tmp_path, speech)[:300])


def test_corrupt_mp3_skips_bad_packets(
    tmp_path: Path, speech: Speech, caplog: pytest.LogCaptureFixture
) -> None:
    data = bytearray(_mp3(tmp_path, speech))
    rng = np.random.default_rng(1)
    data[5_000:9_000] = rng.integers(0, 256, 4_000, dtype=np.uint8).tobytes()
    with caplog.at_level(logging.WARNING, logger="audiototext.audio.decode"):
        audio = load_audio(bytes(data))

    assert audio.size > 0.5 * speech.audio.size
    assert np.isfinite(audio).all()
    assert "failed to decode" in caplog.text


@pytest.mark.parametrize("rate_hz", [16_000, 44_100])
def test_nan_and_inf_become_silence_with_a_warning(
    tmp_path: Path, rate_hz: int, caplog: pytest.LogCaptureFixture
) -> None:
    audio = tone(440.0, 1.0, rate_hz, amplitude=0.5)
    audio[[10, 1000, 12_000]] = [np.nan, np.inf, -np.inf]
    path = write_wav(tmp_path / "bad.wav", audio, rate_hz, "f32")

    with caplog.at_level(logging.WARNING, logger="audiototext.audio.decode"):
        decoded = load_audio(path)

    assert np.isfinite(decoded).all()
    assert decoded.size == SAMPLE_RATE_HZ
    assert "replaced 3 NaN/Inf sample(s)" in caplog.text
    if rate_hz == SAMPLE_RATE_HZ:
        assert decoded[10] == 0.0 and decoded[1000] == 0.0


def test_chunks_concatenate_to_the_whole(tmp_path: Path, speech: Speech) -> None:
    native = resample(speech.audio, SAMPLE_RATE_HZ, 44_100)
    path = encode_audio(tmp_path / "speech.flac", native, 44_100, "flac")

    chunks = list(iter_audio_chunks(path, chunk_s=2.0))

    assert [c.size for c in chunks[:-1]] == [32_000] * (len(chunks) - 1)
    assert 0 < chunks[-1].size <= 32_000
    assert all(c.dtype == np.float32 for c in chunks)
    np.testing.assert_allclose(np.concatenate(chunks), load_audio(path), atol=1e-6)


def test_chunk_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        iter_audio_chunks(tmp_path / "x.wav", chunk_s=0.0)
    with pytest.raises(AudioError, match="no such file"):
        next(iter_audio_chunks(tmp_path / "x.wav"))


def _write_long_flac(path: Path, duration_s: int, rate_hz: int) -> None:
    """Ten-second blocks of one second of tone then nine of silence, encoded as they go."""
    block = np.zeros(10 * rate_hz, dtype=np.float32)
    block[:rate_hz] = tone(440.0, 1.0, rate_hz, amplitude=0.3)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("flac", rate=rate_hz, layout="mono")
        for index in range(duration_s // 10):
            frame = av.AudioFrame.from_ndarray(block[None], format="fltp", layout="mono")
            frame.sample_rate = rate_hz
            frame.pts = index * block.size
            frame.time_base = Fraction(1, rate_hz)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_one_hour_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "hour.flac"
    _write_long_flac(path, 3600, 8_000)
    gc.collect()
    process = psutil.Process()
    baseline = peak = process.memory_info().rss

    total = 0
    tone_energy = 0.0
    for chunk in iter_audio_chunks(path, chunk_s=30.0):
        total += chunk.size
        tone_energy += float(np.square(chunk[:SAMPLE_RATE_HZ]).sum())
        peak = max(peak, process.memory_info().rss)

    assert total == 3600 * SAMPLE_RATE_HZ
    assert tone_energy > 0  # every 30-s chunk starts with a second of tone
    # The whole hour as float32 would be 230 MB; streaming should need a few MB.
    assert peak - baseline < 60 * 1024 * 1024


def test_resample_function() -> None:
    noise = white_noise(1.0, sample_rate_hz=44_100)
    out = decode_resample(noise, 44_100, 16_000)
    assert out.dtype == np.float32
    assert out.size == 16_000
    same = decode_resample(noise, 44_100, 44_100)
    np.testing.assert_array_equal(same, noise)
    assert same is not noise
    assert decode_resample(silence(0.0), 8_000, 16_000).size == 0
    with pytest.raises(ValueError):
        decode_resample(noise, 0, 16_000)
    with pytest.raises(ValueError):
        decode_resample(np.zeros((2, 10), dtype=np.float32), 8_000, 16_000)


def _without_id3(data: bytes) -> bytes:
    if data[:3] != b"ID3":
        return data
    size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
    return data[10 + size :]


def _dominant_hz(audio: FloatArray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.argmax(spectrum) * SAMPLE_RATE_HZ / audio.size)


def test_sample_rate_change_mid_stream(tmp_path: Path) -> None:
    # Two MP3s glued together: FFmpeg sees one stream whose rate drops from 44.1 to 22.05 kHz.
    first = encode_audio(tmp_path / "a.mp3", tone(440.0, 2.0, 44_100), 44_100, "libmp3lame")
    second = encode_audio(tmp_path / "b.mp3", tone(880.0, 2.0, 22_050), 22_050, "libmp3lame")
    glued = first.read_bytes() + _without_id3(second.read_bytes())

    audio = load_audio(glued)

    assert 3.9 * SAMPLE_RATE_HZ < audio.size < 4.2 * SAMPLE_RATE_HZ
    assert _dominant_hz(audio[8_000:24_000]) == pytest.approx(440.0, abs=2.0)
    assert _dominant_hz(audio[-24_000:-8_000]) == pytest.approx(880.0, abs=2.0)


def _decode_with_pyav(path: Path) -> FloatArray:
    """``load_audio`` with the WAV reader turned off, so PyAV decodes the file."""
    from audiototext.audio import decode

    mp = pytest.MonkeyPatch()
    mp.setattr(decode._WavFile, "probe", classmethod(lambda cls, source: None))
    try:
        return load_audio(path)
    finally:
        mp.undo()


@pytest.mark.parametrize("fmt", ["u8", "s16", "s24", "s32", "f32", "f64"])
@pytest.mark.parametrize(("rate", "channels"), [(16_000, 1), (22_050, 2), (8_000, 6)])
def test_wav_reader_gives_pyavs_exact_samples(
    tmp_path: Path, fmt: WavSampleFormat, rate: int, channels: int
) -> None:
    from audiototext.audio import decode

    rng = np.random.default_rng(rate + channels)
    frames = np.clip(rng.standard_normal((rate * 3 + 7, channels)) * 0.3, -1, 1)
    frames = frames.astype(np.float32)
    if fmt in ("f32", "f64"):
        frames[10, 0] = np.nan  # sanitised the same way on both paths
    path = write_wav(tmp_path / f"{fmt}.wav", frames if channels > 1 else frames[:, 0], rate, fmt)
    assert decode._WavFile.probe(path) is not None  # the numpy reader takes it
    ours = load_audio(path)
    assert np.array_equal(ours, _decode_with_pyav(path))
    assert np.isfinite(ours).all()


def test_unusual_wavs_go_to_pyav(tmp_path: Path, speech: Speech) -> None:
    from audiototext.audio import decode

    whole = write_wav(tmp_path / "whole.wav", speech.audio, 16_000).read_bytes()
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(whole[: len(whole) // 2])  # data chunk longer than the file
    not_riff = tmp_path / "odd.wav"
    not_riff.write_bytes(b"RIFX" + whole[4:])
    for path in (truncated, not_riff, tmp_path / "missing.wav", tmp_path):
        assert decode._WavFile.probe(path) is None
    # PyAV still decodes the truncated file and keeps what is there.
    assert load_audio(truncated).size == pytest.approx(speech.audio.size / 2, rel=0.01)


def test_wav_files_do_not_import_pyav(tmp_path: Path, speech: Speech) -> None:
    """PyAV costs ~18 MB of memory: a WAV is decoded, and its duration read, without it."""
    import subprocess
    import sys

    path = write_wav(tmp_path / "clip.wav", resample(speech.audio, 16_000, 22_050), 22_050)
    code = (
        "import sys\n"
        "from audiototext.audio.decode import declared_duration_s, load_audio\n"
        f"audio = load_audio({str(path)!r})\n"
        f"print(audio.size, round(declared_duration_s({str(path)!r}), 2), 'av' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    size, duration, imported = out.stdout.split()
    assert int(size) == load_audio(path).size
    assert float(duration) == round(speech.duration_s, 2)
    assert imported == "False"
