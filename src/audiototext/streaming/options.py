"""Engine-wide options of the streaming recognizer, and the final decoder's settings derived
from them (one definition per default: :meth:`RecognizerOptions.final_settings`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FinalSettings", "RecognizerOptions"]


@dataclass(frozen=True)
class FinalSettings:
    """How finals are decoded; build with :meth:`RecognizerOptions.final_settings`."""

    context_pad_ms: int  # audio kept before the VAD's speech start
    tail_ms: int  # audio kept after the VAD's speech end
    silence_ms: int  # zeros appended after that tail
    padding_s: float  # encoder padding beyond the audio (exact encoding)
    padded: bool  # encode a full 30-s window instead
    context: bool  # decode with earlier utterances as context
    beam_size: int  # finals without earlier text: beam search, timestamps, fallback
    context_beam_size: int  # finals after earlier text: greedy (1) or beam search
    context_s: float  # earlier audio decoded with a final
    reduced_context_s: float  # the same for a reduced final (finals are queuing)
    reduced_beam_size: int  # beam width of a reduced final after earlier text
    reduced_fallback: bool  # a reduced first final keeps the temperature fallback
    reduced_first_beam_size: int  # beam width of a reduced first final
    words: bool = True  # word timings (benchmarks turn them off)


@dataclass(frozen=True)
class RecognizerOptions:
    """Engine-wide settings (per-stream ones are in :class:`~audiototext.streaming.StreamOptions`).

    The measurements behind the defaults are in bench/NOTES.md ("Streaming engine",
    "Streaming accuracy", "Streaming capacity").

    Attributes:
        max_sessions: open sessions allowed at once; more raise ``OverloadedError``.
        max_batch: most utterances encoded or decoded together.
        final_encoding: ``exact`` encodes an utterance's own frames plus
            ``final_padding_s`` of padding; ``padded`` encodes a full 30-s window as Whisper
            was trained (several times slower on CPU).
        final_padding_s: zero frames appended to an utterance for ``exact`` finals; Whisper
            loops or drops words on unpadded input.
        final_beam_size: beam width of finals decoded without earlier text (1 is greedy).
        final_context: decode a final after the previous utterances (their audio, and their
            text as a forced prefix): Whisper garbles the first words of isolated sentences.
        final_context_s: at most this much earlier audio (whole utterances) decoded with a
            final; the encoder's cost grows with it, and 12 s reads as well as 20 s did.
        final_context_beam_size: beam width of finals decoded after earlier text (1 is
            greedy); beam 5 keeps streaming within 1 pp of file transcription.
        partial_padding_s: the least padding of a partial's encoder input.
        context_pad_ms: audio kept before the VAD's speech start when decoding (and after
            the speech end for partials); the VAD's own margin clips soft word onsets.
        final_tail_ms: audio kept after the VAD's speech end for a final. Finals depend on
            the audio alone (not on how it was chunked) while this plus the VAD's 30-ms
            margin fits in the endpoint silence.
        final_silence_ms: digital silence appended after that tail. Whisper reads a
            sentence's last word better with silence after it, and zeros need no waiting, so
            a final can start as soon as the pause begins.
        speculative_finals: decode a final as soon as a pause holds ``final_tail_ms`` +
            ``speculation_pause_ms`` of audio, before the endpoint silence confirms it; the
            final is the same either way (its audio is fixed by the VAD's end), only sooner.
            Skipped while the engine is busy, since the work is wasted if the speaker goes on.
        speculation_pause_ms: pause beyond ``final_tail_ms`` the ring must hold before a
            final is decoded speculatively. 0 starts at the VAD's first silent frame; with
            several streams open it is at least 100 ms, because speculations voided by dips
            inside sentences then take CPU from the other streams.
        final_keeps_committed: a final starts with the words partials committed (shown
            stable text never changes); off, a final is its own decoding of the audio, which
            makes it independent of when partials ran.
        min_partial_ms: no partial before an utterance holds this much audio.
        early_partials: an utterance's first partial is due as soon as it holds
            ``min_partial_ms`` (about when the VAD confirms speech) instead of a whole partial
            interval; until one shows text, the next try comes after ``min_partial_ms`` of new
            audio (stretched by load like the interval), and such partials go to the lanes
            before other streams' refreshes. Off: the first partial waits for an interval too.
        first_partial_logprob: an utterance's first partial is shown only if its average
            log-probability is at least this; a guess from the first few hundred ms is often
            wrong, and first text rewritten at once is worse than text a moment later. -0.7
            kept the first partial's words in the final more often than before early partials
            (Whisper's -1.0 filtered nothing useful; bench/NOTES.md "firstwords"). ``None``
            shows any.
        first_partial_agreement: an unsure first try's opening words are shown when the next
            try opens with the same words. Off by default: on the firstwords clips it took
            the first text's p90 from 1253 to 1000 ms of audio but kept the first partial's
            words in the final less often (14 of 35 against 16; bench/NOTES.md "streamwer").
        overload_lag_s: when the median stream has more than this much audio waiting for the
            VAD at the start of a scheduling round, compute is behind real time: overload.
        overload_final_s: overload when the finals of the last few seconds took longer than
            this (median, from the audio that ended the utterance to the result).
        adaptive_partials: space partials out when the worker or the lanes are busy, or
            recent finals slower than ``adaptive_final_s``; off makes partial timing depend
            on the audio alone (for reproducible tests and measurements).
        partial_lane: decode on two lane threads beside the worker, which then only reads
            the streams (VAD), hands out work and applies results, so the VAD keeps up while
            finals are decoded. Off, the worker decodes everything itself.
        adaptive_finals: with two or more streams open, decode finals with the cheaper
            ``reduced_final_*`` settings while finals queue up (more due than idle lanes,
            compute behind real time, or recent finals slower than ``adaptive_final_s``).
            Off (and with one stream), every final is decoded the same way whatever the
            load. Partials are spaced out first, by their own rule.
        reduced_final_context_s: earlier audio beyond the previous utterance decoded with a
            reduced final (0: the previous utterance only).
        reduced_final_beam_size: beam width of reduced finals after earlier text (1:
            greedy, about half a full final's CPU).
        reduced_first_final_beam_size: beam width of a reduced final without earlier text
            (a stream's first); greedy because streams opened together end their first
            utterances together.
        reduced_final_fallback: a reduced first final keeps the temperature fallback; off
            by default, because the fallback costs many times the search's CPU and is the
            largest single cost of many streams opening together.
        adaptive_final_s: recent finals slower than this (median) make finals reduced.
    """

    max_sessions: int = 16
    max_batch: int = 8
    final_encoding: str = "exact"
    final_padding_s: float = 1.0
    final_beam_size: int = 5
    final_context: bool = True
    final_context_s: float = 12.0
    final_context_beam_size: int = 5
    partial_padding_s: float = 0.5
    context_pad_ms: int = 300
    final_tail_ms: int = 0
    final_silence_ms: int = 400
    speculative_finals: bool = True
    speculation_pause_ms: int = 0
    final_keeps_committed: bool = False
    min_partial_ms: int = 300
    early_partials: bool = True
    first_partial_logprob: float | None = -0.7
    first_partial_agreement: bool = False
    overload_lag_s: float = 2.0
    overload_final_s: float = 1.0
    adaptive_partials: bool = True
    partial_lane: bool = True
    adaptive_finals: bool = True
    reduced_final_context_s: float = 0.0
    reduced_final_beam_size: int = 1
    reduced_first_final_beam_size: int = 1
    reduced_final_fallback: bool = False
    adaptive_final_s: float = 0.4

    def lane_threads(self) -> int:
        """Intra-op threads per decoding thread when none are given: the physical cores
        shared out over the threads that decode at once (the two lanes, or the worker)."""
        from audiototext.inference.ort_session import default_threads

        return max(1, default_threads() // (2 if self.partial_lane else 1))

    def final_settings(self) -> FinalSettings:
        """The final decoder's settings these options describe."""
        return FinalSettings(
            context_pad_ms=self.context_pad_ms,
            tail_ms=self.final_tail_ms,
            silence_ms=self.final_silence_ms,
            padding_s=self.final_padding_s,
            padded=self.final_encoding == "padded",
            context=self.final_context,
            beam_size=self.final_beam_size,
            context_s=self.final_context_s,
            context_beam_size=self.final_context_beam_size,
            reduced_context_s=self.reduced_final_context_s,
            reduced_beam_size=self.reduced_final_beam_size,
            reduced_fallback=self.reduced_final_fallback,
            reduced_first_beam_size=self.reduced_first_final_beam_size,
        )

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {self.max_sessions}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.final_encoding not in ("exact", "padded"):
            raise ValueError(f"final_encoding must be exact or padded, not {self.final_encoding!r}")
        if not 0.0 <= self.final_padding_s <= 30.0:
            raise ValueError("final_padding_s must be between 0 and 30")
        if not 0.0 <= self.final_context_s <= 30.0:
            raise ValueError("final_context_s must be between 0 and 30")
        if self.final_context_beam_size < 1:
            raise ValueError(
                f"final_context_beam_size must be >= 1, got {self.final_context_beam_size}"
            )
        if self.final_beam_size < 1:
            raise ValueError(f"final_beam_size must be >= 1, got {self.final_beam_size}")
        if not 0.0 <= self.partial_padding_s <= 30.0:
            raise ValueError("partial_padding_s must be between 0 and 30")
        if not 0 <= self.context_pad_ms <= 2000:
            raise ValueError("context_pad_ms must be between 0 and 2000")
        if not 0 <= self.final_tail_ms <= 2000:
            raise ValueError("final_tail_ms must be between 0 and 2000")
        if not 0 <= self.speculation_pause_ms <= 2000:
            raise ValueError("speculation_pause_ms must be between 0 and 2000")
        if not 0 <= self.min_partial_ms <= 10_000:
            raise ValueError("min_partial_ms must be between 0 and 10000")
        if self.first_partial_logprob is not None and not self.first_partial_logprob <= 0.0:
            raise ValueError(
                "first_partial_logprob is an average log-probability: at most 0, or None"
            )
        if not self.overload_final_s > 0:
            raise ValueError("overload_final_s must be positive")
        if not self.overload_lag_s > 0:
            raise ValueError("overload_lag_s must be positive")
        if not 0.0 <= self.reduced_final_context_s <= 30.0:
            raise ValueError("reduced_final_context_s must be between 0 and 30")
        if self.reduced_final_beam_size < 1:
            raise ValueError(
                f"reduced_final_beam_size must be >= 1, got {self.reduced_final_beam_size}"
            )
        if self.reduced_first_final_beam_size < 1:
            raise ValueError(
                "reduced_first_final_beam_size must be >= 1, got "
                f"{self.reduced_first_final_beam_size}"
            )
        if not self.adaptive_final_s > 0:
            raise ValueError("adaptive_final_s must be positive")
