"""transcribe_each with one job: windows encoded on a second thread, two inputs in flight."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest

from audiototext.errors import AudioError
from audiototext.inference import SessionConfig, TranscribeOptions, Transcriber, WhisperModel
from audiototext.inference import transcribe as transcribe_module
from support.speech import SpeechSynthesizer, silence, write_wav

GREEDY = TranscribeOptions(beam_size=1, temperatures=(0.0,))


@pytest.fixture(scope="module")
def clips(synth: SpeechSynthesizer) -> list[np.ndarray]:
    first = synth.speak("The birch canoe slid on the smooth planks.").audio
    second = synth.speak("A pot of tea helps to pass the evening.").audio
    return [first, second, np.concatenate([second, silence(1.0), first])]


@pytest.fixture(autouse=True)
def pipeline_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcribe_module, "_PIPELINE_INPUTS", True)  # off by default


@pytest.fixture(scope="module")
def two_threads(int8_model: WhisperModel) -> Transcriber:
    return Transcriber(WhisperModel(int8_model.path, SessionConfig("cpu", 2)))


def _encode_threads(model: WhisperModel, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the threads that call ``model.encode`` from now on."""
    names: list[str] = []
    real = model.encode

    def spy(mel: np.ndarray) -> object:
        names.append(threading.current_thread().name)
        return real(mel)

    monkeypatch.setattr(model, "encode", spy)
    return names


@pytest.mark.parametrize("beam", [1, 5])
def test_results_equal_transcribing_each_input_alone(
    two_threads: Transcriber,
    clips: list[np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    beam: int,
) -> None:
    opts = TranscribeOptions(beam_size=beam, temperatures=(0.0,))
    monkeypatch.setattr(transcribe_module, "_PIPELINE_MAX_BEAM", 5)  # beam 5: when enabled
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    wav = tmp_path / "clip.wav"
    write_wav(wav, clips[1], 16_000)
    inputs: list = [  # type: ignore[type-arg]
        clips[0],
        bad,
        tmp_path / "missing.wav",
        wav,
        io.BytesIO(wav.read_bytes()),  # a file object: read once, by the pipeline
        clips[2],
    ]
    # Alone: transcribe() on the two-thread sessions, the way one file is done.
    alone = {i: list(two_threads.transcribe(inputs[i], opts)) for i in (0, 3, 5)}
    alone[4] = alone[3]
    inputs[4] = io.BytesIO(wav.read_bytes())
    # The pipeline runs on a second transcriber whose sessions have one thread each.
    half = two_threads._pipelined(opts)
    assert half is not two_threads and half.model.config.threads == 1
    names = _encode_threads(half.model, monkeypatch)
    progress: list[tuple[int, float]] = []
    results = list(
        two_threads.transcribe_each(
            inputs, opts, jobs=1, progress=lambda i, s: progress.append((i, s))
        )
    )
    assert [r.index for r in results] == [0, 1, 2, 3, 4, 5]
    for index in (1, 2):
        assert isinstance(results[index].error, AudioError) and results[index].segments == []
    for index, expected in alone.items():
        assert results[index].error is None
        # Float for float, though decoded on one thread instead of two and interleaved.
        assert results[index].segments == expected
    sizes = {0: clips[0].size, 3: clips[1].size, 4: clips[1].size, 5: clips[2].size}
    for index, size in sizes.items():
        assert results[index].audio_s == pytest.approx(size / 16_000)
    # Every window was read and encoded on the read-ahead thread, none inline.
    assert names and all(n.startswith("prefetch") for n in names)
    assert sorted({i for i, _ in progress}) == [0, 3, 4, 5]
    assert two_threads._pipelined(opts) is half  # created once


@pytest.mark.parametrize("split", [True, False])
def test_without_the_pipeline_the_results_are_the_same(
    two_threads: Transcriber,
    clips: list[np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    split: bool,
) -> None:
    monkeypatch.setattr(transcribe_module, "_PIPELINE_SPLIT", split)
    runs_on = two_threads._pipelined(GREEDY)
    assert (runs_on is two_threads) == (not split)
    names = _encode_threads(runs_on.model, monkeypatch)
    ahead = [r.segments for r in two_threads.transcribe_each(clips, GREEDY, jobs=1)]
    assert names and all(n.startswith("prefetch") for n in names)
    monkeypatch.setattr(transcribe_module, "_PIPELINE_INPUTS", False)
    names.clear()
    inline = [r.segments for r in two_threads.transcribe_each(clips, GREEDY, jobs=1)]
    assert not any(n.startswith("prefetch") for n in names)
    assert ahead == inline


def test_one_thread_models_run_the_pipeline_on_their_own_sessions(int8_model: WhisperModel) -> None:
    one = Transcriber(WhisperModel(int8_model.path, SessionConfig("cpu", 1)))
    assert one._pipelined(GREEDY) is one


def test_results_come_in_input_order_when_a_later_input_finishes_first(
    two_threads: Transcriber, clips: list[np.ndarray]
) -> None:
    inputs = [clips[2], clips[0], clips[1]]  # the first is the longest
    alone = [list(two_threads.transcribe(a, GREEDY)) for a in inputs]
    results = list(two_threads.transcribe_each(inputs, GREEDY, jobs=1))
    assert [r.index for r in results] == [0, 1, 2]
    assert [r.segments for r in results] == alone


def test_stopping_early_leaves_no_read_ahead_running(
    two_threads: Transcriber, clips: list[np.ndarray]
) -> None:
    results = two_threads.transcribe_each(clips, GREEDY, jobs=1)
    first = next(results)
    assert first.index == 0 and first.segments
    results.close()  # the read in progress is waited for and dropped
    assert not [t for t in threading.enumerate() if t.name.startswith("prefetch")]


def test_beam_search_is_not_pipelined_by_default(
    two_threads: Transcriber, clips: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    opts = TranscribeOptions(beam_size=5, temperatures=(0.0,))
    names = _encode_threads(two_threads.model, monkeypatch)
    results = list(two_threads.transcribe_each(clips[:2], opts, jobs=1))
    assert names and not any(n.startswith("prefetch") for n in names)
    assert [r.segments for r in results] == [
        list(two_threads.transcribe(c, opts)) for c in clips[:2]
    ]
