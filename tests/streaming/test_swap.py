"""The model swap's boundary rule (``streaming/_swap.py``): nothing is installed while a lane
holds a batch; at the first boundary with every lane idle the recognizer and both decoders
get the new model at once; a newer request supersedes a waiting one; a stopped recognizer
fails the waiting request instead of leaving it hanging."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from audiototext.inference import WhisperModel
from audiototext.streaming._swap import ModelSwap


def _holder(model: WhisperModel) -> SimpleNamespace:
    return SimpleNamespace(
        model=model,
        final_decoder=SimpleNamespace(model=model),
        partial_decoder=SimpleNamespace(model=model),
    )


@pytest.fixture(scope="module")
def one_thread(tiny_model: WhisperModel) -> WhisperModel:
    return tiny_model.with_threads(1)


def test_installed_only_when_every_lane_is_idle(
    tiny_model: WhisperModel, one_thread: WhisperModel
) -> None:
    swap = ModelSwap()
    rec = _holder(tiny_model)
    busy, idle = SimpleNamespace(busy=True), SimpleNamespace(busy=False)
    assert not swap.at_boundary(rec, [idle, idle])  # nothing waiting
    done = swap.request(one_thread)
    assert swap.pending
    assert not swap.at_boundary(rec, [idle, busy])  # a batch is still on a lane
    assert rec.model is tiny_model and not done.done()
    assert swap.at_boundary(rec, [idle, idle])
    assert rec.model is rec.final_decoder.model is rec.partial_decoder.model is one_thread
    report = done.result(timeout=0)
    assert (report.threads_before, report.threads_after) == (tiny_model.threads, 1)
    assert not swap.pending
    assert one_thread.threads == 1 and one_thread.tokenizer is tiny_model.tokenizer


def test_a_newer_request_supersedes_and_a_stop_fails_the_waiting_one(
    tiny_model: WhisperModel, one_thread: WhisperModel
) -> None:
    swap = ModelSwap()
    first = swap.request(one_thread)
    second = swap.request(tiny_model)
    with pytest.raises(RuntimeError, match="superseded"):
        first.result(timeout=0)
    swap.cancel("the recognizer stopped")
    with pytest.raises(RuntimeError, match="stopped"):
        second.result(timeout=0)
    assert not swap.pending
