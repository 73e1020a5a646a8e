"""The prefill's fused cross-attention (graph version 9) against the plain ops it replaces.

A call with at least ``FUSED_CROSS_MIN_ROWS`` queries per window and no alignment weights asked
for runs the cross-attention as onnxruntime's ``MultiHeadAttention``; ``fused_prefill = False``
feeds ``alignment`` on every call, which selects the plain ops of version 8. The two must give
the same logits, and whole transcriptions the same tokens.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from audiototext.evaluation import wer
from audiototext.inference import TranscribeOptions, Transcriber, WhisperModel
from audiototext.inference.whisper import CrossAttention, KVDecoder
from audiototext.models.graph_cross import FUSED_CROSS_MIN_ROWS
from inference.corpus import Clip
from support.speech import Speech

pytestmark = pytest.mark.slow

ATOL = 2e-3  # float32 sums in another order (as test_in_place_cache)


@pytest.fixture
def model(fp32_model: WhisperModel) -> Iterator[WhisperModel]:
    assert fp32_model.fused_prefill, "a version-9 decoder should offer the fused prefill"
    yield fp32_model
    fp32_model.fused_prefill = True


def _prompt(model: WhisperModel, extra: int) -> list[int]:
    tok = model.tokenizer
    return [tok.sot_prev, *range(400, 400 + extra), *tok.sot_sequence("en", "transcribe")]


def _alignment_rows(model: WhisperModel, cross: CrossAttention, prompt: list[int]) -> int:
    """Rows of the alignment weights one raw decoder call returns when none are asked for."""
    n = len(prompt)
    d = model.dims
    empty = np.zeros((1, d.decoder_heads, 0, model.head_dim), np.float32)
    feeds: dict[str, np.ndarray] = {
        "input_ids": np.asarray([prompt], dtype=np.int64),
        "position_ids": np.arange(n, dtype=np.int64)[None],
        "attention_mask": np.ones((1, n), dtype=np.int64),
        "logits_index": np.asarray([[n - 1]], dtype=np.int64),
    }
    for i in range(d.decoder_layers):
        feeds[f"past_k_{i}"] = feeds[f"past_v_{i}"] = empty
        feeds[f"cross_k_{i}"] = cross.keys[i].numpy()
        feeds[f"cross_v_{i}"] = cross.values[i].numpy()
    layer = model.metadata.alignment_layers[0]
    (weights,) = model.decoder.raw.run([f"cross_attention_{layer}"], feeds)
    return int(weights.shape[2])


def test_long_prompts_take_the_fused_kernel_and_short_ones_the_plain_ops(
    model: WhisperModel, windows: CrossAttention
) -> None:
    one = windows.take([0])
    assert _alignment_rows(model, one, _prompt(model, FUSED_CROSS_MIN_ROWS)) == 0
    short = _prompt(model, 10)
    assert _alignment_rows(model, one, short) == len(short)


def test_fused_prefill_gives_the_plain_logits_and_cache(
    model: WhisperModel, windows: CrossAttention
) -> None:
    pair = windows.take([0, 1])
    prompts = [_prompt(model, 120), _prompt(model, 70)]  # left padding on the second window
    results = []
    for fused in (True, False):
        model.fused_prefill = fused
        kv = KVDecoder(model, pair)
        logits, _ = kv.prefill(prompts, logits_for="all")
        steps = [np.array(kv.step(np.asarray([220 + k, 300 + k], np.int64))) for k in range(5)]
        results.append((logits, steps))
    (a, a_steps), (b, b_steps) = results
    for row, prompt in enumerate(prompts):  # padding positions' logits are meaningless
        pad = a.shape[1] - len(prompt)
        np.testing.assert_allclose(a[row, pad:], b[row, pad:], rtol=0, atol=ATOL)
    for k, (x, y) in enumerate(zip(a_steps, b_steps, strict=True)):
        np.testing.assert_allclose(x, y, rtol=0, atol=ATOL, err_msg=f"step {k}")


def test_alignment_weights_still_come_with_a_long_prompt(
    model: WhisperModel, windows: CrossAttention
) -> None:
    prompt = _prompt(model, 100)
    _, attention = model.forward_full(windows.take([0]), [prompt])[:2]
    heads = len(model.metadata.alignment_heads)
    assert attention.shape == (1, heads, len(prompt), windows.positions)
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-4)  # softmax rows


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("beam_size", [1, 5])
def test_transcripts_keep_their_tokens(
    precision: str,
    beam_size: int,
    fp32: Transcriber,
    int8: Transcriber,
    corpus: list[tuple[Clip, Speech]],
) -> None:
    """Clips of more than one window, so later windows are prompted with earlier text.

    fp32: the same tokens. int8: ONNX Runtime quantises a MatMul's input with one scale per
    call, so the two attention kernels' rounding can tip a near-tie (since the prefill feeds
    a prompt's first token apart, the rest's scale is finer, and a timestamp or a word flips
    in a few windows): the same segments nearly everywhere, and the text within a few words."""
    engine = fp32 if precision == "fp32" else int8
    long = [speech for clip, speech in corpus if speech.duration_s > 30]
    assert long, "the corpus should hold clips of more than one window"
    opts = TranscribeOptions(beam_size=beam_size)
    tokens: dict[bool, list[tuple[int, ...]]] = {}
    prompt_lengths: list[int] = []
    try:
        for fused in (True, False):
            engine.model.fused_prefill = fused
            tokens[fused] = [
                s.tokens for speech in long for s in engine.transcribe(speech.audio, opts)
            ]
    finally:
        engine.model.fused_prefill = True
    for speech in long:
        segments = list(engine.transcribe(speech.audio, opts))
        prompt_lengths.append(sum(len(s.tokens) for s in segments[:-1]))
    assert max(prompt_lengths) >= FUSED_CROSS_MIN_ROWS, "no window was prompted at length"
    if precision == "fp32":
        assert tokens[True] == tokens[False]
        return
    same = sum(a == b for a, b in zip(tokens[True], tokens[False], strict=False))
    assert same >= 0.8 * max(len(tokens[True]), len(tokens[False])), (same, len(tokens[True]))
    text = {k: engine.model.tokenizer.decode([t for s in v for t in s]) for k, v in tokens.items()}
    assert wer(text[False], text[True]) < 0.03, text
