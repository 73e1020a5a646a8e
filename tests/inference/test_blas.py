"""numpy's OpenBLAS: one thread while features are computed (restored after), or for good in
the server process."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from audiototext import _blas
from audiototext._blas import blas_threads, limit_blas_threads, single_threaded_blas
from audiototext.audio import features
from audiototext.audio.features import log_mel_spectrogram_of_pieces
from audiototext.inference.transcribe import TranscribeOptions, Transcriber
from audiototext.streaming._decode import encoder_input


def _audio() -> np.ndarray:
    return (np.random.default_rng(3).standard_normal(16000 * 7) * 0.1).astype(np.float32)


def _setter() -> Callable[[int], int]:
    setters = _blas._local_setters()
    if not setters:
        pytest.skip("numpy's BLAS is not an OpenBLAS with openblas_set_num_threads_local")
    setter: Callable[[int], int] = setters[0]  # a ctypes function
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

    monkeypatch.setattr(_blas, "_local_setters", lambda: [fake])
    with pytest.raises(RuntimeError), single_threaded_blas():
        raise RuntimeError("boom")
    assert calls == [1, 4]


def test_without_openblas_it_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_blas, "_local_setters", lambda: [])
    with single_threaded_blas():
        value = 1 + 1
    assert value == 2


@pytest.mark.parametrize("path", ["file", "stream"])
def test_features_are_computed_with_one_blas_thread(
    monkeypatch: pytest.MonkeyPatch, int8: Transcriber, path: str
) -> None:
    """File transcription and streaming's encoder input both compute log-mel with one thread."""
    state: dict[str, Any] = {"threads": 2, "features_at": []}

    def fake(n: int) -> int:
        previous: int
        previous, state["threads"] = state["threads"], n
        return previous

    # features' own binding (patched below), called once per block of frames
    real: Callable[..., np.ndarray] = vars(features)["sliding_window_view"]

    def spy(*args: Any, **kwargs: Any) -> np.ndarray:
        state["features_at"].append(state["threads"])
        return real(*args, **kwargs)

    monkeypatch.setattr(_blas, "_local_setters", lambda: [fake])
    monkeypatch.setattr(features, "sliding_window_view", spy)
    audio = _audio()[: 16000 * 2]
    if path == "file":
        list(int8.transcribe(audio, TranscribeOptions(beam_size=1)))
    else:
        model = int8.model
        encoder_input(audio, model.n_mels, None, model.window_frames)
    assert state["features_at"] and set(state["features_at"]) == {1}
    assert state["threads"] == 2


def test_limit_blas_threads_sets_every_loaded_openblas() -> None:
    # In a child process: the setting is process-wide, and other tests keep numpy's default.
    code = (
        "import numpy as np\n"
        "from audiototext._blas import blas_threads, limit_blas_threads\n"
        "np.ones((64, 64)) @ np.ones((64, 64))\n"
        "before = blas_threads()\n"
        "n = limit_blas_threads(1)\n"
        "import json\n"
        "print(json.dumps([before, n, blas_threads()]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    if not blas_threads():
        pytest.skip("numpy here is not built on OpenBLAS")
    before, done, after = json.loads(out)
    assert done == len(after) >= 1
    assert after == [1] * len(after)
    assert len(before) == len(after)
    assert np.isfinite((np.ones((8, 8)) @ np.ones((8, 8))).sum())


def test_limit_blas_threads_rejects_zero() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        limit_blas_threads(0)
