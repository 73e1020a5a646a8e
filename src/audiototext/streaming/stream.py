"""One client stream: audio in (any rate and channel count), speech events and results out.

A stream is data the recognizer decodes. Threads: :meth:`RecognitionStream.accept`, :meth:`flush`
and :meth:`finish` are called on the event loop and only resample and queue audio (cheap,
bounded work), then call the ``wake`` callback the recognizer passed in. Everything else (VAD,
utterance state) happens on the recognizer's worker thread, which owns the fields marked
"worker" below; ``schedule`` and ``final_history`` belong to the recognizer's scheduler and
final decoder (``state.py`` says who writes what). The two sides meet in the inbox (under
``_lock``) and the outbox (a deque, whose appends and pops are atomic, plus a loop-side
wake-up).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np
import soxr
from numpy.typing import NDArray

from audiototext.audio import SAMPLE_RATE_HZ, SileroVad, SpeechEndpointDetector, VadOptions
from audiototext.audio import SpeechEventKind as VadEventKind
from audiototext.streaming._ring import SampleRing
from audiototext.streaming.checkpoint import StreamCheckpoint
from audiototext.streaming.state import (
    FinalHistory,
    OpenUtterance,
    PendingFinal,
    StreamSchedule,
)
from audiototext.streaming.types import (
    SPEECH_PAD_MS,
    BufferFullError,
    SpeechEvent,
    SpeechEventKind,
    StreamOptions,
    StreamResult,
)

__all__ = ["RecognitionStream", "stream_detector"]

FloatArray = NDArray[np.float32]
MIN_RATE_HZ = 8_000
MAX_RATE_HZ = 48_000
MAX_CHANNELS = 8
# Pieces the VAD is fed at once: large enough to amortise an ONNX call, small enough that
# ingestion can stop soon after an utterance ends.
_VAD_PIECE = 8 * 512
_RESAMPLE_QUALITY = "HQ"


class _Control(enum.Enum):
    FLUSH = "flush"
    FINISH = "finish"


@dataclass
class _Chunk:
    samples: FloatArray  # 16 kHz mono
    accepted_at: float  # time.monotonic() when accept() took it


@dataclass
class _Marker:
    kind: _Control
    requested_at: float


_END = object()  # the outbox's end-of-stream sentinel


def _no_wake() -> None:
    """The wake callback of an ended stream."""


def stream_detector(vad: SileroVad, options: StreamOptions) -> SpeechEndpointDetector:
    """The speech endpoint detector of a stream with ``options`` (its own VAD state)."""
    return SpeechEndpointDetector(
        vad,
        VadOptions(
            threshold=options.vad_threshold,
            min_silence_duration_ms=options.endpoint_silence_ms,
            max_speech_duration_s=options.max_segment_s,
            speech_pad_ms=SPEECH_PAD_MS,
            start_pad_ms=options.prefix_padding_ms,
        ),
    )


class RecognitionStream:
    """A client stream; create with :meth:`StreamingRecognizer.open`."""

    def __init__(
        self,
        wake: Callable[[], None],
        session_id: int,
        options: StreamOptions,
        detector: SpeechEndpointDetector,
        ring_capacity_s: float,
    ) -> None:
        self.id = session_id
        self.options = options
        # Without options.language on a multilingual model: the language found in its first
        # decoded audio (set by the lane that decoded it; see _language.py).
        self.detected_language: str | None = None
        # options.prompt's tokens (set by the recognizer, which has the tokenizer).
        self.prompt_tokens: tuple[int, ...] = ()
        self._wake = wake  # tells the recognizer's worker there is something to do
        self._lock = threading.Lock()
        # -- shared (under _lock)
        self._inbox: collections.deque[_Chunk | _Marker] = collections.deque()
        self._inbox_samples = 0
        self._received = 0  # 16 kHz samples accepted
        self._finish_requested = False
        self._closed = False
        self._idle = True  # nothing queued and the worker has finished with this session
        # -- loop side
        self._resampler: soxr.ResampleStream | None = None
        self._resampler_rate = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._done: asyncio.Event | None = None
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        # -- outbox (worker appends, loop pops)
        self._outbox: collections.deque[object] = collections.deque()
        self._ended = threading.Event()
        # -- worker
        self.detector = detector
        self.detector_base = 0  # absolute sample of the detector's sample 0
        self.ring = SampleRing(round(ring_capacity_s * SAMPLE_RATE_HZ))
        self.vad_position = 0  # absolute samples seen by the VAD
        self.utterance: OpenUtterance | None = None
        self.pending_finals: collections.deque[PendingFinal] = collections.deque()
        self.pending_final_samples = 0
        self.next_utterance_id = 0
        self.last_utterance_stop = 0  # absolute sample where the previous utterance ended
        # (absolute sample where an accepted chunk ends, when it was accepted), the latest
        # few seconds: the wall time of an utterance's end of speech, for its final's latency
        self._accepted_ends: collections.deque[tuple[int, float]] = collections.deque(maxlen=1024)
        self.processed = 0  # absolute sample through which results are settled
        self.finishing = False
        # -- owned by the recognizer's scheduler and final decoder (see state.py)
        self.schedule = StreamSchedule()
        self.final_history = FinalHistory()
        # A checkpoint per final that went out (worker puts, loop pops: single dict operations)
        # when the server keeps sessions where another process can resume them.
        self.keep_checkpoints = False
        self.checkpoints: dict[int, StreamCheckpoint] = {}

    # ------------------------------------------------------------------ loop side: input

    @property
    def audio_received_s(self) -> float:
        return self._received / SAMPLE_RATE_HZ

    @property
    def audio_processed_s(self) -> float:
        """Stream time through which audio is transcribed or known to hold no speech."""
        return self.processed / SAMPLE_RATE_HZ

    @property
    def buffered_s(self) -> float:
        """Audio waiting unprocessed: not yet seen by the VAD, or ended and awaiting a final."""
        with self._lock:
            return (self._inbox_samples + self.pending_final_samples) / SAMPLE_RATE_HZ

    def accept(self, audio: NDArray[np.floating], sample_rate_hz: int, channels: int = 1) -> None:
        """Queue interleaved float samples at ``sample_rate_hz``; never blocks on inference.

        Raises ``ValueError`` for unusable audio and :class:`BufferFullError` when more than
        ``max_buffered_s`` would wait unprocessed (the chunk is then dropped whole).
        """
        if self._finish_requested or self._closed:
            raise ValueError("the stream is finished; open a new one")
        if not MIN_RATE_HZ <= sample_rate_hz <= MAX_RATE_HZ:
            raise ValueError(
                f"sample_rate_hz must be between {MIN_RATE_HZ} and {MAX_RATE_HZ}, "
                f"got {sample_rate_hz}"
            )
        if not 1 <= channels <= MAX_CHANNELS:
            raise ValueError(f"channels must be between 1 and {MAX_CHANNELS}, got {channels}")
        samples = np.asarray(audio, dtype=np.float32).reshape(-1)
        if samples.shape[0] % channels:
            raise ValueError(
                f"{samples.shape[0]} samples do not divide into {channels} interleaved channels"
            )
        if not np.isfinite(samples).all():
            raise ValueError("audio contains NaN or infinite samples")
        if samples.size == 0:
            return
        mono = samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples
        incoming_s = mono.shape[0] / sample_rate_hz
        limit_s = self.options.max_buffered_s
        # Checked before resampling so that a refused chunk leaves the resampler untouched.
        # Only audio the engine has not read yet counts: an utterance that ends moves its
        # (already read) audio to the pending final at once, and a client that respected the
        # credit it was given must not be refused for that jump. Pending finals are bounded
        # by max_segment_s and reported as lag, which lowers the credit instead.
        with self._lock:
            unread_s = self._inbox_samples / SAMPLE_RATE_HZ
        if unread_s + incoming_s > limit_s:
            raise BufferFullError(
                f"more than {limit_s:g} s of audio would wait unprocessed "
                f"({unread_s:.1f} s queued, {incoming_s:.2f} s sent); send at real "
                "time or wait for acknowledgements"
            )
        converted = self._resample(mono, sample_rate_hz)
        if converted.size == 0:
            return
        with self._lock:
            self._inbox.append(_Chunk(converted, time.monotonic()))
            self._inbox_samples += converted.shape[0]
            self._received += converted.shape[0]
            self._idle = False
        self._wake()

    def _resample(self, mono: FloatArray, rate: int) -> FloatArray:
        if rate != self._resampler_rate:
            # A stream that changes rate mid-way: drain the old resampler's delay line first.
            tail = self._drain_resampler()
            self._resampler_rate = rate
            self._resampler = (
                None
                if rate == SAMPLE_RATE_HZ
                else soxr.ResampleStream(
                    rate, SAMPLE_RATE_HZ, 1, dtype="float32", quality=_RESAMPLE_QUALITY
                )
            )
            if tail.size:
                mono_out = self._resample_now(mono)
                return np.concatenate([tail, mono_out])
        return self._resample_now(mono)

    def _resample_now(self, mono: FloatArray) -> FloatArray:
        if self._resampler is None:
            return np.ascontiguousarray(mono, dtype=np.float32)
        out = self._resampler.resample_chunk(np.ascontiguousarray(mono), last=False)
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def _drain_resampler(self) -> FloatArray:
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        out = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._resampler = None
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def _queue_tail(self) -> None:
        tail = self._drain_resampler()
        self._resampler_rate = 0
        if tail.size:
            with self._lock:
                self._inbox.append(_Chunk(tail, time.monotonic()))
                self._inbox_samples += tail.shape[0]
                self._received += tail.shape[0]

    def unread_samples(self) -> FloatArray:
        """The audio accepted and not yet read by the VAD (a copy)."""
        with self._lock:
            chunks = [item.samples for item in self._inbox if isinstance(item, _Chunk)]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)

    def restore_input(
        self, unread: FloatArray, *, pending_final_samples: int, received: int
    ) -> None:
        """Queue a checkpoint's unread audio (:func:`~.checkpoint.restore_checkpoint`)."""
        with self._lock:
            if unread.size:
                self._inbox.append(_Chunk(unread, time.monotonic()))
                self._inbox_samples += unread.shape[0]
            self._received = received
            self.pending_final_samples = pending_final_samples
            self._idle = not unread.size and not pending_final_samples
        self._wake()

    def pop_checkpoint(self, utterance_id: int) -> StreamCheckpoint | None:
        """The checkpoint taken when this utterance's final went out (once)."""
        return self.checkpoints.pop(utterance_id, None)

    def flush(self) -> None:
        """End the current utterance now: its final comes without waiting for silence."""
        if self._finish_requested or self._closed:
            return
        self._queue_tail()
        with self._lock:
            self._inbox.append(_Marker(_Control.FLUSH, time.monotonic()))
            self._idle = False
        self._wake()

    def request_finish(self) -> None:
        """Start :meth:`finish` without waiting for it (for callers outside a loop)."""
        if self._finish_requested or self._closed:
            return
        self._queue_tail()
        with self._lock:
            self._finish_requested = True
            self._inbox.append(_Marker(_Control.FINISH, time.monotonic()))
        self._wake()

    async def finish(self) -> None:
        """Finalise everything sent so far, end :meth:`events`, and release the session."""
        self._bind_loop()
        self.request_finish()
        done = self._done
        if done is None:  # pragma: no cover - _bind_loop always sets it
            raise RuntimeError("finish() needs a running event loop")
        while not self._ended.is_set():
            await done.wait()

    def close(self) -> None:
        """Drop the stream without a final (a client that went away); ends :meth:`events`."""
        with self._lock:
            self._closed = True
            self._inbox.clear()
            self._inbox_samples = 0
        self._wake()

    @property
    def idle(self) -> bool:
        """Whether everything accepted so far has been through the VAD and the model.

        Lets tests and benchmarks feed faster than real time yet deterministically: feed a
        chunk, wait until idle, feed the next.
        """
        with self._lock:
            return self._idle

    async def wait_idle(self, poll_s: float = 0.002) -> None:
        """Wait until :attr:`idle` (or the stream has ended)."""
        while not self.idle and not self.ended:
            await asyncio.sleep(poll_s)

    # ------------------------------------------------------------------ loop side: output

    def _bind_loop(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
            self._done = asyncio.Event()
            if self._ended.is_set():
                self._done.set()

    async def events(self) -> AsyncIterator[StreamResult | SpeechEvent]:
        """Results and speech events in stream order, until :meth:`finish` (or close)."""
        self._bind_loop()
        wakeup = self._wakeup
        if wakeup is None:  # pragma: no cover - set by _bind_loop
            raise RuntimeError("events() needs a running event loop")
        while True:
            while self._outbox:
                item = self._outbox.popleft()
                if item is _END:
                    return
                if isinstance(item, StreamResult | SpeechEvent):
                    yield item
            wakeup.clear()
            if self._outbox:
                continue
            await wakeup.wait()

    # ------------------------------------------------------------------ worker side

    def _notify(self) -> None:
        loop = self._loop
        if loop is None or self._wakeup is None:
            return  # nobody listens yet; events() drains the outbox when it starts
        try:
            loop.call_soon_threadsafe(self._wakeup.set)
            if self._ended.is_set() and self._done is not None:
                loop.call_soon_threadsafe(self._done.set)
        except RuntimeError:  # the loop is closed: the consumer is gone
            pass

    def emit(self, item: StreamResult | SpeechEvent) -> None:
        self._outbox.append(item)
        self._notify()

    def retire(self) -> None:
        """End a finished stream whose last final is out (worker)."""
        self.utterance = None
        self.end()

    def end(self) -> None:
        self._ended.set()
        self._outbox.append(_END)
        self._notify()
        # Nothing is left for the worker: let go of the recognizer (and so its model), which
        # a server may unload while it keeps this ended stream for a client's resume.
        self._wake = _no_wake

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def take_input(self) -> _Chunk | _Marker | None:
        with self._lock:
            if not self._inbox:
                return None
            item = self._inbox.popleft()
            if isinstance(item, _Chunk):
                self._inbox_samples -= item.samples.shape[0]
            return item

    def give_back(self, chunk: _Chunk) -> None:
        with self._lock:
            self._inbox.appendleft(chunk)
            self._inbox_samples += chunk.samples.shape[0]

    def mark_idle_if_done(self) -> None:
        with self._lock:
            if (
                not self._inbox
                and not self.pending_finals
                and not self.schedule.partial_in_flight
                and self.schedule.speculation_in_flight is None
            ):
                self._idle = True

    def has_input(self) -> bool:
        with self._lock:
            return bool(self._inbox)

    @property
    def inbox_samples(self) -> int:
        with self._lock:
            return self._inbox_samples

    def ingest(self) -> None:
        """Run the VAD over queued audio until an utterance ends (worker).

        Stops after the first utterance end so that the ring only ever has to hold one
        utterance awaiting its final, whatever the client sends.
        """
        while not self.pending_finals:
            item = self.take_input()
            if item is None:
                return
            if isinstance(item, _Marker):
                self._end_of_input(item)
                if item.kind is _Control.FINISH:
                    self.finishing = True
                continue
            samples = item.samples
            end = self.vad_position + samples.shape[0]
            if not self._accepted_ends or self._accepted_ends[-1][0] < end:
                self._accepted_ends.append((end, item.accepted_at))
            used = 0
            while used < samples.shape[0]:
                piece = samples[used : used + _VAD_PIECE]
                used += piece.shape[0]
                self.ring.append(piece)
                for event in self.detector.feed(piece):
                    self._on_vad_event(
                        event.kind, self.detector_base + event.sample, item.accepted_at
                    )
                self.vad_position += piece.shape[0]
                if self.pending_finals and used < samples.shape[0]:
                    self.give_back(_Chunk(samples[used:], item.accepted_at))
                    break
            self._advance_processed()

    def _end_of_input(self, marker: _Marker) -> None:
        for event in self.detector.flush():
            self._on_vad_event(event.kind, self.detector_base + event.sample, marker.requested_at)
        # The detector restarts at its sample 0; map that to where the stream now is.
        self.detector_base = self.vad_position
        if self.utterance is not None:
            # Too short for the VAD to call speech: close it anyway if partials showed text.
            self._close_utterance(self.vad_position, marker.requested_at)
        self._advance_processed()

    def _on_vad_event(self, kind: VadEventKind, sample: int, when: float) -> None:
        if kind is VadEventKind.START:
            if self.utterance is not None:
                return
            start = max(sample, self.last_utterance_stop)
            self.utterance = OpenUtterance(self.next_utterance_id, start, last_partial_at=start)
            self.next_utterance_id += 1
            self.emit(SpeechEvent(SpeechEventKind.BEGIN, start / SAMPLE_RATE_HZ))
        elif self.utterance is not None:
            self._close_utterance(sample, when)

    def _close_utterance(self, stop: int, when: float) -> None:
        utt = self.utterance
        if utt is None:
            return
        stop = max(stop, utt.start)
        self.emit(SpeechEvent(SpeechEventKind.END, stop / SAMPLE_RATE_HZ))
        self.pending_finals.append(
            PendingFinal(
                utterance_id=utt.utterance_id,
                start=utt.start,
                stop=stop,
                triggered_at=when,
                committed_tokens=tuple(utt.agreement.committed_tokens),
                committed_text=utt.committed_text,
                shown_text=utt.shown_text,
                last_partial_at=utt.last_partial_at,
                speech_end_at=self._accepted_at(stop),
            )
        )
        with self._lock:
            self.pending_final_samples += stop - utt.start
        self.last_utterance_stop = stop
        self.utterance = None

    def _accepted_at(self, sample: int) -> float | None:
        """When the chunk holding absolute ``sample`` was accepted (None: no longer known)."""
        for end, at in self._accepted_ends:
            if end > sample:
                return at
        return None

    @property
    def tentative_end(self) -> int | None:
        """Absolute sample where the open utterance ends if the pause under way lasts (worker)."""
        if self.utterance is None:
            return None
        end = self.detector.tentative_end
        return None if end is None else self.detector_base + end

    def final_done(self, final: PendingFinal) -> None:
        self.pending_finals.remove(final)
        with self._lock:
            self.pending_final_samples -= final.stop - final.start
        self._advance_processed()

    def _advance_processed(self) -> None:
        settled = self.vad_position
        if self.pending_finals:
            settled = min(settled, self.pending_finals[0].start)
        if self.utterance is not None:
            settled = min(settled, max(self.utterance.start, self.utterance.last_partial_at))
        self.processed = max(self.processed, settled)

    def partial_done(self, covered_to: int) -> None:
        if self.utterance is not None:
            self.utterance.last_partial_at = covered_to
        self._advance_processed()
