"""numpy's BLAS runs on one thread while features are computed, and is restored after."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from audiototext.audio.features import log_mel_spectrogram_of_pieces
from audiototext.inference import session, transcribe
from audiototext.inference.session import single_threaded_blas
from audiototext.inference.transcribe import TranscribeOptions, Transcriber


def _audio() -> np.ndarray:
    return (np.random.default_rng(3).standard_normal(16000 * 7) * 0.1).astype(np.float32)


def _setter() -> Callable[[int], int]:
    setter = session._openblas_local_threads()
    if setter is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS with openblas_set_num_threads_local")
    return setter


def test_features_are_bit_identical_inside_and_outside() -> None:
    audio = _audio()
    outside = log_mel_spectrogram_of_pieces([audio], 80, 160)
    with single_threaded_blas():
        inside = log_mel_spectrogram_of_pieces([audio], 80, 160)
    assert np.array_equal(inside, outside)


def test_thread_count_is_one_inside_and_restored_after() -> None:
    setter = _setter()
    before = setter(3)  # a value we can recognise
    try:
        with single_threaded_blas():
            inside = setter(1)  # returns the value in force, leaves 1
        after = setter(3)
    finally:
        setter(before)
    assert (inside, after) == (1, 3)


def test_overlapping_blocks_in_two_threads_restore_the_count_once_both_left() -> None:
    setter = _setter()
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with single_threaded_blas():
            entered.set()
            release.wait(5)

    before = setter(3)
    worker = threading.Thread(target=hold)
    try:
        worker.start()
        assert entered.wait(5)
        with single_threaded_blas():
            pass  # this thread leaves first: the worker is still inside
        while_worker_inside = setter(1)
        release.set()
        worker.join()
        after = setter(3)
    finally:
        release.set()
        worker.join()
        setter(before)
    assert (while_worker_inside, after) == (1, 3)


def test_an_exception_inside_still_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake(n: int) -> int:
        calls.append(n)
        return 4

    monkeypatch.setattr(session, "_openblas_local_threads", lambda: fake)
    with pytest.raises(RuntimeError), single_threaded_blas():
        raise RuntimeError("boom")
    assert calls == [1, 4]


def test_without_openblas_it_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "_openblas_local_threads", lambda: None)
    with single_threaded_blas():
        value = 1 + 1
    assert value == 2


def test_transcription_computes_features_with_one_blas_thread(
    int8: Transcriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    state: dict[str, Any] = {"threads": 2, "features_at": []}

    def fake(n: int) -> int:
        previous, state["threads"] = state["threads"], n
        return previous

    real = transcribe.log_mel_spectrogram_of_pieces

    def spy(*args: object, **kwargs: object) -> np.ndarray:
        state["features_at"].append(state["threads"])
        return real(*args, **kwargs)

    monkeypatch.setattr(session, "_openblas_local_threads", lambda: fake)
    monkeypatch.setattr(transcribe, "log_mel_spectrogram_of_pieces", spy)
    list(int8.transcribe(_audio()[: 16000 * 2], TranscribeOptions(beam_size=1)))
    assert state["features_at"] and set(state["features_at"]) == {1}
    assert state["threads"] == 2
