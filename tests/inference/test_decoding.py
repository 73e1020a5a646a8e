"""The search machinery on real tiny.en: cache reordering, grouped windows, beam bookkeeping.

The beam search ranks every row's vocabulary at once and walks only each window's best
candidates; :func:`reference_beam_search` below is the straightforward per-window form of the
same CTranslate2 rules (all of a window's ``beams × vocabulary`` scores ranked together, every
rule applied row by row). On the same decoder both must pick the same tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from audiototext.audio import log_mel_spectrogram, pad_or_trim
from audiototext.inference import WhisperModel
from audiototext.inference.decoding import (
    DecodingOptions,
    _max_new_tokens,
    _Rules,
    generate,
    prefill_prompts,
)
from audiototext.inference.whisper import CrossAttention, KVDecoder
from inference.corpus import WINDOW_SENTENCES
from support.speech import SpeechSynthesizer

pytestmark = pytest.mark.slow


def _prompt(model: WhisperModel, timestamps: bool) -> list[int]:
    tok = model.tokenizer
    prompt = list(tok.sot_sequence("en", "transcribe"))
    return prompt if timestamps else [*prompt, tok.no_timestamps]


def _alone(
    model: WhisperModel, cross: CrossAttention, window: int, tokens: Sequence[int]
) -> NDArray[np.float32]:
    """Next-token logits of one row decoded on its own (batch 1, its window only)."""
    kv = KVDecoder(model, cross.take([window]))
    logits, _ = kv.prefill([tokens])
    last: NDArray[np.float32] = logits[0, -1]
    return last


def test_reordered_cache_keeps_each_row_on_its_own_window(
    fp32_model: WhisperModel, windows: CrossAttention
) -> None:
    model = fp32_model
    prompt = _prompt(model, timestamps=False)
    kv, logits, _ = prefill_prompts(model, windows, [prompt] * 3)
    history = [list(prompt) for _ in range(3)]
    window_of = [0, 1, 2]
    # Beams of each window (grouped: the encoder output stays one row per window), a
    # reordering inside the groups, a finished window dropped, then uneven rows.
    for rows in ([0, 0, 1, 1, 2, 2], [1, 0, 2, 2, 5, 4], [2, 3, 4, 5], [0, 0, 2]):
        tokens = np.asarray([int(np.argsort(logits[r])[-1 - (i % 2)]) for i, r in enumerate(rows)])
        kv.select(rows)
        history = [[*history[r], int(t)] for r, t in zip(rows, tokens, strict=True)]
        window_of = [window_of[r] for r in rows]
        logits = kv.step(tokens)
        assert kv.batch == len(rows)
        assert kv.cross.batch * kv.group == kv.batch
        for row, (seq, w) in enumerate(zip(history, window_of, strict=True)):
            np.testing.assert_allclose(
                logits[row], _alone(model, windows, w, seq), rtol=0, atol=2e-3, err_msg=str(rows)
            )
    # The grouped steps really kept one encoder row per window.
    assert windows.batch == 3


def test_select_refuses_rows_outside_the_batch(
    fp32_model: WhisperModel, windows: CrossAttention
) -> None:
    kv, _, _ = prefill_prompts(fp32_model, windows, [_prompt(fp32_model, False)] * 3)
    with pytest.raises(ValueError, match="rows"):
        kv.select([0, 3])
    with pytest.raises(ValueError, match="rows"):
        kv.select([])


# --------------------------------------------------------------------------- reference search


def _reference_rules(
    rules: _Rules, logits: np.ndarray, seqs: Sequence[Sequence[int]], step: int
) -> None:
    """Whisper's rules applied row by row (the engine's previous, unvectorised form)."""
    logits[:, rules.suppress] = -np.inf
    if step == 0:
        logits[:, rules.begin] = -np.inf
    if not rules.timestamps:
        return
    tb = rules.ts_begin
    logits[:, rules.no_ts] = -np.inf
    for row, seq in enumerate(seqs):
        x = logits[row]
        if step == 0:
            x[:tb] = -np.inf
            x[rules.max_initial + 1 :] = -np.inf
            continue
        if seq[-1] >= tb:
            if (seq[-2] if len(seq) >= 2 else seq[-1]) >= tb:
                x[tb:] = -np.inf
                continue
            x[: rules.eot] = -np.inf
        for t in reversed(seq):
            if t >= tb:
                x[tb : t if seq[-1] >= tb else t + 1] = -np.inf
                break
        shifted = x - x.max()
        logprobs = shifted - np.log(np.exp(shifted).sum(dtype=np.float32))
        ts = logprobs[tb:]
        m = float(ts.max())
        mass = m + math.log(float(np.exp(ts - m).sum(dtype=np.float64))) if np.isfinite(m) else m
        if mass > logprobs[:tb].max():
            x[:tb] = -np.inf


def reference_beam_search(
    model: WhisperModel, cross: CrossAttention, prompts: list[list[int]], opts: DecodingOptions
) -> list[tuple[list[int], float]]:
    """CTranslate2's beam search, one window at a time over its whole ``beams × vocab``."""
    tok = model.tokenizer
    rules = _Rules(tok, opts, model.dims.n_vocab, prompts[0][-1] != tok.no_timestamps)
    beam = opts.beam_size
    kv, logits, _ = prefill_prompts(model, cross, prompts)
    limits = [_max_new_tokens(model, len(p), opts) for p in prompts]
    finished: list[list[tuple[list[int], float]]] = [[] for _ in prompts]
    beams: dict[int, list[tuple[list[int], float]]] = {w: [([], 0.0)] for w in range(len(prompts))}
    live = list(beams)
    step = 0
    while live:
        _reference_rules(rules, logits, [seq for w in live for seq, _ in beams[w]], step)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        logprobs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True, dtype=np.float32))
        rows, tokens, next_live, r0 = [], [], [], 0
        for w in live:
            group = beams[w]
            scores = (
                np.array([s for _, s in group], np.float32)[:, None]
                + logprobs[r0 : r0 + len(group)]
            )
            flat = scores.reshape(-1)
            order = np.argsort(-flat, kind="stable")[: 2 * beam]
            last = step + 1 >= limits[w]
            new, origins, picked, secondary = [], [], [], beam
            for j in range(beam):
                origin, token = divmod(int(order[j]), logits.shape[1])
                score = float(flat[order[j]])
                if token == tok.eot or last:
                    seq = group[origin][0] + ([] if token == tok.eot else [token])
                    finished[w].append((seq, score))
                    while secondary < len(order):
                        alt = int(order[secondary])
                        secondary += 1
                        if alt % logits.shape[1] != tok.eot:
                            origin, token = divmod(alt, logits.shape[1])
                            score = float(flat[alt])
                            break
                    else:
                        continue
                new.append((group[origin][0] + [token], score))
                origins.append(r0 + origin)
                picked.append(token)
            r0 += len(group)
            if last or len(finished[w]) >= beam or not new:
                continue
            beams[w] = new
            next_live.append(w)
            rows.extend(origins)
            tokens.extend(picked)
        step += 1
        if not next_live:
            break
        kv.select(rows)
        live = next_live
        logits = np.array(kv.step(np.asarray(tokens)), dtype=np.float32)
    out = []
    for w in range(len(prompts)):
        cands = finished[w] or beams[w]
        out.append(max(cands, key=lambda c: c[1] / len(c[0]) if c[0] else -math.inf))
    return out


@pytest.mark.parametrize("timestamps", [True, False])
def test_beam_search_picks_what_the_per_window_reference_picks(
    fp32_model: WhisperModel, windows: CrossAttention, timestamps: bool
) -> None:
    model = fp32_model
    opts = DecodingOptions(
        beam_size=5,
        suppress_tokens=model.tokenizer.default_suppress_tokens(),
        without_timestamps=not timestamps,
    )
    prompts = [_prompt(model, timestamps)] * windows.batch
    hyps, _ = generate(model, windows, prompts, opts, 0.0)
    expected = reference_beam_search(model, windows, prompts, opts)
    for hyp, (tokens, score) in zip(hyps, expected, strict=True):
        assert hyp.tokens == tokens, model.tokenizer.decode(tokens)
        assert hyp.sum_logprob == pytest.approx(score, abs=1e-4)
    texts = [model.tokenizer.decode([t for t in h.tokens if t < model.tokenizer.eot]) for h in hyps]
    assert all(t.strip() for t in texts), texts


def test_encode_each_gives_each_window_what_it_gets_alone(
    int8_model: WhisperModel, synth: SpeechSynthesizer
) -> None:
    # int8 activations are quantised per tensor: a batch encoded at once would share scales.
    mels = np.stack(
        [
            log_mel_spectrogram(pad_or_trim(synth.speak(s).audio), n_mels=int8_model.n_mels)
            for s in WINDOW_SENTENCES[:2]
        ]
    ).astype(np.float32)
    both = int8_model.encode_each(mels)
    assert both.batch == 2
    for row in range(2):
        alone = int8_model.encode(mels[row : row + 1])
        for got, want in zip(both.keys + both.values, alone.keys + alone.values, strict=True):
            np.testing.assert_array_equal(got.numpy()[row], want.numpy()[0])


def test_rules_mask_what_the_row_by_row_reference_masks(fp32_model: WhisperModel) -> None:
    # Rows in every timestamp state at once, so that the forced-timestamp test runs over all
    # rows (a view of the logits) and over some of them (a copy of those rows).
    tok = fp32_model.tokenizer
    tb = tok.timestamp_begin
    rules = _Rules(tok, DecodingOptions(), fp32_model.dims.n_vocab, timestamps=True)
    rng = np.random.default_rng(3)
    text = [int(t) for t in rng.integers(200, 2000, 6)]
    states = {
        "text": [tb + 4, *text],
        "lone timestamp": [tb + 4, *text, tb + 30],
        "closed pair": [tb + 4, *text, tb + 30, tb + 30],
    }
    forced: set[bool] = set()
    for names in (["text", "lone timestamp"], ["text", "closed pair", "lone timestamp"]):
        seqs = [states[n] for n in names]
        for trial in range(40):
            logits = rng.standard_normal((len(seqs), fp32_model.dims.n_vocab)).astype(np.float32)
            logits[:, tb:] += np.float32(trial % 8 - 4)  # timestamps forced in some trials
            got, want = logits.copy(), logits.copy()
            rules.mask(got, seqs, step=3)
            _reference_rules(rules, want, seqs, step=3)
            np.testing.assert_array_equal(got, want, err_msg=f"{names} trial {trial}")
            forced.update(bool(np.isneginf(row[:tb]).all()) for row in got)
    assert forced == {True, False}  # both outcomes of the forced-timestamp test were seen


def test_a_segment_never_closes_at_the_time_it_opened(fp32_model: WhisperModel) -> None:
    # Whisper's and CTranslate2's rule: after text, the closing timestamp is later than the
    # opening one. A zero-length segment is dropped from the output, so allowing one let a
    # window "read" text that is then thrown away (bench/NOTES.md, beamwer). Only a lone
    # closing timestamp may be repeated: that repeat opens the next segment.
    tok = fp32_model.tokenizer
    tb = tok.timestamp_begin
    n = fp32_model.dims.n_vocab
    rules = _Rules(tok, DecodingOptions(), n, timestamps=True)
    text = [400, 500]
    after_text = [[tb + 4, *text], [tb + 4, *text, tb + 30, tb + 30, 600]]
    logits = np.zeros((2, n), dtype=np.float32)
    rules.mask(logits, after_text, step=5)
    assert np.isneginf(logits[0, tb : tb + 5]).all() and np.isfinite(logits[0, tb + 5 :]).all()
    assert np.isneginf(logits[1, tb : tb + 31]).all() and np.isfinite(logits[1, tb + 31 :]).all()
    lone = np.zeros((1, n), dtype=np.float32)
    rules.mask(lone, [[tb + 4, *text, tb + 30]], step=4)
    assert np.isneginf(lone[0, tb : tb + 30]).all() and np.isfinite(lone[0, tb + 30 :]).all()
