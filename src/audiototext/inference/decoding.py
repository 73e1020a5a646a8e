"""Token search for Whisper: greedy, sampling and beam search, Whisper's logit rules, fallback.

The rules are OpenAI Whisper's, in the exact form CTranslate2 (and so faster-whisper) applies
them, because the engine is tested token for token against faster-whisper:

* ``suppress_tokens`` are never generated; with ``suppress_blank`` a blank (``" "``) or an
  immediate end of text is forbidden at the first step.
* With timestamps, ``<|notimestamps|>`` is forbidden; the first token is a timestamp no later
  than ``max_initial_timestamp_s``; timestamps come in pairs (after a lone timestamp only
  text or end, after a pair only a timestamp or end... see :meth:`_Rules.apply`), never go
  backwards, never close a segment at the time it opened (no zero-length segment), and a
  timestamp is forced whenever the total probability of all timestamps beats that of the most
  likely text token.
* The no-speech probability is the softmax of the raw logits at ``<|startoftranscript|>``.
* A hypothesis' score is its summed log-probability (computed after the rules) divided by
  ``length ** length_penalty``; the average log-probability divides the sum by length + 1
  (the end token counts).

:func:`decode_with_fallback` retries a window at increasing temperatures when its text is too
repetitive (gzip compression ratio) or too improbable (average log-probability), as Whisper does.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from audiototext.inference.helper_graphs import top_k_session
from audiototext.inference.tokenizer import TIME_PRECISION_S, WhisperTokenizer
from audiototext.inference.whisper import CrossAttention, KVDecoder, WhisperModel

__all__ = [
    "COMPRESSION_RATIO_THRESHOLD",
    "LOG_PROB_THRESHOLD",
    "NO_SPEECH_THRESHOLD",
    "TEMPERATURES",
    "DecodeResult",
    "DecodingOptions",
    "StepObserver",
    "compression_ratio",
    "decode_with_fallback",
    "generate",
    "prefill_prompts",
]

FloatArray = NDArray[np.float32]
IntArray = NDArray[np.int64]
# Called as observer(row, step, logits_after_rules) during search: lets tests check near-ties.
StepObserver = Callable[[int, int, FloatArray], None]
_NEG_INF = np.float32(-np.inf)

# Whisper's defaults, for files and streams alike: a window is silence when its no-speech
# probability is above NO_SPEECH_THRESHOLD and its text improbable (average log-probability
# below LOG_PROB_THRESHOLD); text whose gzip ratio is above COMPRESSION_RATIO_THRESHOLD is a
# repetition loop. A window that fails a test is decoded again at the next temperature.
NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0
COMPRESSION_RATIO_THRESHOLD = 2.4
TEMPERATURES: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def compression_ratio(text: str) -> float:
    """gzip ratio of ``text``: above :data:`COMPRESSION_RATIO_THRESHOLD` Whisper's output is
    stuck repeating itself."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@dataclass(frozen=True)
class DecodingOptions:
    """How one window is decoded (fields as in ``TranscribeOptions``)."""

    beam_size: int = 5
    best_of: int = 5
    patience: float = 1.0
    length_penalty: float = 1.0
    temperatures: tuple[float, ...] = TEMPERATURES
    compression_ratio_threshold: float | None = COMPRESSION_RATIO_THRESHOLD
    log_prob_threshold: float | None = LOG_PROB_THRESHOLD
    no_speech_threshold: float | None = NO_SPEECH_THRESHOLD
    suppress_blank: bool = True
    suppress_tokens: tuple[int, ...] = ()
    without_timestamps: bool = False
    max_initial_timestamp_s: float = 1.0
    max_new_tokens: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")
        if self.best_of < 1:
            raise ValueError(f"best_of must be >= 1, got {self.best_of}")
        if not self.patience > 0:
            raise ValueError(f"patience must be > 0, got {self.patience}")
        if not self.temperatures or any(not (0.0 <= t <= 10.0) for t in self.temperatures):
            raise ValueError(
                f"temperatures must be a non-empty list in [0, 10], got {self.temperatures}"
            )
        if self.max_initial_timestamp_s < 0:
            raise ValueError(
                f"max_initial_timestamp_s must be >= 0, got {self.max_initial_timestamp_s}"
            )
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class DecodeResult:
    """The chosen hypothesis for one window."""

    tokens: tuple[int, ...]  # generated tokens, end token excluded
    sum_logprob: float
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float
    text: str


@dataclass
class _Hyp:
    tokens: list[int] = field(default_factory=list)
    sum_logprob: float = 0.0
    done: bool = False

    def score(self, length_penalty: float) -> float:
        n = len(self.tokens)
        if n == 0:  # as CTranslate2: an empty hypothesis never wins on score
            return -math.inf
        return float(self.sum_logprob / (n**length_penalty))


class _Rules:
    """Whisper's logit rules for one batch; ``apply`` edits logits in place."""

    def __init__(
        self, tok: WhisperTokenizer, opts: DecodingOptions, n_vocab: int, timestamps: bool
    ) -> None:
        self.suppress = np.asarray(sorted(set(opts.suppress_tokens)), dtype=np.int64)
        self.begin = np.asarray(
            tok.metadata.begin_suppress_tokens if opts.suppress_blank else (), dtype=np.int64
        )
        self.timestamps = timestamps
        self.eot = tok.eot
        self.no_ts = tok.no_timestamps
        self.ts_begin = tok.timestamp_begin
        self.max_initial = tok.timestamp_begin + round(
            opts.max_initial_timestamp_s / TIME_PRECISION_S
        )
        self.n_vocab = n_vocab

    def apply(self, logits: FloatArray, seqs: Sequence[Sequence[int]], step: int) -> FloatArray:
        """Edit ``logits`` [rows, vocab] in place; return their log-softmax (after the rules)."""
        self.mask(logits, seqs, step)
        return _log_softmax(logits)

    def mask(self, logits: FloatArray, seqs: Sequence[Sequence[int]], step: int) -> None:
        """Edit ``logits`` [rows, vocab] in place: what the rules forbid becomes -inf."""
        if self.suppress.size:
            logits[:, self.suppress] = _NEG_INF
        if step == 0 and self.begin.size:
            logits[:, self.begin] = _NEG_INF
        if not self.timestamps:
            return
        tb = self.ts_begin
        logits[:, self.no_ts] = _NEG_INF
        check: list[int] = []
        for row, seq in enumerate(seqs):
            x = logits[row]
            if step == 0:
                x[:tb] = _NEG_INF
                x[self.max_initial + 1 :] = _NEG_INF
                continue
            last = seq[-1]
            if last >= tb:
                penultimate = seq[-2] if len(seq) >= 2 else last
                if penultimate >= tb:
                    x[tb:] = _NEG_INF  # a pair is closed: text (or the end) must follow
                else:
                    x[: self.eot] = _NEG_INF  # a lone timestamp: another one, or the end
                    check.append(row)
            else:
                check.append(row)
            for t in reversed(seq):
                if t >= tb:
                    # Timestamps never go backwards, and after text the segment's end must be
                    # later than its start (Whisper, CTranslate2): a zero-length segment is
                    # dropped, so the model could go on reading the prompt (bench/NOTES.md,
                    # beamwer). Only a lone timestamp may be repeated, to open the next pair.
                    x[tb : t if last >= tb else t + 1] = _NEG_INF
                    break
        if check:
            # A timestamp is forced where all timestamps together beat the best text token.
            # Whisper compares log-probabilities; both sides differ from the logits by the same
            # row constant, so the logits are compared and the log-softmax is taken once.
            rows = np.asarray(check, dtype=np.int64)
            # Every row (greedy's one row, most beam steps): a view, not a copy of the logits.
            x = logits if len(check) == len(logits) else logits[rows]
            forced = rows[_logsumexp_rows(x[:, tb:]) > x[:, :tb].max(axis=-1)]
            if forced.size:
                logits[forced, :tb] = _NEG_INF


def _logsumexp_rows(x: FloatArray) -> NDArray[np.float64]:
    """logsumexp of each row of ``x``: float32 exponentials summed in float64."""
    m = x.max(axis=-1, keepdims=True)
    finite = np.isfinite(m)
    shifted = x - np.where(finite, m, np.float32(0))
    total = np.exp(shifted, dtype=np.float32).sum(axis=-1, dtype=np.float64)
    with np.errstate(divide="ignore"):
        lse = np.where(finite[:, 0], m[:, 0] + np.log(total), m[:, 0])
    return np.asarray(lse, dtype=np.float64)


def _log_softmax(x: FloatArray) -> FloatArray:
    """log-softmax along the last axis, in float32 like the reference."""
    m = x.max(axis=-1, keepdims=True)
    shifted = x - m
    lse = np.log(np.exp(shifted).sum(axis=-1, keepdims=True, dtype=np.float32))
    return np.asarray(shifted - lse, dtype=np.float32)


def _top_k(x: FloatArray, k: int) -> tuple[FloatArray, IntArray]:
    """The ``k`` largest values of each row of ``x`` and their indices, largest first (ties:
    lower index first). One ONNX Runtime TopK (a shipped graph, no ``onnx`` import): numpy's
    ``argpartition`` over beam-search rows of a 50k vocabulary cost more than the decoder step
    itself (bench/NOTES.md, first table)."""
    values, indices = top_k_session().run(
        None, {"x": np.ascontiguousarray(x, dtype=np.float32), "k": np.array([k], np.int64)}
    )
    return np.asarray(values, dtype=np.float32), np.asarray(indices, dtype=np.int64)


def _top_k_log_softmax(x: FloatArray, k: int) -> tuple[FloatArray, IntArray]:
    """:func:`_top_k` of ``_log_softmax(x)``, with the same float32 arithmetic for the values
    it returns, without computing the log-softmax of the whole vocabulary (the ranking is the
    logits' ranking: the log-softmax only subtracts a constant from each row)."""
    m = x.max(axis=-1, keepdims=True)
    shifted = x - m
    np.exp(shifted, out=shifted)
    lse = np.log(shifted.sum(axis=-1, keepdims=True, dtype=np.float32))
    values, indices = _top_k(x, k)
    return np.asarray((values - m) - lse, dtype=np.float32), indices


def _max_new_tokens(model: WhisperModel, prompt_len: int, opts: DecodingOptions) -> int:
    # CTranslate2's budget: half the text context, and never past its end.
    total = (
        model.max_text_tokens if opts.max_new_tokens is None else prompt_len + opts.max_new_tokens
    )
    total = min(total, model.max_text_tokens)
    return max(1, min(total // 2, total - (prompt_len - 1)))


def prefill_prompts(
    model: WhisperModel, cross: CrossAttention, prompts: Sequence[Sequence[int]]
) -> tuple[KVDecoder, FloatArray, list[float]]:
    """Start decoding: a cache primed with each row's prompt, the next-token logits
    ``[rows, vocab]`` and each row's no-speech probability (from its start-of-transcript)."""
    kv = KVDecoder(model, cross)
    logits_all, _ = kv.prefill(prompts)
    no_speech = _no_speech_probs(model.tokenizer, logits_all[:, 0])
    return kv, np.array(logits_all[:, -1], dtype=np.float32), no_speech


def _no_speech_probs(tok: WhisperTokenizer, sot_logits: FloatArray) -> list[float]:
    """No-speech probability of each row from its logits at the start-of-transcript token."""
    return [
        float(np.exp(_log_softmax(row.astype(np.float32))[tok.no_speech])) for row in sot_logits
    ]


def generate(
    model: WhisperModel,
    cross: CrossAttention,
    prompts: Sequence[Sequence[int]],
    opts: DecodingOptions,
    temperature: float,
    *,
    rng: np.random.Generator | None = None,
    observer: StepObserver | None = None,
) -> tuple[list[_Hyp], list[float]]:
    """Search each row of ``cross`` from its prompt; best hypothesis and no-speech prob per row."""
    tok = model.tokenizer
    timestamps = prompts[0][-1] != tok.no_timestamps if prompts else True
    rules = _Rules(tok, opts, model.dims.n_vocab, timestamps)
    if temperature == 0 and opts.beam_size > 1:
        return _beam_search(model, cross, prompts, opts, rules, observer)
    n = opts.best_of if temperature > 0 else 1
    return _independent_search(
        model,
        cross,
        prompts,
        opts,
        rules,
        temperature,
        n,
        rng or np.random.default_rng(opts.seed),
        observer,
    )


def _independent_search(
    model: WhisperModel,
    cross: CrossAttention,
    prompts: Sequence[Sequence[int]],
    opts: DecodingOptions,
    rules: _Rules,
    temperature: float,
    n: int,
    rng: np.random.Generator,
    observer: StepObserver | None,
) -> tuple[list[_Hyp], list[float]]:
    """Greedy (temperature 0) or sampling of ``n`` sequences per window, finished rows dropped."""
    tok = model.tokenizer
    kv, logits, no_speech = prefill_prompts(model, cross, prompts)
    windows = len(prompts)
    limits = [_max_new_tokens(model, len(p), opts) for p in prompts]
    if n > 1:
        rows = [w for w in range(windows) for _ in range(n)]
        kv.select(rows)
        logits = logits[rows]
    else:
        rows = list(range(windows))
    hyps = [_Hyp() for _ in rows]
    alive = list(range(len(rows)))  # hypothesis index of each live batch row
    step = 0
    while alive:
        logprobs = rules.apply(logits, [hyps[h].tokens for h in alive], step)
        if observer is not None:
            for i, h in enumerate(alive):
                observer(rows[h], step, logits[i])
        if temperature > 0:
            gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, size=logprobs.shape)))
            chosen = np.argmax(logprobs / np.float32(temperature) + gumbel, axis=-1)
        else:
            chosen = np.argmax(logprobs, axis=-1)
        keep: list[int] = []
        for i, h in enumerate(alive):
            token = int(chosen[i])
            hyp = hyps[h]
            hyp.sum_logprob += float(logprobs[i, token])
            if token == tok.eot:
                hyp.done = True
                continue
            hyp.tokens.append(token)
            if step + 1 >= limits[rows[h]]:
                hyp.done = True
                continue
            keep.append(i)
        step += 1
        if not keep:
            break
        if len(keep) != len(alive):
            kv.select(keep)
        alive = [alive[i] for i in keep]
        logits = np.asarray(kv.step(chosen[keep]), dtype=np.float32)  # ours to edit
    best: list[_Hyp] = []
    for w in range(windows):
        group = [hyps[i] for i, r in enumerate(rows) if r == w]
        best.append(max(group, key=lambda h: h.score(opts.length_penalty)))
    return best, no_speech


def _beam_search(
    model: WhisperModel,
    cross: CrossAttention,
    prompts: Sequence[Sequence[int]],
    opts: DecodingOptions,
    rules: _Rules,
    observer: StepObserver | None,
) -> tuple[list[_Hyp], list[float]]:
    """Beam search as CTranslate2 runs it: 2×beam candidates, finished beams replaced.

    Each step ranks the vocabulary of every live row at once (one ``argpartition`` over the
    batch: a window's best 2×beam candidates are among the best 2×beam of each of its rows),
    then walks the few candidates of each window in Python.
    """
    tok = model.tokenizer
    beam = opts.beam_size
    wanted = max(1, round(beam * opts.patience))
    kv, logits, no_speech = prefill_prompts(model, cross, prompts)
    windows = len(prompts)
    limits = [_max_new_tokens(model, len(p), opts) for p in prompts]
    finished: list[list[_Hyp]] = [[] for _ in range(windows)]
    # Live state: for each live window, its beams (token lists and cumulative scores).
    live = list(range(windows))
    beams: dict[int, list[_Hyp]] = {w: [_Hyp()] for w in live}  # first step: one beam
    vocab = logits.shape[1]
    k = min(2 * beam, vocab)
    step = 0
    while live:
        seqs = [h.tokens for w in live for h in beams[w]]
        rules.mask(logits, seqs, step)
        if observer is not None:
            r = 0
            for w in live:
                for _ in beams[w]:
                    observer(w, step, logits[r])
                    r += 1
        # Each row's k best tokens, scored with their beam's log-probability.
        top_logprobs, per_row = _top_k_log_softmax(logits, k)
        cum = np.array([h.sum_logprob for w in live for h in beams[w]], dtype=np.float32)
        cand_scores = top_logprobs + cum[:, None]
        next_rows: list[int] = []
        next_tokens: list[int] = []
        next_live: list[int] = []
        r0 = 0
        for w in live:
            group = beams[w]
            g = len(group)
            flat = cand_scores[r0 : r0 + g].reshape(-1)
            order = np.argsort(-flat, kind="stable")[:k]
            top_scores: list[float] = flat[order].tolist()
            top_origins: list[int] = (order // k).tolist()
            top_tokens: list[int] = per_row[r0 : r0 + g].reshape(-1)[order].tolist()
            last_step = step + 1 >= limits[w]
            new_group: list[_Hyp] = []
            origins: list[int] = []
            tokens: list[int] = []
            secondary = beam
            for j in range(min(beam, len(order))):
                origin, token, score = top_origins[j], top_tokens[j], top_scores[j]
                parent = group[origin]
                if token == tok.eot or last_step:
                    seq = parent.tokens if token == tok.eot else [*parent.tokens, token]
                    finished[w].append(_Hyp(list(seq), score, True))
                    # Fill the slot with the next candidate that does not end.
                    while secondary < len(order):
                        alt = secondary
                        secondary += 1
                        if top_tokens[alt] != tok.eot:
                            origin, token = top_origins[alt], top_tokens[alt]
                            score = top_scores[alt]
                            parent = group[origin]
                            break
                    else:
                        continue
                new_group.append(_Hyp([*parent.tokens, token], score))
                origins.append(r0 + origin)
                tokens.append(token)
            r0 += g
            if last_step or len(finished[w]) >= wanted or not new_group:
                continue
            beams[w] = new_group
            next_live.append(w)
            next_rows.extend(origins)
            next_tokens.extend(tokens)
        step += 1
        if not next_live:
            break
        kv.select(next_rows)
        live = next_live
        logits = np.asarray(kv.step(np.asarray(next_tokens, dtype=np.int64)), dtype=np.float32)
    best = []
    for w in range(windows):
        cands = finished[w] or beams[w]
        best.append(max(cands, key=lambda h: h.score(opts.length_penalty)))
    return best, no_speech


def _result(tok: WhisperTokenizer, hyp: _Hyp, no_speech: float, temperature: float) -> DecodeResult:
    text = tok.decode(hyp.tokens).strip()
    return DecodeResult(
        tokens=tuple(hyp.tokens),
        sum_logprob=hyp.sum_logprob,
        avg_logprob=hyp.sum_logprob / (len(hyp.tokens) + 1),
        no_speech_prob=no_speech,
        temperature=temperature,
        compression_ratio=compression_ratio(text),
        text=text,
    )


def _needs_fallback(r: DecodeResult, opts: DecodingOptions) -> bool:
    too_repetitive = (
        opts.compression_ratio_threshold is not None
        and r.compression_ratio > opts.compression_ratio_threshold
    )
    too_unlikely = opts.log_prob_threshold is not None and r.avg_logprob < opts.log_prob_threshold
    silent = (
        opts.no_speech_threshold is not None
        and r.no_speech_prob > opts.no_speech_threshold
        and too_unlikely
    )
    return (too_repetitive or too_unlikely) and not silent


def decode_with_fallback(
    model: WhisperModel,
    cross: CrossAttention,
    prompts: Sequence[Sequence[int]],
    opts: DecodingOptions,
    *,
    observer: StepObserver | None = None,
) -> list[DecodeResult]:
    """Decode each window, retrying failed ones at the next temperature.

    When every temperature fails, the attempt with the best average log-probability among those
    that were not too repetitive (else among all) is kept, reported at the last temperature so
    that the caller resets its prompt as Whisper does.
    """
    tok = model.tokenizer
    rng = np.random.default_rng(opts.seed)
    pending = list(range(len(prompts)))
    attempts: list[list[DecodeResult]] = [[] for _ in prompts]
    final: list[DecodeResult | None] = [None] * len(prompts)
    for temperature in opts.temperatures:
        sub_cross = cross.take(pending)
        hyps, no_speech = generate(
            model,
            sub_cross,
            [prompts[i] for i in pending],
            opts,
            temperature,
            rng=rng,
            observer=observer,
        )
        still: list[int] = []
        for i, hyp, ns in zip(pending, hyps, no_speech, strict=True):
            result = _result(tok, hyp, ns, temperature)
            attempts[i].append(result)
            if _needs_fallback(result, opts):
                still.append(i)
            else:
                final[i] = result
        pending = still
        if not pending:
            break
    last_t = opts.temperatures[-1]
    for i in pending:
        cr = opts.compression_ratio_threshold
        ok = [a for a in attempts[i] if cr is None or a.compression_ratio <= cr] or attempts[i]
        best = max(ok, key=lambda a: a.avg_logprob)
        final[i] = DecodeResult(
            best.tokens,
            best.sum_logprob,
            best.avg_logprob,
            best.no_speech_prob,
            last_t,
            best.compression_ratio,
            best.text,
        )
    return [r for r in final if r is not None]
