"""Final results of streaming utterances: decoding with earlier speech as context, word timings.

A final is decoded on the utterance's audio preceded by the stream's previous utterance (when
both fit in one window and the session's ring still holds it) and by earlier ones while the
whole input stays within ``FinalSettings.context_s`` (``RecognizerOptions.final_context_s``),
with the earlier finals' texts forced as the decoder's prefix: the model reads the new sentence
the way file transcription reads it in the middle of a 30-s window, knowing what was said
before, and writes only the new words (greedily, or by beam search with ``context_beam_size``),
because Whisper on short isolated sentences often garbles the first words ("says" -> "and").
A stream's first utterance, with nothing before it, is decoded as file transcription decodes
a window (timestamps, beam search, fallback). Each stream's history (earlier finals, the last
decoded final's word timings) is kept in its own :class:`~audiototext.streaming.state.FinalHistory`.

Word timings come from the decoder's cross-attention (the alignment heads), aligned by dynamic
time warping as file transcription does (:mod:`audiototext.inference.alignment`): one pass over
the prefix and the new text, the path over the new tokens and the utterance's own frames only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from audiototext.audio import SAMPLE_RATE_HZ
from audiototext.audio.features import HOP_LENGTH_SAMPLES
from audiototext.inference.alignment import (
    APPEND_PUNCTUATIONS,
    PREPEND_PUNCTUATIONS,
    dtw,
    median_filter,
)
from audiototext.inference.decoding import (
    COMPRESSION_RATIO_THRESHOLD,
    TEMPERATURES,
    DecodingOptions,
    compression_ratio,
    decode_with_fallback,
)
from audiototext.inference.tokenizer import TIME_PRECISION_S, WhisperTokenizer
from audiototext.inference.whisper import CrossAttention, KVDecoder, WhisperModel
from audiototext.streaming._decode import (
    beam_decode,
    check_cancelled,
    collapse_repeats,
    drop_leading_punctuation,
    encoder_input,
    greedy_decode,
    is_noise,
    max_new_tokens_for,
)
from audiototext.streaming._language import fix_language, needs_detection, stream_prompt
from audiototext.streaming._repeats import echoes_prefix, repeats_itself
from audiototext.streaming.options import FinalSettings
from audiototext.streaming.state import DecodedFinal, EarlierFinal, FinalHistory
from audiototext.streaming.types import StreamWord

__all__ = [
    "FinalDecoder",
    "FinalRequest",
    "FinalSettings",
    "align_words_batch",
]

FloatArray = NDArray[np.float32]
MAX_PREFIX_TOKENS = 160  # of earlier text; the window's own text needs the rest of 448
_BUCKET_FRAMES = 50  # encoder lengths rounded up to 0.5 s (few distinct encoder shapes)
# Finals whose encoder lengths differ by up to this many frames (4 s) are batched, the shorter
# padded to the longest (Whisper was trained on padded 30-s windows). Partials are not: a
# longer encoder call delays a final that comes due meanwhile.
_MERGE_FRAMES = 400


class _Ring(Protocol):
    @property
    def start(self) -> int: ...

    def read(self, start: int, stop: int) -> FloatArray: ...


class _Stream(Protocol):
    """What a final needs of a stream (``RecognitionStream`` has it)."""

    @property
    def ring(self) -> _Ring: ...

    @property
    def vad_position(self) -> int: ...

    @property
    def final_history(self) -> FinalHistory: ...


@dataclass(frozen=True)
class FinalRequest:
    session: _Stream
    utterance_id: int
    start: int  # absolute samples, as the VAD reported them
    stop: int
    prompt: Sequence[int]  # start sequence ending with <|notimestamps|>
    reduced: bool = False  # the cheaper settings (less context, greedy): finals are queuing


@dataclass
class FinalPlan:
    request: FinalRequest
    audio: FloatArray
    audio_start: int  # absolute sample of audio[0]
    own_start: int  # where the utterance's own audio (with context padding) begins
    content: int  # samples of real audio (before appended zeros)
    prefix: list[int]
    frames: int
    reduced: bool = False


class FinalDecoder:
    """Decodes finals for every stream of a recognizer; each stream's context is in its
    :class:`FinalHistory`."""

    def __init__(self, model: WhisperModel, settings: FinalSettings) -> None:
        self.model = model
        self.settings = settings
        self.frames_encoded = 0  # encoder frames over all finals (rows x frames): their cost
        self.retried = 0  # finals after context decoded again alone (context_failed)

    # ---- public

    def own_start(self, request: FinalRequest) -> int:
        """Absolute sample where the utterance's audio, with its context padding, begins."""
        pad = self.settings.context_pad_ms * SAMPLE_RATE_HZ // 1000
        return max(request.start - pad, request.session.ring.start)

    def decode(
        self,
        requests: Sequence[FinalRequest],
        max_batch: int,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[str]:
        """The decoded text of each request ("" for silence, noise or a stock phrase).

        ``cancelled`` is checked between encoder and decoder calls, and at every decoder step
        (first finals' search included: through its step observer), for a speculation the
        speaker made void; when it turns true, :class:`DecodingCancelled` is raised and no
        session's record (word timings) is touched by the unfinished batch.
        """
        plans = [self.plan(r) for r in requests]
        texts: list[str] = [""] * len(plans)
        for batch, frames in batch_plans(plans, max_batch):
            reduced = plans[batch[0]].reduced
            decoded = self._decode_batch([plans[i] for i in batch], frames, reduced, cancelled)
            for i, text in zip(batch, decoded, strict=True):
                texts[i] = text
        return texts

    @staticmethod
    def remember(stream: _Stream, audio_start: int, tokens: Sequence[int]) -> None:
        """Record a final: with text, the context of the stream's next finals; without (noise
        or silence), where their context stops."""
        stream.final_history.earlier.append(EarlierFinal(audio_start, tuple(tokens)))

    @staticmethod
    def words_for(
        stream: _Stream, utterance_id: int, start: int, stop: int, text: str
    ) -> tuple[StreamWord, ...]:
        """Word timings of the final last decoded for this utterance, if it is ``text``."""
        d = stream.final_history.decoded
        if d is None or (d.utterance_id, d.start, d.stop) != (utterance_id, start, stop):
            return ()
        return d.words if d.text == text.strip() else ()

    # ---- internals

    def plan(self, request: FinalRequest) -> FinalPlan:
        st = self.settings
        s = request.session
        window = self.model.window_frames * HOP_LENGTH_SAMPLES
        tail = st.tail_ms * SAMPLE_RATE_HZ // 1000
        own = self.own_start(request)
        hi = min(request.stop + tail, s.vad_position)
        lo = own
        prefix: list[int] = []
        silence = st.silence_ms * SAMPLE_RATE_HZ // 1000
        if st.context:
            # The previous utterance whenever it fits in the window with this one; earlier
            # ones while the whole input stays within context_s.
            fits = window - silence
            context_s = st.reduced_context_s if request.reduced else st.context_s
            limit = min(round(context_s * SAMPLE_RATE_HZ), fits)
            # A copy taken at once (finals may be decoded on another thread than the worker
            # that records them).
            history = tuple(s.final_history.earlier)
            for k, earlier in enumerate(reversed(history)):
                # Not across a final without text: its audio would be written again as this
                # one's (under load the next final repeated a dropped utterance's words).
                if (
                    not earlier.tokens
                    or earlier.audio_start < s.ring.start
                    or earlier.audio_start >= own
                    or hi - earlier.audio_start > (fits if k == 0 else limit)
                    or len(prefix) + len(earlier.tokens) > MAX_PREFIX_TOKENS
                ):
                    break
                lo = earlier.audio_start
                prefix[:0] = earlier.tokens
        audio = s.ring.read(lo, hi)
        content = audio.shape[0]
        if silence:
            audio = np.concatenate([audio, np.zeros(silence, dtype=np.float32)])
        audio = audio[:window]
        frames = self.model.window_frames if st.padded else self._frames_for(audio.shape[0])
        return FinalPlan(
            request, audio, lo, own, min(content, window), prefix, frames, request.reduced
        )

    def _decode_batch(
        self,
        plans: list[FinalPlan],
        frames: int,
        reduced: bool,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[str]:
        model = self.model
        tok = model.tokenizer
        check_cancelled(cancelled)
        for p in plans:
            if needs_detection(tok, p.request.session):
                # Unpadded short encodings mislead detection (base: Italian → Chinese); a
                # whole window, as in file transcription, once per stream.
                window = self._encode([p.audio], model.window_frames)
                fix_language(model, p.request.session, window)
        cross = self._encode([p.audio for p in plans], frames)
        own_prompts = [
            stream_prompt(model, p.request.session, p.request.prompt, cross, row)
            for row, p in enumerate(plans)
        ]
        budgets = [
            max_new_tokens_for((p.audio.shape[0] - (p.own_start - p.audio_start)) / SAMPLE_RATE_HZ)
            for p in plans
        ]
        st = self.settings
        with_prefix = [i for i, p in enumerate(plans) if p.prefix or st.beam_size == 1]
        alone = [i for i in range(len(plans)) if i not in with_prefix]
        texts: list[str] = [""] * len(plans)
        retry: list[int] = []  # rows whose context decode failed (decoded again alone)
        if with_prefix:
            # A forced prefix needs this package's greedy loop (the inference search infers
            # timestamp mode from the prompt's last token).
            args = (
                model,
                cross.take(with_prefix),
                [own_prompts[i] for i in with_prefix],
                [plans[i].prefix for i in with_prefix],
                [budgets[i] for i in with_prefix],
            )
            beam = st.reduced_beam_size if reduced else st.context_beam_size
            check_cancelled(cancelled)
            hyps = (
                beam_decode(*args, beam, cancelled, speech_after_prefix=True)
                if beam > 1
                else greedy_decode(*args, cancelled, speech_after_prefix=True)
            )
            for i, hyp in zip(with_prefix, hyps, strict=True):
                text = collapse_repeats(tok.decode(list(hyp.new_tokens)).strip())
                text = drop_leading_punctuation(text)
                noise = is_noise(text, hyp.avg_logprob, hyp.no_speech_prob, hyp.compression_ratio)
                texts[i] = "" if noise else text
                if plans[i].prefix and context_failed(texts[i], hyp.prefix_text):
                    retry.append(i)
        if alone:
            # Nothing said before (a stream's first utterance, or context off): decoded as
            # file transcription decodes a window, with timestamps, beam search and fallback.
            audios = [plans[i].audio for i in alone]
            prompts = [own_prompts[i] for i in alone]
            alone_cross = cross.take(alone)
            decoded = self._decode_alone(audios, alone_cross, frames, prompts, reduced, cancelled)
            for i, text in zip(alone, decoded, strict=True):
                texts[i] = text
        if retry:
            # The context decode failed (nothing, a loop, the previous final's words again):
            # the utterance alone, in a whole 30-s window as file transcription reads it
            # (reduced: at its own length), with beam search and fallback.
            audios = [plans[i].audio[plans[i].own_start - plans[i].audio_start :] for i in retry]
            own_frames = (
                max(self._frames_for(a.shape[0]) for a in audios)
                if reduced
                else model.window_frames
            )
            check_cancelled(cancelled)
            own_cross = self._encode(audios, own_frames)
            prompts = [own_prompts[i] for i in retry]
            decoded = self._decode_alone(audios, own_cross, own_frames, prompts, reduced, cancelled)
            self.retried += len(retry)
            for i, text in zip(retry, decoded, strict=True):
                texts[i] = better_of(texts[i], text)
        check_cancelled(cancelled)
        words: list[tuple[StreamWord, ...]] = [() for _ in plans]
        rows = [i for i, text in enumerate(texts) if text] if self.settings.words else []
        if rows:
            found = align_words_batch(
                model, cross.take(rows), [self._words_request(plans[i], texts[i]) for i in rows]
            )
            for i, w in zip(rows, found, strict=True):
                words[i] = w
        for plan, text, w in zip(plans, texts, words, strict=True):
            req = plan.request
            req.session.final_history.decoded = DecodedFinal(
                req.utterance_id, req.start, req.stop, text, w
            )
        return texts

    def _decode_alone(
        self,
        audios: Sequence[FloatArray],
        cross: CrossAttention,
        frames: int,
        prompts: Sequence[Sequence[int]],
        reduced: bool,
        cancelled: Callable[[], bool] | None,
    ) -> list[str]:
        """Utterances with nothing said before them, decoded as file transcription decodes
        a window: timestamps, beam search, temperature fallback. Reduced, searched with
        ``reduced_first_beam_size`` and not retried at higher temperatures."""
        model = self.model
        tok = model.tokenizer
        st = self.settings
        first_beam = st.reduced_first_beam_size if reduced else st.beam_size
        opts = DecodingOptions(
            beam_size=first_beam,
            best_of=first_beam,
            suppress_tokens=tok.default_suppress_tokens(),
            temperatures=(0.0,) if reduced and not st.reduced_fallback else TEMPERATURES,
        )
        stamped = [_with_timestamps(p, tok.no_timestamps) for p in prompts]
        check_cancelled(cancelled)
        # Called before every decoder step's choice: a void speculation stops there.
        observer = None if cancelled is None else lambda *_: check_cancelled(cancelled)
        results = decode_with_fallback(model, cross, stamped, opts, observer=observer)
        loops = [k for k, r in enumerate(results) if _loops(r.text, r.compression_ratio)]
        if loops and len(opts.temperatures) > 1 and frames < model.window_frames:
            # A repetition loop through the whole fallback (tiny.en on a lone "No." encoded
            # at its own length: "No ! No ! ..."), or a sentence written twice: decode the
            # utterance once more as file transcription does, in a full 30-s window, and keep
            # that if it does not loop.
            check_cancelled(cancelled)
            window = self._encode([audios[k] for k in loops], model.window_frames)
            again = decode_with_fallback(
                model, window, [stamped[k] for k in loops], opts, observer=observer
            )
            for k, r in zip(loops, again, strict=True):
                if not _loops(r.text, r.compression_ratio):
                    results[k] = r
        texts = []
        for r in results:
            text, ratio = r.text.strip(), r.compression_ratio
            if len(opts.temperatures) == 1 and ratio > COMPRESSION_RATIO_THRESHOLD:
                # No fallback to re-decode a repetition loop: keep its sentences once, as
                # the text-only paths do, rather than drop them all.
                text = collapse_repeats(text)
                ratio = compression_ratio(text)
            noise = is_noise(text, r.avg_logprob, r.no_speech_prob, ratio)
            texts.append("" if noise else text)
        return texts

    def _frames_for(self, samples: int) -> int:
        """Encoder frames of an ``exact`` final: its audio, the padding, rounded up to 0.5 s."""
        frames = samples // HOP_LENGTH_SAMPLES + round(self.settings.padding_s * 100)
        frames = -(-frames // _BUCKET_FRAMES) * _BUCKET_FRAMES
        return min(frames, self.model.window_frames)

    def _encode(self, audios: Sequence[FloatArray], frames: int) -> CrossAttention:
        """Encode ``audios`` padded to ``frames`` as one batch (counted in ``frames_encoded``)."""
        model = self.model
        mel = np.stack(
            [encoder_input(a, model.n_mels, frames, model.window_frames) for a in audios]
        )
        self.frames_encoded += mel.shape[0] * frames
        return model.encode(mel)

    def _words_request(self, plan: FinalPlan, text: str) -> WordsRequest:
        return WordsRequest(
            plan.prefix,
            self.model.tokenizer.encode(" " + text),
            (
                (plan.own_start - plan.audio_start) // HOP_LENGTH_SAMPLES,
                plan.content // HOP_LENGTH_SAMPLES,
            ),
            plan.audio_start / SAMPLE_RATE_HZ,
            (plan.request.start / SAMPLE_RATE_HZ, plan.request.stop / SAMPLE_RATE_HZ),
        )


@dataclass(frozen=True)
class WordsRequest:
    """One text to align (:func:`align_words_batch`)."""

    prefix: Sequence[int]  # earlier text forced before it
    tokens: Sequence[int]  # its tokens
    frames: tuple[int, int]  # (first, end) frames of the utterance's own audio
    offset_s: float  # stream time of frame 0
    segment: tuple[float, float]  # the final's start and end: words are kept within


def align_words_batch(
    model: WhisperModel, cross: CrossAttention, requests: Sequence[WordsRequest]
) -> list[tuple[StreamWord, ...]]:
    """Stream-time words of each request, row ``i`` of ``cross`` encoding request ``i``'s input.

    Whisper's alignment (as :mod:`audiototext.inference.alignment`): one decoder pass over the
    text with the alignment heads' cross-attention, each frame standardised over the tokens,
    a median filter along time, the heads averaged, and the least-cost monotonic path (DTW);
    a word starts where the path reaches its first token. Only the new tokens and the frames
    of the utterance's own audio enter the path, which keeps it small; the prefix still shapes
    the attention. All requests share one decoder pass (left-padded), as the finals of one
    batch share their encoder and decoder calls.
    """
    tok = model.tokenizer
    out: list[tuple[StreamWord, ...]] = [() for _ in requests]
    language = "en" if tok.multilingual else None
    sot = list(tok.sot_sequence(language))
    rows: list[int] = []
    sequences: list[list[int]] = []
    for i, r in enumerate(requests):
        sequence = [*sot, tok.no_timestamps, *r.prefix, *r.tokens, tok.eot]
        if r.tokens and len(sequence) <= model.max_text_tokens:
            rows.append(i)
            sequences.append(sequence)
    if not rows:
        return out
    kv = KVDecoder(model, cross.take(rows))
    _, attention = kv.prefill(sequences, want_attention=True)
    for n, i in enumerate(rows):
        r = requests[i]
        # The position that predicts the first new token, after the row's left padding.
        first_row = int(kv.pads[n]) + len(sot) + len(r.prefix)
        lo = max(0, min(r.frames[0] // 2, cross.positions - 1))
        hi = max(lo + 1, min(max(r.frames[1] // 2, 1), cross.positions))
        weights = attention[n][:, first_row : first_row + len(r.tokens) + 1, lo:hi]
        out[i] = _words_from_attention(tok, language, weights, r, lo)
    return out


def _words_from_attention(
    tok: WhisperTokenizer,
    language: str | None,
    attention: NDArray[np.float32],
    r: WordsRequest,
    lo: int,
) -> tuple[StreamWord, ...]:
    """Words of ``r`` from its alignment heads' attention over its tokens and own frames."""
    weights = attention.astype(np.float32)
    weights /= np.maximum(weights.sum(axis=-1, keepdims=True), np.float32(1e-12))
    mean = weights.mean(axis=-2, keepdims=True)
    std = weights.std(axis=-2, keepdims=True)
    weights = (weights - mean) / np.maximum(std, np.float32(1e-12))
    matrix = median_filter(weights).mean(axis=0)
    text_idx, time_idx = dtw(-matrix)
    words, groups = tok.split_to_word_tokens([*r.tokens, tok.eot], language)
    if len(groups) <= 1:
        return ()
    boundaries = np.pad(np.cumsum([len(g) for g in groups[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_idx), (1, 0), constant_values=1).astype(bool)
    jump_s = (lo + time_idx[jumps]) * TIME_PRECISION_S + r.offset_s
    starts = jump_s[boundaries[:-1]]
    ends = jump_s[boundaries[1:]]
    low, high = r.segment
    out: list[StreamWord] = []
    glue = ""  # leading punctuation waiting for its word
    for word, start, end in zip(words[:-1], starts.tolist(), ends.tolist(), strict=True):
        text = word.strip()
        if not text:
            continue
        if all(ch in APPEND_PUNCTUATIONS for ch in text) and out:
            last = out[-1]
            out[-1] = StreamWord(last.text + text, last.start_s, last.end_s)
            continue
        if all(ch in PREPEND_PUNCTUATIONS for ch in text):
            glue += text
            continue
        s = min(max(float(start), low), high)
        e = min(max(float(end), s), high)
        out.append(StreamWord(glue + text, s, e))
        glue = ""
    return tuple(out)


def _loops(text: str, ratio: float) -> bool:
    """A first final's text that loops or writes a sentence, or its last word, twice: worth
    a 30-s window (tiny.en reads a lone "No." at its own length as "No... No...")."""
    return ratio > COMPRESSION_RATIO_THRESHOLD or repeats_itself(text, min_repeat_words=1)


def context_failed(text: str, prefix_text: str) -> bool:
    """Whether a final decoded after earlier finals' text failed: no words (the VAD heard
    speech), a loop or a sentence written twice, or the previous final's last words again.
    Seen after a voice change (a short card hand after a LibriVox sentence: "", "5 5 5 5 …",
    "4. Queen of Close. 4. Queen of Close."; bench/NOTES.md "streamwer")."""
    return not text or repeats_itself(text) or echoes_prefix(text, prefix_text)


def better_of(after_context: str, alone: str) -> str:
    """The final's text when a failed context decode (``after_context``) was decoded again
    ``alone``: the latter, unless it has no words, or loops too and is the longer."""
    if not alone:
        return after_context
    if repeats_itself(alone) and len(after_context.split()) < len(alone.split()):
        return after_context
    return alone


def batch_plans(plans: Sequence[FinalPlan], max_batch: int) -> list[tuple[list[int], int]]:
    """Plans decoded together (indices) and their common encoder length.

    Plans of one kind (reduced or not) whose encoder lengths differ by at most
    :data:`_MERGE_FRAMES` share a batch, the shorter ones padded to the longest: the finals of
    several streams ending together are rarely of one length, and decoded one 0.5-s length at
    a time a lane's batch of four would be four encoder calls and decoding loops in turn.
    """
    out: list[tuple[list[int], int]] = []
    for reduced in (False, True):
        members = sorted(
            (i for i, p in enumerate(plans) if p.reduced == reduced), key=lambda i: plans[i].frames
        )
        run: list[int] = []
        for i in members:
            if run and (
                len(run) == max_batch or plans[i].frames - plans[run[0]].frames > _MERGE_FRAMES
            ):
                out.append((run, plans[run[-1]].frames))
                run = []
            run.append(i)
        if run:
            out.append((run, plans[run[-1]].frames))
    return out


def _with_timestamps(prompt: Sequence[int], no_timestamps: int) -> list[int]:
    """``prompt`` without its ``<|notimestamps|>``: the search then decodes timestamps."""
    return list(prompt[:-1] if prompt and prompt[-1] == no_timestamps else prompt)
