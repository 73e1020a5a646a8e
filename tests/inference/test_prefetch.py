"""transcribe_each with one job: windows encoded on a second thread, two inputs in flight."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest

from audiototext.errors import AudioError
from audiototext.inference import TranscribeOptions, Transcriber
from audiototext.inference import transcribe as transcribe_module
from support.speech import SpeechSynthesizer, silence, write_wav

GREEDY = TranscribeOptions(beam_size=1, temperatures=(0.0,))


@pytest.fixture(scope="module")
def clips(synth: SpeechSynthesizer) -> list[np.ndarray]:
    first = synth.speak("The birch canoe slid on the smooth planks.").audio
    second = synth.speak("A pot of tea helps to pass the evening.").audio
    return [first, second, np.concatenate([second, silence(1.0), first])]


def _encode_threads(int8: Transcriber, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    names: list[str] = []
    real = int8.model.encode

    def spy(mel: np.ndarray, **kwargs: object) -> object:
        names.append(threading.current_thread().name)
        return real(mel, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(int8.model, "encode", spy)
    return names


@pytest.mark.parametrize("beam", [1, 5])
def test_results_equal_transcribing_each_input_alone(
    int8: Transcriber,
    clips: list[np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    beam: int,
) -> None:
    opts = TranscribeOptions(beam_size=beam, temperatures=(0.0,))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    wav = tmp_path / "clip.wav"
    write_wav(wav, clips[1], 16_000)
    inputs: list = [  # type: ignore[type-arg]
        clips[0],
        bad,
        tmp_path / "missing.wav",
        wav,
        io.BytesIO(wav.read_bytes()),  # a file object: read once, by the read-ahead
        clips[2],
    ]
    alone = {i: list(int8.transcribe(inputs[i], opts)) for i in (0, 3, 5)}
    alone[4] = alone[3]
    inputs[4] = io.BytesIO(wav.read_bytes())
    names = _encode_threads(int8, monkeypatch)
    progress: list[tuple[int, float]] = []
    results = list(
        int8.transcribe_each(inputs, opts, jobs=1, progress=lambda i, s: progress.append((i, s)))
    )
    assert [r.index for r in results] == [0, 1, 2, 3, 4, 5]
    for index in (1, 2):
        assert isinstance(results[index].error, AudioError) and results[index].segments == []
    for index, expected in alone.items():
        assert results[index].error is None
        # Float for float: the same sessions ran the same calls, some of them earlier.
        assert results[index].segments == expected
    sizes = {0: clips[0].size, 3: clips[1].size, 4: clips[1].size, 5: clips[2].size}
    for index, size in sizes.items():
        assert results[index].audio_s == pytest.approx(size / 16_000)
    # Every window was read and encoded on the read-ahead thread, none inline.
    assert names and all(n.startswith("prefetch") for n in names)
    assert sorted({i for i, _ in progress}) == [0, 3, 4, 5]


@pytest.mark.parametrize("side_threads", [0, 1])
def test_without_read_ahead_the_results_are_the_same(
    int8: Transcriber,
    clips: list[np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    side_threads: int,
) -> None:
    # 0: the model's own encoder session reads ahead; 1: a second, one-thread session.
    monkeypatch.setattr(transcribe_module, "_READ_AHEAD_THREADS", side_threads)
    names = _encode_threads(int8, monkeypatch)
    ahead = [r.segments for r in int8.transcribe_each(clips, GREEDY, jobs=1)]
    assert any(n.startswith("prefetch") for n in names)
    assert (1 in int8.model._side_encoders) == (side_threads == 1)
    names.clear()
    monkeypatch.setattr(transcribe_module, "_PIPELINE_INPUTS", False)
    inline = [r.segments for r in int8.transcribe_each(clips, GREEDY, jobs=1)]
    assert not any(n.startswith("prefetch") for n in names)
    assert ahead == inline


def test_stopping_early_leaves_no_read_ahead_running(
    int8: Transcriber, clips: list[np.ndarray]
) -> None:
    results = int8.transcribe_each(clips, GREEDY, jobs=1)
    first = next(results)
    assert first.index == 0 and first.segments
    results.close()  # the read-ahead of input 1 is waited for and dropped
    assert not [t for t in threading.enumerate() if t.name.startswith("prefetch")]


def test_results_come_in_input_order_when_a_later_input_finishes_first(
    int8: Transcriber, clips: list[np.ndarray]
) -> None:
    inputs = [clips[2], clips[0], clips[1]]  # the first is the longest
    alone = [list(int8.transcribe(a, GREEDY)) for a in inputs]
    results = list(int8.transcribe_each(inputs, GREEDY, jobs=1))
    assert [r.index for r in results] == [0, 1, 2]
    assert [r.segments for r in results] == alone
