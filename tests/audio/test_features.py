from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from audiototext.audio.features import (
    CHUNK_SAMPLES,
    FRAMES_PER_CHUNK,
    LogMelBuilder,
    frames_for_samples,
    log_mel_spectrogram,
    log_mel_spectrogram_of_pieces,
    mel_filters,
    pad_or_trim,
)
from support.speech import Speech, add_white_noise, silence, tone, white_noise

if TYPE_CHECKING:
    from transformers import WhisperFeatureExtractor

# Achieved: 1.2e-7 against faster-whisper (same float32 method); 2.3e-5 (80 mels) and 5.0e-5
# (128 mels) against transformers' torch path, 1.1e-5 against its float64 numpy path.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def transformers_feature_extractors() -> dict[int, WhisperFeatureExtractor]:
    transformers = pytest.importorskip("transformers")
    return {n: transformers.WhisperFeatureExtractor(feature_size=n) for n in (80, 128)}


@pytest.mark.parametrize("n_mels", [80, 128])
def test_filterbank_matches_transformers_and_faster_whisper(n_mels: int) -> None:
    audio_utils = pytest.importorskip("transformers.audio_utils")
    fw = pytest.importorskip("faster_whisper.feature_extractor")
    reference = audio_utils.mel_filter_bank(
        num_frequency_bins=201,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=16_000,
        norm="slaney",
        mel_scale="slaney",
    )
    ours = mel_filters(n_mels)
    assert ours.shape == (n_mels, 201)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference.T, rtol=0, atol=1e-7)
    np.testing.assert_allclose(
        ours, fw.FeatureExtractor.get_mel_filters(16_000, 400, n_mels), rtol=0, atol=1e-7
    )
    assert not ours.flags.writeable


@pytest.mark.parametrize("n_mels", [80, 128])
def test_matches_transformers_on_speech(
    speech: Speech, transformers_feature_extractors: dict[int, WhisperFeatureExtractor], n_mels: int
) -> None:
    extractor = transformers_feature_extractors[n_mels]
    window = pad_or_trim(speech.audio)
    ours = log_mel_spectrogram(window, n_mels)

    # The public call (torch STFT when torch is installed, as here) pads to 30 s itself.
    public = extractor(speech.audio, sampling_rate=16_000, return_tensors="np")
    numpy_path = extractor._np_extract_fbank_features(window[None], "cpu")

    assert ours.shape == (n_mels, FRAMES_PER_CHUNK)
    assert ours.dtype == np.float32
    assert np.abs(ours - public.input_features[0]).max() < TOLERANCE
    assert np.abs(ours - numpy_path[0]).max() < TOLERANCE


@pytest.mark.parametrize("n_mels", [80, 128])
def test_matches_faster_whisper_on_speech(speech: Speech, n_mels: int) -> None:
    fw = pytest.importorskip("faster_whisper.feature_extractor")
    extractor = fw.FeatureExtractor(feature_size=n_mels)
    noisy = add_white_noise(speech.audio, snr_db=20.0)

    for audio in (speech.audio, noisy, speech.audio[:1600]):
        ours = log_mel_spectrogram(audio, n_mels, padding_samples=160)
        reference = extractor(audio, padding=160)
        assert ours.shape == reference.shape
        assert np.abs(ours - reference).max() < TOLERANCE


def test_matches_faster_whisper_on_tones_and_noise() -> None:
    fw = pytest.importorskip("faster_whisper.feature_extractor")
    extractor = fw.FeatureExtractor(feature_size=80)
    audio = np.concatenate([tone(440.0, 1.0), silence(0.5), white_noise(1.0, 0.3, seed=3)])
    np.testing.assert_allclose(
        log_mel_spectrogram(audio), extractor(audio, padding=0), rtol=0, atol=TOLERANCE
    )


def test_shape_and_range() -> None:
    audio = white_noise(2.05, 0.1)
    spec = log_mel_spectrogram(audio)
    assert spec.shape == (80, frames_for_samples(audio.size)) == (80, 205)
    assert spec.flags.c_contiguous
    # (log10 + 4) / 4 with an 8-decade floor: at most 2 apart.
    assert spec.max() - spec.min() <= 2.0 + 1e-6
    assert log_mel_spectrogram(audio, padding_samples=160).shape == (80, 206)


def test_silence_is_flat() -> None:
    spec = log_mel_spectrogram(silence(1.0))
    np.testing.assert_allclose(spec, np.full((80, 100), -1.5), rtol=0, atol=1e-6)


def test_too_short_and_empty() -> None:
    assert log_mel_spectrogram(np.zeros(0, dtype=np.float32)).shape == (80, 0)
    assert log_mel_spectrogram(np.zeros(159, dtype=np.float32), 128).shape == (128, 0)
    assert log_mel_spectrogram(np.ones(100, dtype=np.float32), padding_samples=60).shape == (80, 1)


def test_argument_errors() -> None:
    with pytest.raises(ValueError):
        log_mel_spectrogram(np.zeros(16_000, dtype=np.float32), n_mels=64)
    with pytest.raises(ValueError):
        log_mel_spectrogram(np.zeros((2, 16_000), dtype=np.float32))
    with pytest.raises(ValueError):
        log_mel_spectrogram(np.zeros(16_000, dtype=np.float32), padding_samples=-1)


def test_pad_or_trim() -> None:
    short = np.ones(10, dtype=np.float32)
    padded = pad_or_trim(short)
    assert padded.shape == (CHUNK_SAMPLES,)
    assert padded[:10].sum() == 10 and padded[10:].sum() == 0

    long = np.arange(CHUNK_SAMPLES + 5, dtype=np.float32)
    trimmed = pad_or_trim(long)
    assert trimmed.shape == (CHUNK_SAMPLES,)
    assert trimmed[-1] == CHUNK_SAMPLES - 1

    exact = np.zeros(CHUNK_SAMPLES, dtype=np.float32)
    assert pad_or_trim(exact) is exact

    spec = np.ones((80, 120), dtype=np.float32)
    assert pad_or_trim(spec, FRAMES_PER_CHUNK).shape == (80, FRAMES_PER_CHUNK)
    assert pad_or_trim(spec, 50, axis=1).shape == (80, 50)
    assert pad_or_trim(spec, 40, axis=0).shape == (40, 120)
    with pytest.raises(ValueError):
        pad_or_trim(spec, -1)


def _reference_log_mel(audio: np.ndarray, n_mels: int, padding_samples: int) -> np.ndarray:
    """The former implementation (full padded copy, (frames, mels) then transposed), kept to
    show the copy-free one gives the very same bits."""
    from numpy.lib.stride_tricks import sliding_window_view

    from audiototext.audio.features import _hann_window

    samples = np.pad(np.asarray(audio, dtype=np.float32), (0, padding_samples))
    num_frames = frames_for_samples(samples.shape[0])
    if num_frames == 0:
        return np.zeros((n_mels, 0), dtype=np.float32)
    padded = np.pad(samples, (200, 200), mode="reflect")
    frames = sliding_window_view(padded, 400)[::160][:num_frames]
    mel = np.empty((num_frames, n_mels), dtype=np.float32)
    for start in range(0, num_frames, 256):
        stop = min(start + 256, num_frames)
        spectrum = np.fft.rfft(frames[start:stop] * _hann_window(), axis=-1)
        power = np.square(spectrum.real) + np.square(spectrum.imag)
        np.matmul(power, mel_filters(n_mels).T, out=mel[start:stop])
    log_spec = np.ascontiguousarray(mel.T)
    np.maximum(log_spec, 1e-10, out=log_spec)
    np.log10(log_spec, out=log_spec)
    np.maximum(log_spec, log_spec.max() - 8.0, out=log_spec)
    return (log_spec + 4.0) / 4.0


@pytest.mark.parametrize("n_mels", [80, 128])
def test_copy_free_spectrogram_is_bit_identical(n_mels: int) -> None:
    rng = np.random.default_rng(7)
    lengths = [1, 2, 159, 160, 200, 201, 239, 400, 401, 561, 16_000, 41_121, 480_000, 480_161]
    for length in lengths:
        audio = (rng.standard_normal(length) * 0.1).astype(np.float32)
        for padding in (0, 1, 160, max(0, 480_000 - length)):
            want = _reference_log_mel(audio, n_mels, padding)
            got = log_mel_spectrogram(audio, n_mels, padding_samples=padding)
            assert got.shape == want.shape and np.array_equal(got, want), (length, padding)
            # The same audio cut into pieces (never joined) gives the same bits too.
            cuts = sorted(int(c) for c in rng.integers(0, length + 1, size=4))
            pieces = [audio[a:b] for a, b in zip([0, *cuts], [*cuts, length], strict=True)]
            got = log_mel_spectrogram_of_pieces(pieces, n_mels, padding_samples=padding)
            assert np.array_equal(got, want), (length, padding, cuts)


def test_spectrogram_of_a_long_input_allocates_only_its_result() -> None:
    import tracemalloc

    pieces = [white_noise(30.0, 0.1, seed=s) for s in range(10)]  # 300 s, 19 MB
    tracemalloc.start()
    try:
        spec = log_mel_spectrogram_of_pieces(pieces, 80)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The former implementation peaked at 4x the audio (a joined copy, a padded copy, and two
    # spectrograms); now the result (9.6 MB) plus one block of frames.
    assert peak < spec.nbytes + 4 * 2**20


@pytest.mark.parametrize("expected", ["exact", "short", "long"])
def test_builder_fed_piece_by_piece_is_bit_identical(expected: str) -> None:
    """Frames computed as pieces arrive equal those of the joined audio, however the input is
    cut and whatever size was announced (the result grows, or is a slice of a larger one)."""
    rng = np.random.default_rng(11)
    for length in (0, 150, 401, 41_121, 100_000, 480_161):
        audio = (rng.standard_normal(length) * 0.1).astype(np.float32)
        for padding in (0, 160):
            want = _reference_log_mel(audio, 80, padding)
            announced = {"exact": length + padding, "short": length // 3, "long": 2 * length}
            builder = LogMelBuilder(80, expected_samples=announced[expected])
            cuts = sorted(int(c) for c in rng.integers(0, length + 1, size=6))
            for a, b in zip([0, *cuts], [*cuts, length], strict=True):
                builder.add(audio[a:b])
            assert builder.samples == length
            got = builder.finish(padding)
            assert got.shape == want.shape and np.array_equal(got, want), (length, padding)
            with pytest.raises(RuntimeError):
                builder.add(audio[:10])


def test_builder_lets_go_of_each_piece_once_its_frames_are_done() -> None:
    """Fed 300 s in 30-s chunks, the builder never holds the audio whole: memory is the
    spectrogram plus two chunks (the one arriving, and the one before it until the block of
    frames straddling them is done) and a block of FFT work; the joined-pieces way holds all
    ten chunks as well (measured: 6.9 MB over the result here, against 21.3 MB)."""
    import tracemalloc

    chunk = 30 * 16_000
    rng = np.random.default_rng(5)
    tracemalloc.start()
    try:
        builder = LogMelBuilder(80, expected_samples=10 * chunk)
        for _ in range(10):
            audio = rng.standard_normal(chunk, dtype=np.float32)
            audio *= 0.1
            builder.add(audio)
            del audio  # only the builder keeps it
        spec = builder.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    chunk_bytes = chunk * 4  # 1.9 MB
    assert spec.shape == (80, 30_000)
    assert peak < spec.nbytes + 5 * chunk_bytes  # all ten chunks would be 19 MB more


def test_builder_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="n_mels"):
        LogMelBuilder(81)
    with pytest.raises(ValueError, match="expected_samples"):
        LogMelBuilder(80, expected_samples=-1)
    builder = LogMelBuilder(80)
    with pytest.raises(ValueError, match="1-D"):
        builder.add(np.zeros((2, 10), dtype=np.float32))
    with pytest.raises(ValueError, match="padding_samples"):
        builder.finish(-1)
    assert builder.finish().shape == (80, 0)
    with pytest.raises(RuntimeError):
        builder.finish()
