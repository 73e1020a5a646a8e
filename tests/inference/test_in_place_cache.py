"""The decoder's in-place self-attention cache against its appending mode, on real tiny.en.

In the in-place mode (graph version 6, CPU) each step writes its keys and values into fixed
buffers and beams are reordered through ``cache_indirection``; the appending mode returns a
new, longer cache each step and reorders it by copying. Both must give the same logits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from audiototext.inference import WhisperModel
from audiototext.inference.kv_cache import InPlaceCache
from audiototext.inference.whisper import CrossAttention, KVDecoder

pytestmark = pytest.mark.slow

ATOL = 2e-3  # float32 sums in another order (the same tolerance as the reorder test)
# A step of a plan: the rows to keep (None: all), then each row's next token.
Step = tuple[list[int] | None, list[int]]


@pytest.fixture
def model(fp32_model: WhisperModel) -> Iterator[WhisperModel]:
    assert fp32_model.in_place_cache, "the converted decoder should offer the in-place mode"
    yield fp32_model
    fp32_model.in_place_cache = True


def _prompt(model: WhisperModel, extra: int) -> list[int]:
    tok = model.tokenizer
    # A previous-text prompt as file transcription builds it, then the start of transcript.
    return [tok.sot_prev, *range(400, 400 + extra), *tok.sot_sequence("en", "transcribe")]


def _run(
    model: WhisperModel,
    cross: CrossAttention,
    prompts: list[list[int]],
    plan: Sequence[Step],
    in_place: bool,
) -> tuple[list[np.ndarray], KVDecoder]:
    """Prefill, then for each ``(rows or None, tokens)``: select rows, step tokens."""
    model.in_place_cache = in_place
    kv = KVDecoder(model, cross)
    logits, _ = kv.prefill(prompts)
    out = [np.array(logits[:, -1])]
    for rows, tokens in plan:
        if rows is not None:
            kv.select(rows)
        out.append(np.array(kv.step(np.asarray(tokens, dtype=np.int64))))
    return out, kv


def _beam_plan(rng: np.random.Generator, windows: int, beams: int, steps: int) -> list[Step]:
    plan: list[Step] = [
        (
            [w for w in range(windows) for _ in range(beams)],
            [220 + w for w in range(windows * beams)],
        )
    ]
    for _ in range(steps):
        # Each beam continues one of its window's beams (repeats allowed), as beam search does.
        rows = [w * beams + int(rng.integers(beams)) for w in range(windows) for _ in range(beams)]
        plan.append((rows, [int(t) for t in rng.integers(300, 5000, size=len(rows))]))
    return plan


def test_beam_reordering_gives_the_appending_modes_logits(
    model: WhisperModel, windows: CrossAttention
) -> None:
    windows = windows.take([0, 1])
    prompts = [_prompt(model, 30), _prompt(model, 12)]  # left padding on the second window
    plan = _beam_plan(np.random.default_rng(7), windows=2, beams=5, steps=12)
    ours, kv = _run(model, windows, prompts, plan, in_place=True)
    theirs, _ = _run(model, windows, prompts, plan, in_place=False)
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        np.testing.assert_allclose(a, b, rtol=0, atol=ATOL, err_msg=f"step {step}")
    cache = kv._cache
    assert cache is not None and cache.group == 5
    # Reordering only rewrote the indirection: the prompt stayed in each window's first beam.
    width = len(prompts[0])
    assert np.all(cache.indirection[:, :, :width] == 0)
    assert cache.buffers[0].shape[0] == 10


def test_dropping_windows_and_uneven_rows_copy_the_right_positions(
    model: WhisperModel, windows: CrossAttention
) -> None:
    windows = windows.take([0, 1])
    prompts = [_prompt(model, 20), _prompt(model, 20)]
    plan = _beam_plan(np.random.default_rng(3), windows=2, beams=3, steps=4)
    # Rows of uneven groups (two of window 0, one of window 1), then reordered across the
    # windows, then a window dropped and its survivor repeated.
    plan.append(([0, 1, 3], [400, 401, 402]))
    plan.append(([2, 0, 1], [403, 404, 405]))
    plan.append(([0, 0], [406, 407]))
    plan.append((None, [408, 409]))
    ours, kv = _run(model, windows, prompts, plan, in_place=True)
    theirs, _ = _run(model, windows, prompts, plan, in_place=False)
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        np.testing.assert_allclose(a, b, rtol=0, atol=ATOL, err_msg=f"step {step}")
    assert kv._cache is not None and kv.batch == 2


def test_a_cache_that_would_outgrow_its_buffers_goes_back_to_appending(
    model: WhisperModel, windows: CrossAttention, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = [_prompt(model, 10)]
    plan = [(None, [300 + i]) for i in range(6)]
    theirs, _ = _run(model, windows.take([0]), prompts, plan, in_place=False)
    limit = len(prompts[0]) + 3
    monkeypatch.setattr(InPlaceCache, "size", property(lambda self: limit))
    ours, kv = _run(model, windows.take([0]), prompts, plan, in_place=True)
    assert kv._cache is None and kv.length == len(prompts[0]) + 6
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        np.testing.assert_allclose(a, b, rtol=0, atol=ATOL, err_msg=f"step {step}")


def test_word_alignment_prefill_never_builds_the_cache(
    model: WhisperModel, windows: CrossAttention
) -> None:
    kv = KVDecoder(model, windows.take([0]))
    kv.prefill([_prompt(model, 5)], logits_for="all")
    assert kv._cache is None


def test_a_steps_logits_survive_the_next_step(model: WhisperModel, windows: CrossAttention) -> None:
    # ONNX Runtime reuses a bound output whose shape matches; the caller owns each step's logits.
    kv = KVDecoder(model, windows.take([0]))
    kv.prefill([_prompt(model, 3)])
    first = kv.step(np.array([300]))
    kept = first.copy()
    second = kv.step(np.array([301]))
    assert kv._cache is not None
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, kept)
