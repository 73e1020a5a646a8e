"""Batched greedy decoding with a forced prefix, and the checks that keep noise out of text.

The inference package's :func:`~audiototext.inference.decoding.generate` decides whether to
emit timestamps from the prompt's last token, so it cannot continue from a forced text prefix.
Streaming needs exactly that: the words a stream has committed are fed to the decoder as given
text and the model only writes what comes after them. That keeps committed words unchanged by
construction and saves the decoding steps they would cost. This module therefore runs its own
greedy loop over :class:`~audiototext.inference.whisper.KVDecoder`, with Whisper's suppression
rules for text-only decoding.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from audiototext.audio import log_mel_spectrogram, pad_or_trim
from audiototext.audio.features import HOP_LENGTH_SAMPLES

# Whisper's thresholds, as in file transcription: a window counts as silence when the model says
# so and its text is improbable; text that compresses too well is a repetition loop.
from audiototext.inference.decoding import (
    COMPRESSION_RATIO_THRESHOLD,
    LOG_PROB_THRESHOLD,
    NO_SPEECH_THRESHOLD,
    compression_ratio,
    prefill_prompts,
)
from audiototext.inference.hallucinations import (
    HALLUCINATION_NO_SPEECH,
    STREAMING_HALLUCINATIONS,
)
from audiototext.inference.tokenizer import WhisperTokenizer
from audiototext.inference.whisper import CrossAttention, WhisperModel

__all__ = [
    "DecodingCancelled",
    "Hypothesis",
    "beam_decode",
    "collapse_repeats",
    "drop_leading_punctuation",
    "encoder_input",
    "greedy_decode",
    "is_noise",
    "max_new_tokens_for",
]

FloatArray = NDArray[np.float32]
_NEG_INF = np.float32(-np.inf)


class DecodingCancelled(Exception):
    """Raised between decoder steps when the caller's ``cancelled()`` turns true."""


def check_cancelled(cancelled: Callable[[], bool] | None) -> None:
    if cancelled is not None and cancelled():
        raise DecodingCancelled


@dataclass(frozen=True)
class Hypothesis:
    """One row's result: the forced prefix plus what the model wrote after it."""

    prefix_tokens: tuple[int, ...]
    new_tokens: tuple[int, ...]
    text: str  # prefix and new text, stripped
    prefix_text: str  # the prefix's text, stripped on the left; a prefix of ``text``
    avg_logprob: float  # over the new tokens and the end token, as Whisper
    no_speech_prob: float
    compression_ratio: float
    truncated: bool  # stopped by the token budget rather than by the end token


def encoder_input(
    audio: FloatArray, n_mels: int, frames: int | None, window_frames: int
) -> FloatArray:
    """Log-mel frames of ``audio`` for the encoder: an even count, padded to ``frames``.

    ``frames`` None means "exactly the audio" (rounded up to even); a larger value appends
    zero frames (Whisper's padding, as the file transcriber pads its 30-s windows).
    """
    # 160 samples of padding as Whisper and the file transcriber, so the last frame is whole.
    mel = log_mel_spectrogram(audio, n_mels, padding_samples=HOP_LENGTH_SAMPLES)
    content = min(mel.shape[1] - 1 if mel.shape[1] > 1 else mel.shape[1], window_frames)
    mel = mel[:, :content]
    target = frames if frames is not None else content + content % 2
    target = max(2, min(window_frames, target + target % 2))
    return np.asarray(pad_or_trim(mel, target), dtype=np.float32)


_SENTENCE = re.compile(r"[^.!?]+[.!?]*")


def collapse_repeats(text: str) -> str:
    """Drop a greedy decoder's repetition loop: repeated sentences and a trailing fragment.

    "A. B. B. B. B is" → "A. B." A sentence said twice in a row is far more often a loop of
    the decoder (it has no temperature fallback here) than speech; the cost of the rare real
    repetition is one lost sentence, the cost of a loop is a paragraph of invented text.
    """
    sentences = [m.group(0).strip() for m in _SENTENCE.finditer(text) if m.group(0).strip()]
    kept: list[str] = []
    for s in sentences:
        if kept and s.lower() == kept[-1].lower():
            continue
        kept.append(s)
    if (
        len(kept) >= 2
        and kept[-1][-1:] not in ".!?"
        and kept[-2].lower().startswith(kept[-1].lower())
    ):
        kept.pop()
    return " ".join(kept) if len(kept) < len(sentences) else text


_LEADING_PUNCTUATION = re.compile(r"^[\s.,;:!?]+(?=\w)")


def drop_leading_punctuation(text: str) -> str:
    """A final decoded after the previous utterance's text may open by closing that text's
    sentence (". The weather..."); the mark belongs to the previous final, not this one."""
    return _LEADING_PUNCTUATION.sub("", text)


def max_new_tokens_for(duration_s: float) -> int:
    """A token budget for ``duration_s`` of speech: generous, yet stops repetition loops.

    Fast read speech is about 3 words (4-5 tokens) a second; twice that plus a margin never
    cuts real speech short.
    """
    return int(12 + 10 * duration_s)


def fit_context(
    model: WhisperModel,
    prompts: Sequence[Sequence[int]],
    prefixes: Sequence[Sequence[int]],
    budgets: Sequence[int],
) -> tuple[list[list[int]], list[int]]:
    """Each row's prompt and budget within the decoder's context (``max_text_tokens``): a text
    prompt's oldest tokens (``<|startofprev|>`` context) give way first, then the budget."""
    tok = model.tokenizer
    limit = model.max_text_tokens
    out_prompts: list[list[int]] = []
    out_budgets: list[int] = []
    for prompt, prefix, budget in zip(prompts, prefixes, budgets, strict=True):
        row = list(prompt)
        over = len(row) + len(prefix) + budget - limit
        if over > 0 and row and row[0] == tok.sot_prev and tok.sot in row:
            sot_at = row.index(tok.sot)
            context = row[1:sot_at][over:]
            row = ([tok.sot_prev, *context] if context else []) + row[sot_at:]
        out_prompts.append(row)
        out_budgets.append(max(1, min(budget, limit - len(row) - len(prefix))))
    return out_prompts, out_budgets


def _log_softmax(x: FloatArray) -> FloatArray:
    m = x.max(axis=-1, keepdims=True)
    shifted = x - m
    lse = np.log(np.exp(shifted).sum(axis=-1, keepdims=True, dtype=np.float32))
    return np.asarray(shifted - lse, dtype=np.float32)


def greedy_decode(
    model: WhisperModel,
    cross: CrossAttention,
    prompts: Sequence[Sequence[int]],
    prefixes: Sequence[Sequence[int]],
    budgets: Sequence[int],
    cancelled: Callable[[], bool] | None = None,
    *,
    speech_after_prefix: bool = False,
) -> list[Hypothesis]:
    """Greedy text-only decoding of each row of ``cross``.

    Args:
        prompts: per row, the start sequence ending with ``<|notimestamps|>`` (optionally
            preceded by ``<|startofprev|>`` and context text).
        prefixes: per row, text tokens forced after the prompt (may be empty).
        budgets: per row, the most new tokens to generate.
        cancelled: checked before every decoder step; :class:`DecodingCancelled` when true.
        speech_after_prefix: the audio after each prefix holds speech (a final's utterance):
            its first new token may not be blank, as at a transcript's start, and the text may
            not end before it holds a letter or digit. Without it greedy decoding often ended
            at once, or after a lone ".", when the voice changed after the prefix (espeak
            en-us → en-us+f3: 14 of 80 pairs; the card hands → a LibriVox reader).
    """
    rows = len(prompts)
    if not rows == len(prefixes) == len(budgets) == cross.batch:
        raise ValueError("prompts, prefixes, budgets and the encoder batch must match")
    tok = model.tokenizer
    suppress = np.asarray(sorted(set(tok.default_suppress_tokens()) | {tok.no_timestamps}))
    begin = np.asarray(tok.metadata.begin_suppress_tokens, dtype=np.int64)
    prompts, budgets = fit_context(model, prompts, prefixes, budgets)
    full = [[*p, *f] for p, f in zip(prompts, prefixes, strict=True)]
    kv, logits, no_speech = prefill_prompts(model, cross, full)

    generated: list[list[int]] = [[] for _ in range(rows)]
    # Rows whose text may not end yet: speech follows their prefix and no word came out.
    wordless = set(range(rows)) if speech_after_prefix else set()
    sum_logprob = [0.0] * rows
    truncated = [False] * rows
    alive = list(range(rows))
    step = 0
    while alive:
        check_cancelled(cancelled)
        logits[:, suppress] = _NEG_INF
        # Timestamps are never wanted in text-only decoding.
        logits[:, tok.timestamp_begin :] = _NEG_INF
        for i, row in enumerate(alive):
            if not generated[row] and begin.size and (speech_after_prefix or not prefixes[row]):
                logits[i, begin] = _NEG_INF
            if row in wordless:
                logits[i, tok.eot] = _NEG_INF
        logprobs = _log_softmax(logits)
        chosen = np.argmax(logprobs, axis=-1)
        keep: list[int] = []
        for i, row in enumerate(alive):
            token = int(chosen[i])
            sum_logprob[row] += float(logprobs[i, token])
            if token == tok.eot:
                continue
            generated[row].append(token)
            if row in wordless and _has_word(tok, [token]):
                wordless.discard(row)
            if len(generated[row]) >= budgets[row]:
                truncated[row] = True
                continue
            keep.append(i)
        step += 1
        if not keep:
            break
        if len(keep) != len(alive):
            kv.select(keep)
        alive = [alive[i] for i in keep]
        logits = np.array(kv.step(chosen[keep]), dtype=np.float32)

    out: list[Hypothesis] = []
    for row in range(rows):
        prefix_text = tok.decode(prefixes[row]).lstrip()
        new_text = tok.decode(generated[row])
        text = (prefix_text + new_text).strip() if prefix_text else new_text.strip()
        if not text.startswith(prefix_text):  # decode of the whole can merge bytes at the seam
            text = prefix_text
        out.append(
            Hypothesis(
                prefix_tokens=tuple(prefixes[row]),
                new_tokens=tuple(generated[row]),
                text=text,
                prefix_text=prefix_text,
                avg_logprob=sum_logprob[row] / (len(generated[row]) + 1),
                no_speech_prob=no_speech[row],
                compression_ratio=compression_ratio(new_text.strip()),
                truncated=truncated[row],
            )
        )
    return out


def is_noise(text: str, avg_logprob: float, no_speech_prob: float, ratio: float) -> bool:
    """Whether decoded ``text`` should be dropped as silence, noise or a stock hallucination.

    The tests file transcription applies: Whisper's no-speech rule (the model thinks nothing
    was said and its text is improbable), a repetition loop, and a stock phrase standing alone
    in audio the model was not sure held speech.
    """
    improbable = not math.isfinite(avg_logprob) or avg_logprob < LOG_PROB_THRESHOLD
    if no_speech_prob > NO_SPEECH_THRESHOLD and improbable:
        return True
    if ratio > COMPRESSION_RATIO_THRESHOLD:
        return True
    normalised = " ".join(text.split()).lower()
    if normalised in STREAMING_HALLUCINATIONS and no_speech_prob > HALLUCINATION_NO_SPEECH:
        return True
    # Text made only of punctuation carries no words.
    return not any(ch.isalnum() for ch in text)


def _has_word(tok: WhisperTokenizer, tokens: Sequence[int]) -> bool:
    """Whether ``tokens`` hold a letter or digit."""
    return any(c.isalnum() for c in tok.decode(list(tokens)))


def beam_decode(
    model: WhisperModel,
    cross: CrossAttention,
    prompts: Sequence[Sequence[int]],
    prefixes: Sequence[Sequence[int]],
    budgets: Sequence[int],
    beam_size: int,
    cancelled: Callable[[], bool] | None = None,
    *,
    speech_after_prefix: bool = False,
) -> list[Hypothesis]:
    """Text-only beam search after a forced prefix, one search per row of ``cross``.

    As the inference package's beam search (CTranslate2's): each step ranks 2 x beam
    candidates of a row's beams, ended candidates join the finished list, the best
    ``beam_size`` that go on become the next beams; a row stops when ``beam_size`` hypotheses
    have ended or its budget is spent. The best hypothesis by summed log-probability over
    length wins. Same suppression rules as :func:`greedy_decode` (and its ``cancelled`` and
    ``speech_after_prefix``: a beam may not end before it holds a word).
    """
    rows = len(prompts)
    if not rows == len(prefixes) == len(budgets) == cross.batch:
        raise ValueError("prompts, prefixes, budgets and the encoder batch must match")
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    tok = model.tokenizer
    suppress = np.asarray(sorted(set(tok.default_suppress_tokens()) | {tok.no_timestamps}))
    begin = np.asarray(tok.metadata.begin_suppress_tokens, dtype=np.int64)
    prompts, budgets = fit_context(model, prompts, prefixes, budgets)
    full = [[*p, *f] for p, f in zip(prompts, prefixes, strict=True)]
    kv, logits, no_speech = prefill_prompts(model, cross, full)
    vocab = logits.shape[1]

    beams: list[list[tuple[list[int], float]]] = [[([], 0.0)] for _ in range(rows)]
    finished: list[list[tuple[list[int], float]]] = [[] for _ in range(rows)]
    cut: list[list[tuple[list[int], float]]] = [[] for _ in range(rows)]  # budget spent
    live = list(range(rows))
    step = 0
    while live:
        check_cancelled(cancelled)
        logits[:, suppress] = _NEG_INF
        logits[:, tok.timestamp_begin :] = _NEG_INF
        if step == 0 and begin.size:
            for i, row in enumerate(live):
                if speech_after_prefix or not prefixes[row]:
                    logits[i, begin] = _NEG_INF
        if speech_after_prefix:
            # Rows of ``logits`` are the live rows' beams, in order.
            flat_beams = [tokens for row in live for tokens, _ in beams[row]]
            for i, tokens in enumerate(flat_beams):
                if not _has_word(tok, tokens):
                    logits[i, tok.eot] = _NEG_INF
        logprobs = _log_softmax(logits)
        next_rows: list[int] = []
        next_tokens: list[int] = []
        next_live: list[int] = []
        r0 = 0
        for row in live:
            group = beams[row]
            g = len(group)
            scores = np.asarray([s for _, s in group], dtype=np.float32)[:, None]
            flat = (scores + logprobs[r0 : r0 + g]).reshape(-1)
            k = min(2 * beam_size, flat.size)
            top = np.argpartition(-flat, k - 1)[:k]
            top = top[np.argsort(-flat[top], kind="stable")]
            new: list[tuple[list[int], float]] = []
            origins: list[int] = []
            for cand in top.tolist():
                origin, token = divmod(int(cand), vocab)
                tokens = group[origin][0]
                score = float(flat[cand])
                if not np.isfinite(score):
                    break
                if token == tok.eot:
                    finished[row].append((tokens, score))
                else:
                    new.append(([*tokens, token], score))
                    origins.append(r0 + origin)
                if len(new) == beam_size:
                    break
            r0 += g
            if step + 1 >= budgets[row] and new:
                cut[row] = new
                continue
            if len(finished[row]) >= beam_size or not new:
                continue
            beams[row] = new
            next_live.append(row)
            next_rows.extend(origins)
            next_tokens.extend(t[-1] for t, _ in new)
        step += 1
        if not next_live:
            break
        kv.select(next_rows)
        live = next_live
        logits = np.array(kv.step(np.asarray(next_tokens, dtype=np.int64)), dtype=np.float32)

    out: list[Hypothesis] = []
    for row in range(rows):
        candidates = [*finished[row], *cut[row]] or beams[row]
        best, total = max(candidates, key=lambda c: c[1] / len(c[0]) if c[0] else -math.inf)
        truncated = any(best is c[0] for c in cut[row])
        prefix_text = tok.decode(prefixes[row]).lstrip()
        new_text = tok.decode(best)
        text = (prefix_text + new_text).strip() if prefix_text else new_text.strip()
        if not text.startswith(prefix_text):
            text = prefix_text
        out.append(
            Hypothesis(
                prefix_tokens=tuple(prefixes[row]),
                new_tokens=tuple(best),
                text=text,
                prefix_text=prefix_text,
                avg_logprob=total / (len(best) + 1),
                no_speech_prob=no_speech[row],
                compression_ratio=compression_ratio(new_text.strip()),
                truncated=truncated,
            )
        )
    return out
