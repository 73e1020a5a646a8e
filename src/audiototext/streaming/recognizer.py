"""The streaming recognizer: one shared model, many sessions, a worker thread and two lanes.

The scheduler runs on a worker thread (never on the event loop) in rounds. It reads every
stream's audio (VAD) and hands all decoding to two lane threads (one per core here), so a
final's decoding never delays the VAD of the other streams, and applies what the lanes bring
back. The rounds:

1. every session's queued audio goes through its VAD, up to the next utterance end;
2. ended utterances get their finals, oldest first, split over the idle lanes, each share
   decoded as one batch (finals always come first; those no lane can take wait for one);
3. speculative finals (below) take an idle lane;
4. sessions whose speech has grown by the partial interval get a partial, batched likewise,
   on an idle lane but never the last one (kept for the next final).

Partials encode only the audio of the utterance so far (rounded up to a 0.5-s bucket, plus
padding, so that sessions of similar length share an encoder batch) and are decoded greedily
with the committed words forced as a prefix. Finals encode the utterance (its audio up to
``final_tail_ms`` after the VAD's end, then ``final_silence_ms`` of zeros and the encoder
padding) with the previous utterance as context, and depend on that audio alone: not on chunk
boundaries, nor on what partials committed (unless ``final_keeps_committed``). A final is
decoded *speculatively* as soon as a pause holds its tail and ``speculation_pause_ms`` (by
default no tail, 400 ms of zeros, no pause: the VAD's first silent frame), on an idle lane,
before the endpoint silence is complete; if the endpoint then confirms that same end, the
final goes out at once, and if the speaker goes on, the lane stops decoding it (cancelled
between encoder and decoder calls) and the work is dropped.

Load control: the worker measures how busy it and the lanes are. Above :data:`_BUSY_HIGH`, or
when recent finals are slower than ``adaptive_final_s``, it stretches the partial interval (up
to :data:`_MAX_PARTIAL_SCALE` times), and above :data:`_BUSY_HIGH` it stops speculating; at
most one batch of partials is in flight. With two or more streams, finals due together beyond
what the idle lanes can take one each, or recent finals slower than ``adaptive_final_s``, are
decoded with less context and greedily (``adaptive_finals``), about half the CPU of a full
final, and so are speculations for the next 5 s. Only when finals
themselves fall behind (recent finals slower than ``overload_final_s``, or the median stream's
unread audio above ``overload_lag_s``) does it report overload, and then
:meth:`StreamingRecognizer.open` refuses new sessions. Queued audio per session is bounded by
``max_buffered_s`` (:class:`BufferFullError`), and partials are computed only for the newest
audio (stale ones are skipped and counted), so latency cannot grow without bound.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audiototext.audio import SAMPLE_RATE_HZ, SileroVad, SpeechEndpointDetector, VadOptions
from audiototext.audio.features import HOP_LENGTH_SAMPLES
from audiototext.errors import ConfigError
from audiototext.inference.session import SessionConfig
from audiototext.inference.whisper import WhisperModel
from audiototext.streaming._decode import (
    DecodingCancelled,
    Hypothesis,
    encoder_input,
    greedy_decode,
    is_noise,
    max_new_tokens_for,
)
from audiototext.streaming._final import FinalDecoder, FinalRequest, FinalSettings
from audiototext.streaming.session import PendingFinal, Speculation, StreamSession
from audiototext.streaming.types import (
    EngineStats,
    OverloadedError,
    StreamOptions,
    StreamResult,
)

__all__ = ["FinalTrace", "RecognizerOptions", "StreamingRecognizer"]

log = logging.getLogger(__name__)

_HOP = HOP_LENGTH_SAMPLES
_BUSY_WINDOW_S = 5.0
_BUSY_HIGH = 0.75  # stretch partial intervals above this busy share
_BUSY_LOW = 0.5  # and relax them again below this
_MAX_PARTIAL_SCALE = 8.0
_SCALE_STEP = 1.5
_SCALE_PERIOD_S = 1.0
_OVERLOAD_HOLD_S = 5.0
_LATENCY_WINDOW = 200  # finals remembered for the latency percentiles
_SHARED_PAUSE_MS = 100  # least speculation pause with several streams open
_MAX_CONTEXT_TOKENS = 120  # of a previous utterance's text, forced before a final's
_LANES = 2  # decoding threads beside the worker (partial_lane): one per core here
_FINALS_PER_LANE = 4  # most finals (or speculations) handed to one lane at once


@dataclass(frozen=True)
class RecognizerOptions:
    """Engine-wide settings (per-stream ones are in :class:`StreamOptions`).

    Attributes:
        max_sessions: open sessions allowed at once; more raise :class:`OverloadedError`.
        max_batch: most utterances encoded or decoded together.
        final_encoding: ``exact`` encodes an utterance's own frames plus
            ``final_padding_s`` of padding; ``padded`` encodes a full 30-s window as Whisper
            was trained (several times slower on CPU; see bench/NOTES.md for the accuracy).
        final_padding_s: zero frames appended to an utterance for ``exact`` finals; Whisper
            loops or drops words on unpadded input.
        final_beam_size: beam width of finals decoded without context (1 is greedy).
        final_context: decode a final together with the previous utterance (its audio, and its
            text as a forced prefix), greedily; without it, finals use beam search alone.
        final_context_s: at most this much earlier audio (whole utterances) decoded with a
            final. It sets a final's cost: the encoder's time grows with it (bench/NOTES.md,
            "Streaming engine": ~160-220 ms of CPU per final at 20 s on one thread). 12 s
            (the default) reads the clip set as 20 s did (7.51 %) and the 60 fable sentences
            better (11.50 % vs 11.93 %, file 12.53 %) with ~20 % fewer encoder frames; 8 s
            costs one word of the clip set (8.09 %).
        final_context_beam_size: beam width of finals decoded after earlier text (1 is
            greedy). Beam 5 is within 1 pp of file transcription on 60 fable sentences where
            greedy is not (+1.3 pp at 20 s of context), for ~30 % more CPU per final
            (bench/NOTES.md, "Streaming accuracy").
        partial_padding_s: the least padding of a partial's encoder input.
        context_pad_ms: audio kept before the VAD's speech start when decoding (and after
            the speech end for partials); the VAD's own margin clips soft word onsets.
        final_tail_ms: audio kept after the VAD's speech end for a final. Finals then depend
            on the audio alone (not on how it was chunked) as long as this plus the VAD's
            30-ms margin fits in the endpoint silence.
        final_silence_ms: digital silence appended after that tail. Whisper reads a sentence's
            last word better with some silence after it (measured on the test clip set: 100 ms
            of tail alone 13.3 % WER, 300 ms of tail 8.7 %, 100 ms + 300 ms of zeros 8.7 %);
            zeros need no waiting, so a final can start as soon as the pause begins. The
            default, no tail and 400 ms of zeros, reads the clip set and 60 fable sentences
            exactly as 100 ms + 300 ms did (bench/streaming_wer.py, same WER on both).
        speculative_finals: decode a final as soon as a pause holds ``final_tail_ms`` +
            ``speculation_pause_ms`` of audio, before the endpoint silence confirms it; when
            the endpoint comes, the final goes out at once. Skipped while the worker is busy
            (the work is wasted when the speaker goes on); with ``adaptive_partials`` off,
            always. The final is the same either way: its audio is fixed by the VAD's end.
        speculation_pause_ms: pause (audio after the VAD's tentative end, beyond
            ``final_tail_ms``) the ring must hold before a final is decoded speculatively. 0
            (the default) starts at the VAD's first silent frame; with several streams open
            it is at least 100 ms (4 streams at 0: 110 ms of CPU per stream-second wasted on
            dips inside sentences, more than the finals themselves). Speculations run on the
            partial lane when it is idle, so one made void by a dip inside a sentence does
            not hold the worker (clip set, one stream: 24 wasted per 20 sentences at 0, 8 at
            50 ms; end-of-speech -> final p95 474 vs 528 ms at load 5).
        final_keeps_committed: a final starts with the words partials committed (so shown
            stable text never changes); off, a final is its own decoding of the audio, which
            makes it independent of when partials ran.
        min_partial_ms: no partial before an utterance holds this much audio.
        overload_lag_s: when the median stream has more than this much audio waiting for the
            VAD at the start of a scheduling round, compute is behind real time: overload.
        overload_final_s: overload when the finals of the last few seconds took longer than
            this (median, from the audio that ended the utterance to the result).
        adaptive_partials: space partials out when the worker or the lanes are busy, or
            recent finals slower than ``adaptive_final_s``; off makes partial timing depend on
            the audio alone (for reproducible tests and measurements).
        partial_lane: decode on two lane threads beside the worker, which then only reads the
            streams (VAD), hands out work and applies results: the VAD keeps up with real
            time while finals are decoded, both cores are used, and a final never waits for
            a batch of partials (partials never take the last idle lane). Off, the worker
            decodes everything itself. A partial whose utterance ended meanwhile is dropped.
        adaptive_finals: with two or more streams open, decode finals with the cheaper
            ``reduced_final_*`` settings while finals queue up: more finals due in one round
            than the idle lanes can each take one of, compute behind real time
            (``overload_lag_s``), or the finals of the last few seconds slower than
            ``adaptive_final_s`` (median, from the audio that ended the utterance). Off (and
            with one stream), every final is decoded the same way whatever the load
            (reproducible results). Partials are spaced out first, by their own rule.
        reduced_final_context_s: earlier audio beyond the previous utterance decoded with a
            reduced final (0: the previous utterance only).
        reduced_final_beam_size: beam width of reduced finals after earlier text (1: greedy;
            a stream's first final has ``reduced_first_final_beam_size``). Previous
            utterance + greedy costs about half a full final's CPU; its accuracy cost is in
            bench/NOTES.md ("Streaming accuracy": clip set 8.67 % vs 7.51 %, fables +1.6 pp vs
            +0.26 pp).
        reduced_first_final_beam_size: beam width of a reduced final without earlier text (a
            stream's first; it keeps timestamps). 1 (greedy, the default): 16 streams opened
            together make 16 first finals due in one second (bench/NOTES.md, "Streaming
            capacity, round 5": first finals p95 1070 → 613 ms in a traced run); 5 is the
            width of an unreduced first final.
        reduced_final_fallback: a reduced final without earlier text (a stream's first)
            keeps its timestamps; off (the default), it skips the temperature
            fallback, which re-decodes an improbable window with 5 samples at each of 5 more
            temperatures: ~15 times the search's CPU (4.2 s of CPU for four first finals of one
            bench sentence), the largest single cost of 16 streams opening together.
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


class _Done:
    """An already finished awaitable, for :meth:`StreamingRecognizer.close` outside a loop."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


@dataclass
class _PartialJob:
    session: StreamSession
    start: int
    stop: int
    missed: int = 0  # intervals passed since the last partial beyond the one this covers


@dataclass
class _PartialBatch:
    """Partials computed together: inputs copied from the sessions, then the hypotheses."""

    jobs: list[_PartialJob]
    mel: np.ndarray
    prompts: list[list[int]]
    prefixes: list[list[int]]
    budgets: list[int]
    utterance_ids: list[int]
    hyps: list[Hypothesis] = field(default_factory=list)
    # Set by the worker when finals wait for a lane: the lane stops before its next decoder
    # step and brings back no partials (they are due again at once, stretched by load).
    cancel: bool = False


@dataclass(eq=False)
class _FinalBatch:
    """Finals the worker hands to the lane when several end in one round."""

    jobs: list[_FinalJob]
    requests: list[FinalRequest]
    texts: list[str] = field(default_factory=list)
    cpu_s: float = 0.0  # the lane's thread CPU for the batch
    decode_s: float = 0.0  # and its wall time
    # Set by the worker when every job is a speculation the speaker made void; the lane
    # stops at its next encoder or decoder call (DecodingCancelled) and brings back no text.
    cancel: bool = False
    cancelled: bool = False  # it did stop early


_LaneBatch = _PartialBatch | _FinalBatch


class _PartialLane:
    """A thread that computes one batch at a time for the worker: partials, or some finals."""

    def __init__(self, compute: Callable[[_LaneBatch], None], wake: Callable[[], None]) -> None:
        self._compute = compute
        self._wake = wake
        self._inbox: queue.SimpleQueue[_LaneBatch | None] = queue.SimpleQueue()
        self._done: _LaneBatch | None = None
        self.busy = False  # a batch is submitted and not yet taken back (worker)
        self.current: _LaneBatch | None = None  # that batch (worker)
        self.cpu_s: dict[str, float] = {}  # thread CPU seconds: partials, finals
        self.busy_wall: collections.deque[tuple[float, float]] = collections.deque()
        self._thread = threading.Thread(target=self._run, name="audiototext-partials", daemon=True)
        self._thread.start()

    def submit(self, batch: _LaneBatch) -> None:
        self.busy = True
        self.current = batch
        self._inbox.put(batch)

    def has_result(self) -> bool:
        return self._done is not None

    def take(self) -> _LaneBatch | None:
        done = self._done
        if done is not None:
            self._done = None
            self.busy = False
            self.current = None
        return done

    def stop(self) -> None:
        self._inbox.put(None)

    def _run(self) -> None:
        while True:
            batch = self._inbox.get()
            if batch is None:
                return
            began, cpu = time.monotonic(), time.thread_time()
            try:
                self._compute(batch)
            except Exception:
                log.exception("a batch on the partial lane failed")
                if isinstance(batch, _PartialBatch):
                    batch.hyps = []  # its partials are skipped
                else:
                    batch.texts = []  # its finals go out empty
            if isinstance(batch, _PartialBatch):
                kind = "partials"
            else:
                kind = "speculative" if batch.jobs and batch.jobs[0].speculative else "finals"
            self.cpu_s[kind] = self.cpu_s.get(kind, 0.0) + time.thread_time() - cpu
            now = time.monotonic()
            self.busy_wall.append((now, now - began))
            self._done = batch
            self._wake()


@dataclass
class _FinalJob:
    session: StreamSession
    final: PendingFinal
    audio_start: int = 0  # where this utterance's own audio (with context padding) begins
    speculative: bool = False  # decoded before its endpoint: kept, not emitted
    reduced: bool = False  # decoded with the cheaper settings (finals were queuing)
    began_at: int = 0  # the stream's VAD position when its decoding began (samples)
    cpu_s: float = 0.0  # thread CPU of its decoding (its share of a batch)
    handed_wall: float = 0.0  # monotonic time its decoding was handed out
    decode_s: float = 0.0  # wall time of its batch's decoding
    batch: int = 1  # finals (or speculations) decoded in that batch


@dataclass(frozen=True)
class FinalTrace:
    """How one emitted final was made (for benchmarks; stream positions in samples).

    ``began_at`` is how far the VAD had read the stream when the final's decoding began (for
    a speculation, before the endpoint), ``emitted_at`` how far when it went out; with
    ``cpu_s`` they give the latency an idle machine would see. In wall time: ``wait_s`` from
    the endpoint to its decoding being handed out (0 for a speculation: decoded before it),
    ``decode_s`` that decoding's wall time and ``batch`` the finals decoded with it.
    """

    session_id: int
    utterance_id: int
    stop: int
    began_at: int
    emitted_at: int
    cpu_s: float
    speculative: bool
    reduced: bool
    wait_s: float = 0.0
    decode_s: float = 0.0
    batch: int = 1


class StreamingRecognizer:
    """Shared model and scheduler for many :class:`StreamSession` objects.

    Build with :meth:`load` (model from the cache) or from a loaded
    :class:`~audiototext.inference.whisper.WhisperModel`.
    """

    def __init__(
        self,
        model: WhisperModel,
        options: RecognizerOptions | None = None,
        *,
        model_name: str | None = None,
        vad: SileroVad | None = None,
    ) -> None:
        self.model = model
        self.options = options or RecognizerOptions()
        self.model_name = model_name
        self._vad = vad or SileroVad()
        tok = model.tokenizer
        self._suppress = tok.default_suppress_tokens()
        o = self.options
        self._finals = FinalDecoder(
            model,
            FinalSettings(
                context_pad_ms=o.context_pad_ms,
                tail_ms=o.final_tail_ms,
                silence_ms=o.final_silence_ms,
                padding_s=o.final_padding_s,
                padded=o.final_encoding == "padded",
                context=o.final_context,
                beam_size=o.final_beam_size,
                context_s=o.final_context_s,
                context_beam_size=o.final_context_beam_size,
                reduced_context_s=o.reduced_final_context_s,
                reduced_beam_size=o.reduced_final_beam_size,
                reduced_fallback=o.reduced_final_fallback,
                reduced_first_beam_size=o.reduced_first_final_beam_size,
            ),
        )
        self._cv = threading.Condition()
        self._sessions: dict[int, StreamSession] = {}
        self._next_id = 0
        self._closing = False
        self._stopped = threading.Event()
        # load accounting (worker writes, stats() reads; floats and deques are safe enough)
        self._busy: collections.deque[tuple[float, float, float]] = collections.deque()
        self._latencies: collections.deque[float] = collections.deque(maxlen=_LATENCY_WINDOW)
        self._recent_finals: collections.deque[tuple[float, float]] = collections.deque()
        self._cpu: dict[str, float] = {}  # worker CPU seconds per phase, since the start
        self._partial_scale = 1.0
        self._overloaded = False
        self._partials_skipped = 0
        self._finals_reduced = 0
        self._finals_full = 0
        self._speculating: list[_FinalBatch] = []  # speculation batches on the lanes
        # The last emitted finals, how they were made (read by benchmarks).
        self.final_trace: collections.deque[FinalTrace] = collections.deque(maxlen=10_000)
        self._started_at = time.monotonic()
        self._scale_changed_at = self._started_at
        # The decoding threads: with lanes, the worker only reads audio (VAD), hands out work
        # and applies results, so a final's decoding never delays the VAD of other streams.
        self._lanes = (
            [_PartialLane(self._compute_lane, self._wake) for _ in range(_LANES)]
            if self.options.partial_lane
            else []
        )
        self._worker = threading.Thread(target=self._run, name="audiototext-stream", daemon=True)
        self._worker.start()

    @classmethod
    def load(
        cls,
        name: str = "tiny.en",
        options: RecognizerOptions | None = None,
        *,
        precision: str = "auto",
        threads: int | None = None,
        cache_root: Path | None = None,
    ) -> StreamingRecognizer:
        """Take ``name`` from the model cache (pulling it first if missing) and start.

        ``threads`` (ONNX Runtime intra-op threads) defaults to half the physical cores: the
        worker and the partial lane run at the same time, each on its own core. On the 2-core
        test machine one thread per call took half the CPU time of two for the same stream
        (bench/NOTES.md, "Streaming engine").
        """
        from audiototext.inference.session import default_threads
        from audiototext.models import ModelCache, pull
        from audiototext.models.manager import resolve_precision

        entry = pull(
            name, precision=resolve_precision(precision), cache=ModelCache(cache_root)
        ).entry
        if threads is None:
            lanes = 2 if (options or RecognizerOptions()).partial_lane else 1
            threads = max(1, default_threads() // lanes)
        model = WhisperModel(entry.path, SessionConfig(device="cpu", intra_op_threads=threads))
        return cls(model, options, model_name=name)

    # ------------------------------------------------------------------ public API

    def open(self, options: StreamOptions | None = None) -> StreamSession:
        """A new session; :class:`OverloadedError` when at capacity or behind real time."""
        opts = options or StreamOptions()
        self._check_model(opts)
        with self._cv:
            if self._closing:
                raise OverloadedError("the recognizer is shutting down")
            if len(self._sessions) >= self.options.max_sessions:
                raise OverloadedError(
                    f"all {self.options.max_sessions} streams are in use; retry later"
                )
            if self._is_overloaded():
                raise OverloadedError(
                    "compute cannot keep up with the open streams in real time; retry later"
                )
            detector = SpeechEndpointDetector(
                self._vad,
                VadOptions(
                    min_silence_duration_ms=opts.endpoint_silence_ms,
                    max_speech_duration_s=opts.max_segment_s,
                    speech_pad_ms=30,
                ),
            )
            # One utterance (at most max_segment_s) plus the context around it.
            ring_s = opts.max_segment_s + 2 * self.options.context_pad_ms / 1000 + 5.0
            session = StreamSession(self, self._next_id, opts, detector, ring_s)
            self._sessions[session.id] = session
            self._next_id += 1
            self._cv.notify()
        return session

    def close(self) -> Awaitable[None]:
        """Finalise every open session and stop the worker.

        Inside an event loop the returned task completes once all finals are out (await it or
        not: the work starts either way); outside one, the call blocks until done.
        """
        with self._cv:
            self._closing = True
            sessions = list(self._sessions.values())
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            for s in sessions:
                s.request_finish()
            self._wake()
            self._worker.join()
            return _Done()
        return asyncio.ensure_future(self._aclose(sessions))

    async def _aclose(self, sessions: Sequence[StreamSession]) -> None:
        await asyncio.gather(*(s.finish() for s in sessions))
        self._wake()
        await asyncio.get_running_loop().run_in_executor(None, self._worker.join)

    def stats(self) -> EngineStats:
        with self._cv:
            sessions = list(self._sessions.values())
        queue = sum(len(s.pending_finals) + (1 if s.has_input() else 0) for s in sessions)
        lat = sorted(self._latencies)
        busy, audio = self._window_totals()
        return EngineStats(
            active_sessions=len(sessions),
            queue_depth=queue,
            rtf=busy / audio if audio > 0 else 0.0,
            final_latency_ms_p50=1000 * _percentile(lat, 0.5),
            final_latency_ms_p95=1000 * _percentile(lat, 0.95),
            overloaded=self._is_overloaded(),
            partial_interval_scale=self._partial_scale,
            partials_skipped=self._partials_skipped,
            speculative_finals_used=self._speculations_used,
            speculative_finals_wasted=self._speculations_wasted,
            speculative_finals_cancelled=self._speculations_cancelled,
            partial_batches_cancelled=self._partials_cancelled,
            finals_reduced=self._finals_reduced,
            finals_full=self._finals_full,
            worker_cpu_s=self._cpu_totals(),
        )

    # ------------------------------------------------------------------ helpers

    def _check_model(self, opts: StreamOptions) -> None:
        if self.model_name is None:
            return
        from audiototext.models import resolve

        try:
            wanted = resolve(opts.model).name
            loaded = resolve(self.model_name).name
        except Exception as exc:  # unknown names: let the caller see the registry's message
            raise ConfigError(str(exc)) from exc
        if wanted != loaded:
            raise ConfigError(f"this engine runs {loaded}; model {opts.model!r} is not loaded")
        tok = self.model.tokenizer
        if opts.language is not None and not tok.multilingual and opts.language != "en":
            raise ConfigError(
                f"{loaded} is English-only; language {opts.language!r} is not possible"
            )
        if opts.language is not None and tok.multilingual and opts.language not in tok.languages:
            raise ConfigError(f"unknown language {opts.language!r}")

    def _wake(self) -> None:
        with self._cv:
            self._cv.notify()

    def _window_totals(self) -> tuple[float, float]:
        busy = sum(b for _, b, _ in self._busy)
        audio = sum(a for _, _, a in self._busy)
        return busy, audio

    # ------------------------------------------------------------------ the worker

    def _run(self) -> None:
        try:
            while True:
                with self._cv:
                    sessions = list(self._sessions.values())
                    if self._closing and not sessions:
                        return
                    lane_done = any(lane.has_result() for lane in self._lanes)
                    free = not self._lanes or any(not lane.busy for lane in self._lanes)
                    if not lane_done and not any(self._has_work(s, free) for s in sessions):
                        self._cv.wait(timeout=0.05)
                        continue
                self._round(sessions)
        except Exception:  # a bug here would silently hang every stream: make it loud
            log.exception("the streaming worker failed; ending all sessions")
            with self._cv:
                for s in self._sessions.values():
                    s.end()
                self._sessions.clear()
        finally:
            for lane in self._lanes:
                lane.stop()
            self._stopped.set()

    def _has_work(self, s: StreamSession, lane_free: bool = True) -> bool:
        if s.final_in_flight or (s.speculation_in_flight is not None and s.pending_finals):
            # Nothing to do until the lane brings the final (or the speculation that may be
            # it) back; it wakes the worker. Its audio after the utterance waits for that.
            return s.closed
        if s.pending_finals and not lane_free:
            # Its final waits for a lane (a finishing lane wakes the worker); the stream's
            # audio after the utterance waits for the final.
            return s.closed
        return s.closed or s.has_input() or bool(s.pending_finals) or s.finishing

    def _round(self, sessions: list[StreamSession]) -> None:
        began = time.monotonic()
        audio_before = sum(s.vad_position for s in sessions)
        lags = sorted(s.inbox_samples for s in sessions)
        self._lagging = bool(lags) and lags[len(lags) // 2] > self.options.overload_lag_s * (
            SAMPLE_RATE_HZ
        )
        cpu = time.thread_time()
        for s in sessions:
            if s.closed:
                self._drop(s)
                continue
            s.ingest()
        cpu = self._charge("vad", cpu)
        live = [s for s in sessions if not s.closed]
        self._cancel_void_speculations()
        cpu = self._take_lane(cpu)
        finals = [
            _FinalJob(s, s.pending_finals[0])
            for s in live
            if s.pending_finals
            and not s.final_in_flight
            and s.speculation_in_flight is None
            and not self._emit_speculation(s, s.pending_finals[0])
        ]
        if self._lanes and not self._idle_lanes():
            if finals:
                self._yield_partials()  # its lane takes them as soon as it stops
            finals = []  # they wait for a lane (decided then: reduced or not)
        if finals and self._reduce_finals(len(finals), len(live)):
            for job in finals:
                job.reduced = True
            self._reduced_until = time.monotonic() + _BUSY_WINDOW_S
        finals = self._share_finals(finals)
        if finals:
            self._run_finals(finals)
            cpu = self._charge("finals", cpu)
        speculative = self._share_speculations(self._due_speculations(live), live)
        if speculative:
            self._run_finals(speculative)
            cpu = self._charge("speculative", cpu)
        cpu = self._partials_round(live, cpu)
        for s in live:
            if s.finishing and not s.pending_finals and not s.has_input():
                self._retire(s)
            else:
                s.mark_idle_if_done()
        audio_after = sum(s.vad_position for s in sessions)
        self._account(began, (audio_after - audio_before) / SAMPLE_RATE_HZ)

    def _cpu_totals(self) -> dict[str, float]:
        totals = dict(self._cpu)
        for lane in self._lanes:
            for kind, seconds in lane.cpu_s.items():
                totals[kind] = totals.get(kind, 0.0) + seconds
        return totals

    def _charge(self, phase: str, since: float) -> float:
        """Add the worker's CPU time since ``since`` to ``phase``; returns the time now.

        With one intra-op thread ONNX Runtime computes on the worker thread, so this is the
        engine's whole cost; with more, their threads' time is not included.
        """
        now = time.thread_time()
        self._cpu[phase] = self._cpu.get(phase, 0.0) + now - since
        return now

    def _drop(self, s: StreamSession) -> None:
        with self._cv:
            self._sessions.pop(s.id, None)
        s.end()

    def _retire(self, s: StreamSession) -> None:
        s.utterance = None
        with self._cv:
            self._sessions.pop(s.id, None)
        s.end()

    # ---- load control

    def _account(self, began: float, audio_s: float) -> None:
        now = time.monotonic()
        self._busy.append((now, now - began, audio_s))
        while self._busy and self._busy[0][0] < now - _BUSY_WINDOW_S:
            self._busy.popleft()
        wall = min(_BUSY_WINDOW_S, now - self._started_at)
        share = sum(b for _, b, _ in self._busy) / wall if wall > 0.5 else 0.0
        self._share = share
        if self._lanes:
            # Partials are stretched when the worker or the lanes (on average) are short of
            # time: they share the machine's cores (with whatever else runs there too).
            busy = 0.0
            for lane in self._lanes:
                walls = lane.busy_wall
                while walls and walls[0][0] < now - _BUSY_WINDOW_S:
                    walls.popleft()
                busy += sum(b for _, b in walls)
            lanes = busy / (wall * len(self._lanes)) if wall > 0.5 else 0.0
            share = max(share, lanes)
            self._share = share
        while self._recent_finals and self._recent_finals[0][0] < now - _BUSY_WINDOW_S:
            self._recent_finals.popleft()
        late = sorted(lat for _, lat in self._recent_finals)
        median_late = late[len(late) // 2] if late else 0.0
        # Partials give way first when finals slow down: the lanes' busy share does not see a
        # machine whose cores are taken by others, the finals' latency does.
        slow = median_late > self.options.adaptive_final_s
        # One step per adjustment period: the busy share is a 5-s average, so reacting to
        # every round would compound the same measurement many times.
        if self.options.adaptive_partials and now - self._scale_changed_at >= _SCALE_PERIOD_S:
            if share > _BUSY_HIGH or slow:
                self._partial_scale = min(_MAX_PARTIAL_SCALE, self._partial_scale * _SCALE_STEP)
                self._scale_changed_at = now
            elif share < _BUSY_LOW and self._partial_scale > 1.0:
                self._partial_scale = max(1.0, self._partial_scale / _SCALE_STEP)
                self._scale_changed_at = now
        # Overload is about finals only: a busy worker with stretched partials is the policy
        # working. Finals fall behind when the median stream's audio waits for the VAD (the
        # worker cannot even read it in real time) or recent finals come late.
        finals_late = median_late > self.options.overload_final_s
        # Held for a while: the lag drains between bursts, and a new stream admitted in such a
        # pause would push every stream behind again.
        if finals_late or self._lagging:
            self._overload_until = now + _OVERLOAD_HOLD_S
        self._overloaded = now < self._overload_until

    _lagging = False
    _reduced_until = 0.0  # finals were reduced lately: speculations are too, until then
    _overload_until = 0.0
    _share = 0.0

    def _is_overloaded(self) -> bool:
        # Rounds only run while there is work, so the flag is re-read against the clock here:
        # it ends when its hold time does, and with no stream open nothing can be behind.
        return self._overloaded and bool(self._sessions) and time.monotonic() < self._overload_until

    # ---- partials

    def _due_partials(self, sessions: list[StreamSession]) -> list[_PartialJob]:
        jobs: list[_PartialJob] = []
        min_samples = self.options.min_partial_ms * SAMPLE_RATE_HZ // 1000
        for s in sessions:
            utt = s.utterance
            if utt is None or not s.options.interim_results or s.pending_finals or s.finishing:
                continue
            if s.tentative_end is not None:
                continue  # a pause: nothing new to show, and its final may be on the way
            interval = self._interval_samples(s)
            stop = s.vad_position
            if stop - utt.start < min_samples or stop - utt.last_partial_at < interval:
                continue
            # Audio that arrived faster than real time already passed several intervals:
            # one partial for the newest audio replaces all the ones in between.
            missed = (stop - utt.last_partial_at) // interval - 1
            jobs.append(_PartialJob(s, utt.start, stop, max(0, missed)))
        # The stalest first, when there are more than a batch.
        jobs.sort(key=lambda j: j.session.utterance.last_partial_at if j.session.utterance else 0)
        return jobs

    def _interval_samples(self, s: StreamSession) -> int:
        return round(s.options.partial_interval_ms * self._partial_scale * SAMPLE_RATE_HZ / 1000)

    def _bucket_frames(self, samples: int, padding_s: float) -> int:
        frames = samples // _HOP + round(padding_s * 100)
        bucket = 50  # 0.5 s: sessions of similar length share an encoder batch
        frames = -(-frames // bucket) * bucket
        return min(frames, self.model.window_frames)

    def _take_lane(self, cpu: float) -> float:
        """Apply what the lanes finished: partials, or finals handed to them (worker)."""
        for lane in self._lanes:
            cpu = self._apply_lane(lane.take(), cpu)
        return cpu

    def _idle_lanes(self) -> list[_PartialLane]:
        return [lane for lane in self._lanes if not lane.busy]

    def _apply_lane(self, done: _LaneBatch | None, cpu: float) -> float:
        if isinstance(done, _PartialBatch):
            self._apply_partials(done)
            return self._charge("partials", cpu)
        if isinstance(done, _FinalBatch):
            if done in self._speculating:
                self._speculating.remove(done)
            if done.cancelled:
                self._speculations_cancelled += len(done.jobs)
            failed = len(done.texts) != len(done.jobs)
            texts = [""] * len(done.jobs) if failed else done.texts
            for job, request, text in zip(done.jobs, done.requests, texts, strict=True):
                job.session.final_in_flight = False
                job.session.speculation_in_flight = None
                if failed and job.speculative:
                    continue  # no speculation: the final is decoded when its endpoint comes
                job.audio_start = self._finals.own_start(request)
                job.cpu_s = done.cpu_s / len(done.jobs)
                job.decode_s = done.decode_s
                self._emit_final(job, text)
            return self._charge("finals", cpu)
        return cpu

    def _reduce_finals(self, due: int, streams: int) -> bool:
        """Whether this round's ``due`` finals get the cheaper settings (adaptive_finals).

        Never with one stream: its finals cannot queue behind others', and its results then
        depend on its audio alone whatever the machine's load (a resumed stream's burst of
        audio included).
        """
        o = self.options
        if not o.adaptive_finals or streams < 2:
            return False
        threads = len(self._idle_lanes()) if self._lanes else 1
        if due > threads or self._lagging:
            return True  # some of them would wait for a whole final's decoding
        now = time.monotonic()
        recent = sorted(lat for at, lat in self._recent_finals if at >= now - _BUSY_WINDOW_S)
        return bool(recent) and recent[len(recent) // 2] > o.adaptive_final_s

    def _share_finals(self, finals: list[_FinalJob]) -> list[_FinalJob]:
        """Hand finals to the idle lanes, oldest first, split evenly; returns those to decode here.

        With lanes nothing is decoded on the worker: finals no lane can take now wait for the
        next one free (a lane never takes the last idle lane for partials, so a final waits for
        at most one batch of finals). Each lane decodes its share as one batch
        (:meth:`FinalDecoder.decode`), of at most :data:`_FINALS_PER_LANE`: its results go out
        when the whole batch is done, and a pile of finals that waited (10-12 at once on a
        loaded machine) given to one lane kept the first of them for seconds. Without lanes,
        the worker decodes them all.
        """
        if not self._lanes:
            return finals
        idle = self._idle_lanes()
        if not idle or not finals:
            return []
        finals = sorted(finals, key=lambda job: job.final.triggered_at)
        size = min(_FINALS_PER_LANE, -(-len(finals) // len(idle)))
        for lane, at in zip(idle, range(0, len(finals), size), strict=False):
            give = finals[at : at + size]
            for job in give:
                job.session.final_in_flight = True
            self._submit_to_lane(give, lane)
        return []

    def _share_speculations(
        self, jobs: list[_FinalJob], live: list[StreamSession]
    ) -> list[_FinalJob]:
        """Hand speculations to the idle lanes, split as finals are; none idle: a later round.

        On a lane a speculation that the speaker makes void (a dip inside a sentence) does
        not hold the worker: it goes on reading the stream. The stream's final waits for a
        speculation in flight, which is then usually that final. Those beyond
        :data:`_FINALS_PER_LANE` per idle lane are tried again in the next rounds (while their
        pause lasts; the endpoint's final comes anyway). Without lanes they run here.
        """
        if not self._lanes or not jobs:
            return jobs
        idle = self._idle_lanes()
        if not idle:
            return []
        size = min(_FINALS_PER_LANE, -(-len(jobs) // len(idle)))
        for lane, at in zip(idle, range(0, len(jobs), size), strict=False):
            give = jobs[at : at + size]
            for job in give:
                job.session.speculation_in_flight = (job.final.utterance_id, job.final.stop)
            self._speculating.append(self._submit_to_lane(give, lane))
        return []

    def _cancel_void_speculations(self) -> None:
        """Stop the lanes' speculations whose pause the speakers all ended by talking on.

        A void speculation would hold its lane (and its stream's next speculation) for a
        whole final's decoding; its text could never be used, so stopping it changes no
        result (the final is decoded from its own audio either way).
        """
        for batch in self._speculating:
            if not batch.cancel and all(self._void(job) for job in batch.jobs):
                batch.cancel = True

    @staticmethod
    def _void(job: _FinalJob) -> bool:
        s = job.session
        f = job.final
        if s.closed:
            return True
        if s.pending_finals:
            first = s.pending_finals[0]
            return (first.utterance_id, first.stop) != (f.utterance_id, f.stop)
        utt = s.utterance
        if utt is None or utt.utterance_id != f.utterance_id:
            return True
        return s.tentative_end != f.stop

    def _submit_to_lane(self, jobs: list[_FinalJob], lane: _PartialLane) -> _FinalBatch:
        """Decode ``jobs`` on ``lane``."""
        self._hand_out(jobs)
        batch = _FinalBatch(jobs, [self._final_request(j) for j in jobs])
        lane.submit(batch)
        return batch

    @staticmethod
    def _hand_out(jobs: list[_FinalJob]) -> float:
        """Record that ``jobs`` are decoded from now on, as one batch, from the VAD's position
        (their traces); returns now (monotonic)."""
        now = time.monotonic()
        for job in jobs:
            job.began_at = job.session.vad_position
            job.handed_wall = now
            job.batch = len(jobs)
        return now

    def _final_request(self, job: _FinalJob) -> FinalRequest:
        return FinalRequest(
            job.session,
            job.final.utterance_id,
            job.final.start,
            job.final.stop,
            self._prompt(job.session, timestamps=False),
            reduced=job.reduced,
        )

    def _compute_lane(self, batch: _LaneBatch) -> None:
        """The lane's work; reads sessions' rings and the final decoder's history only."""
        if isinstance(batch, _PartialBatch):
            self._compute_partials(batch)
        else:
            cpu, wall = time.thread_time(), time.monotonic()
            try:
                batch.texts = self._finals.decode(
                    batch.requests, self.options.max_batch, lambda: batch.cancel
                )
            except DecodingCancelled:
                batch.texts = []
                batch.cancelled = True
            batch.cpu_s = time.thread_time() - cpu
            batch.decode_s = time.monotonic() - wall

    def _partials_round(self, live: list[StreamSession], cpu: float) -> float:
        """Start the next batch of partials (on a lane, or here without lanes).

        Partials never take the last idle lane: it is kept for the next final (or
        speculation), which then never waits behind a batch of partials.
        """
        if not self._lanes:
            jobs = self._due_partials(live)
            if jobs:
                self._run_partials(jobs)
                cpu = self._charge("partials", cpu)
            return cpu
        idle = self._idle_lanes()
        if len(idle) >= 2:
            jobs = self._due_partials(live)
            if jobs:
                idle[0].submit(self._prepare_partials(jobs))
                cpu = self._charge("partials", cpu)
        return cpu

    def _run_partials(self, jobs: list[_PartialJob]) -> None:
        """One batch of partials: the stalest job and others of its length, up to max_batch.

        The rest wait for the next round, so that an utterance that ends meanwhile gets its
        final after at most one batch of partials, however many streams are open.
        """
        batch = self._prepare_partials(jobs)
        self._compute_partials(batch)
        self._apply_partials(batch)

    def _prepare_partials(self, jobs: list[_PartialJob]) -> _PartialBatch:
        """The batch to compute, with everything it needs copied out of the sessions (worker)."""
        pad = self.options.context_pad_ms * SAMPLE_RATE_HZ // 1000
        groups: dict[int, list[tuple[_PartialJob, np.ndarray]]] = {}
        for job in jobs:
            audio = job.session.ring.read(max(job.start - pad, job.session.ring.start), job.stop)
            frames = self._bucket_frames(audio.shape[0], self.options.partial_padding_s)
            groups.setdefault(frames, []).append((job, audio))
        frames = next(iter(groups))  # jobs come stalest first
        members = groups[frames][: self.options.max_batch]
        for job, _ in members:
            job.session.partial_in_flight = True
        return _PartialBatch(
            jobs=[j for j, _ in members],
            mel=np.stack(
                [
                    encoder_input(a, self.model.n_mels, frames, self.model.window_frames)
                    for _, a in members
                ]
            ),
            prompts=[self._prompt(j.session, timestamps=False) for j, _ in members],
            prefixes=[
                list(j.session.utterance.agreement.committed_tokens) if j.session.utterance else []
                for j, _ in members
            ],
            budgets=[max_new_tokens_for(a.shape[0] / SAMPLE_RATE_HZ) for _, a in members],
            utterance_ids=[
                j.session.utterance.utterance_id if j.session.utterance else -1 for j, _ in members
            ],
        )

    def _compute_partials(self, batch: _PartialBatch) -> None:
        """Encode and decode a prepared batch; touches no session (safe on the lane)."""
        cross = self.model.encode(batch.mel)
        try:
            batch.hyps = greedy_decode(
                self.model,
                cross,
                batch.prompts,
                batch.prefixes,
                batch.budgets,
                lambda: batch.cancel,
            )
        except DecodingCancelled:
            batch.hyps = []  # applied as a failed batch: its sessions' partials are due again
            self._partials_cancelled += 1

    _partials_cancelled = 0  # partial batches stopped for finals (lane threads write)

    def _yield_partials(self) -> None:
        """Finals wait and no lane is idle: stop the partial batch in flight (worker)."""
        for lane in self._lanes:
            batch = lane.current
            if lane.busy and isinstance(batch, _PartialBatch):
                batch.cancel = True

    def _apply_partials(self, batch: _PartialBatch) -> None:
        """Agreement, stable text and results of a computed batch (worker)."""
        tok = self.model.tokenizer
        if len(batch.hyps) != len(batch.jobs):  # the computation failed
            for job in batch.jobs:
                job.session.partial_in_flight = False
            return
        for job, hyp, utterance_id, prefix in zip(
            batch.jobs, batch.hyps, batch.utterance_ids, batch.prefixes, strict=True
        ):
            s = job.session
            s.partial_in_flight = False
            utt = s.utterance
            if (
                utt is None
                or utt.utterance_id != utterance_id
                or len(utt.agreement.committed_tokens) != len(prefix)
            ):
                continue  # the utterance ended (its final is due) while this was computed
            s.partial_done(job.stop)
            if job.missed:
                s.partials_skipped += job.missed
                self._partials_skipped += job.missed
            if hyp.truncated or hyp.compression_ratio > _LOOP_COMPRESSION:
                # A greedy loop ran into the token budget: its words must not reach
                # the agreement, where two looping partials would commit them.
                continue
            if not hyp.prefix_tokens and is_noise(
                hyp.text, hyp.avg_logprob, hyp.no_speech_prob, hyp.compression_ratio
            ):
                continue
            words, groups_ = tok.split_to_word_tokens(list(hyp.new_tokens))
            tail = list(zip(words, (tuple(g) for g in groups_), strict=True))
            agreed = utt.agreement.update(tail)
            committed = tok.decode(utt.agreement.committed_tokens).strip()
            utt.committed_text = committed
            rest = tok.decode([t for _, g in tail[agreed:] for t in g])
            text = (committed + rest).strip() if committed else rest.strip()
            if not text.startswith(committed):
                text = committed
            if not text:
                continue
            utt.shown_text = True
            s.partials_emitted += 1
            s.emit(
                StreamResult(
                    utterance_id=utt.utterance_id,
                    is_final=False,
                    text=text,
                    stable_text=committed,
                    stability=len(committed) / len(text) if text else 0.0,
                    start_s=job.start / SAMPLE_RATE_HZ,
                    end_s=job.stop / SAMPLE_RATE_HZ,
                    audio_processed_s=s.audio_processed_s,
                )
            )

    # ---- finals

    def _run_finals(self, jobs: list[_FinalJob]) -> None:
        # Decoding is in _final.py: earlier utterances' audio and text as context, word timings.
        requests = [self._final_request(j) for j in jobs]
        now = self._hand_out(jobs)
        cpu = time.thread_time()
        texts = self._finals.decode(requests, self.options.max_batch)
        cpu = time.thread_time() - cpu
        wall = time.monotonic() - now
        for job, request, text in zip(jobs, requests, texts, strict=True):
            job.audio_start = self._finals.own_start(request)
            job.cpu_s = cpu / len(jobs)
            job.decode_s = wall
            self._emit_final(job, text)

    # ---- speculative finals

    def _due_speculations(self, sessions: list[StreamSession]) -> list[_FinalJob]:
        """Finals worth decoding now: utterances in a pause that already holds their tail."""
        if not self.options.speculative_finals:
            return []
        if self.options.adaptive_partials and self._share > _BUSY_HIGH:
            return []  # no spare compute for work that may be wasted
        o = self.options
        pause = o.speculation_pause_ms
        if len(sessions) > 1:
            pause = max(pause, _SHARED_PAUSE_MS)  # wasted work now takes CPU from others
        tail = (o.final_tail_ms + pause) * SAMPLE_RATE_HZ // 1000
        # While finals are being reduced, so are speculations: a full one costs two to three
        # reduced finals, and with finals that close together it rarely comes out earlier.
        reduced = o.adaptive_finals and len(sessions) > 1 and time.monotonic() < self._reduced_until
        jobs: list[_FinalJob] = []
        for s in sessions:
            utt = s.utterance
            stop = s.tentative_end
            if utt is None or stop is None or s.pending_finals or s.finishing:
                continue
            if s.speculation_in_flight is not None:
                continue  # one at a time per stream (they share its word-timing record)
            spec = s.speculation
            if spec is not None and spec.utterance_id == utt.utterance_id and spec.stop == stop:
                continue  # this pause's final is decoded already
            if s.vad_position < stop + tail:
                continue
            pending = PendingFinal(
                utterance_id=utt.utterance_id,
                start=utt.start,
                stop=max(stop, utt.start),
                triggered_at=time.monotonic(),
                committed_tokens=tuple(utt.agreement.committed_tokens),
                committed_text=utt.committed_text,
                shown_text=utt.shown_text,
                last_partial_at=utt.last_partial_at,
            )
            jobs.append(_FinalJob(s, pending, speculative=True, reduced=reduced))
        # Speculations due together beyond the idle lanes are reduced as such finals are
        # (streams opened together pause together: their first finals, with the temperature
        # fallback, cost up to a second of CPU each).
        if jobs and not reduced and self._reduce_finals(len(jobs), len(sessions)):
            for job in jobs:
                job.reduced = True
        return jobs

    def _keep_speculation(self, job: _FinalJob, decoded: str) -> None:
        s = job.session
        if s.speculation is not None:
            s.speculations_wasted += 1  # the speaker went on after the earlier pause
            self._speculations_wasted += 1
        f = job.final
        s.speculation = Speculation(
            f.utterance_id,
            f.start,
            f.stop,
            decoded,
            job.audio_start,
            time.monotonic(),
            began_at=job.began_at,
            cpu_s=job.cpu_s,
            reduced=job.reduced,
            decode_s=job.decode_s,
            batch=job.batch,
        )

    def _emit_speculation(self, s: StreamSession, f: PendingFinal) -> bool:
        """Emit ``f`` from a speculation decoded on exactly its audio; False if there is none."""
        spec = s.speculation
        if spec is None:
            return False
        s.speculation = None
        if (spec.utterance_id, spec.start, spec.stop) != (f.utterance_id, f.start, f.stop):
            s.speculations_wasted += 1
            self._speculations_wasted += 1
            return False
        s.speculations_used += 1
        self._speculations_used += 1
        job = _FinalJob(
            s,
            f,
            audio_start=spec.audio_start,
            reduced=spec.reduced,
            began_at=spec.began_at,
            cpu_s=spec.cpu_s,
            decode_s=spec.decode_s,
            batch=spec.batch,
        )
        self._emit_final(job, spec.text, speculated=True)
        return True

    _speculations_used = 0
    _speculations_wasted = 0
    _speculations_cancelled = 0

    def _emit_final(self, job: _FinalJob, decoded: str, *, speculated: bool = False) -> None:
        if job.speculative:
            self._keep_speculation(job, decoded)
            return
        s = job.session
        f = job.final
        if job.reduced:
            self._finals_reduced += 1
        else:
            self._finals_full += 1
        self.final_trace.append(
            FinalTrace(
                s.id,
                f.utterance_id,
                f.stop,
                job.began_at,
                s.vad_position,
                job.cpu_s,
                speculated,
                job.reduced,
                wait_s=0.0 if speculated else max(0.0, job.handed_wall - f.triggered_at),
                decode_s=job.decode_s,
                batch=job.batch,
            )
        )
        text = (
            merge_committed(f.committed_text, decoded)
            if self.options.final_keeps_committed
            else decoded.strip()
        )
        s.final_done(f)
        if s.options.interim_results:
            # Speech that ended before any partial reached it (audio sent faster than real
            # time is read to its end in one go): those refreshes were skipped, not queued.
            missed = (f.stop - f.last_partial_at) // self._interval_samples(s)
            if missed > 0:
                s.partials_skipped += missed
                self._partials_skipped += missed
        if text:
            tokens = self.model.tokenizer.encode(" " + text)
            s.previous_final = (job.audio_start, tuple(tokens[-_MAX_CONTEXT_TOKENS:]))
            self._finals.remember(s, job.audio_start, tokens)
        if not text and not f.shown_text:
            return  # nothing was said and nothing was shown: no result at all
        s.finals_emitted += 1
        now = time.monotonic()
        self._latencies.append(max(0.0, now - f.triggered_at))
        self._recent_finals.append((now, max(0.0, now - f.triggered_at)))
        s.emit(
            StreamResult(
                utterance_id=f.utterance_id,
                is_final=True,
                text=text,
                stable_text=text,
                stability=1.0,
                start_s=f.start / SAMPLE_RATE_HZ,
                end_s=f.stop / SAMPLE_RATE_HZ,
                audio_processed_s=s.audio_processed_s,
                words=self._finals.words_for(s, f.utterance_id, f.start, f.stop, text),
            )
        )

    def _prompt(self, s: StreamSession, *, timestamps: bool) -> list[int]:
        tok = self.model.tokenizer
        language = s.options.language or ("en" if tok.multilingual else None)
        prompt = list(tok.sot_sequence(language if tok.multilingual else None))
        if not timestamps:
            prompt.append(tok.no_timestamps)
        return prompt


# gzip ratio of a partial's new text above which it is taken for a repetition loop (Whisper
# rejects 2.4 for whole windows; partials are short, so a loop shows at a lower ratio).
_LOOP_COMPRESSION = 2.0


def merge_committed(committed: str, decoded: str) -> str:
    """``decoded`` with its start replaced by the ``committed`` words shown in partials.

    Committed words never change, so the final is the committed text followed by whatever
    the final decoding says after the point that best aligns with the committed words.
    """
    committed = committed.strip()
    decoded = decoded.strip()
    if not committed:
        return decoded
    c = [_norm(w) for w in committed.split()]
    words = decoded.split()
    d = [_norm(w) for w in words]
    # Edit distance of all of c against every prefix of d, in one table.
    prev = list(range(len(d) + 1))
    for i in range(1, len(c) + 1):
        cur = [i] + [0] * len(d)
        for j in range(1, len(d) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (c[i - 1] != d[j - 1]))
        prev = cur
    best = min(range(len(d) + 1), key=lambda k: (prev[k], abs(k - len(c))))
    rest = " ".join(words[best:])
    return f"{committed} {rest}" if rest else committed


def _norm(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]
