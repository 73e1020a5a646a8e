"""Voice activity detection with Silero VAD v6 on ONNX Runtime.

* :class:`SileroVad` loads the model once; it is read-only and safe to share across threads and
  streams. Each stream keeps its own :class:`VadState` (the LSTM state and the last 64 samples),
  so probabilities come out the same whether audio arrives at once or in pieces.
* :func:`get_speech_timestamps` finds speech in a whole recording with the algorithm of Silero's
  ``get_speech_timestamps`` (the variant faster-whisper ships, which cuts over-long speech at the
  last silence of at least 98 ms).
* :class:`SpeechEndpointDetector` runs the same algorithm incrementally and reports speech
  start/end events with sample positions, for real-time endpointing.

The model works on 512-sample (32 ms) frames of 16 kHz audio, each preceded by the last
64 samples of the frame before it.

The shipped model is faster-whisper's "sequence" export of Silero VAD v6 (inputs ``input``,
``h``, ``c``); it scores any number of frames per call, which makes whole files fast. Silero's
own per-frame export (inputs ``input``, ``state``, ``sr``, e.g. ``silero_vad.onnx`` from the
``silero-vad`` wheel) is accepted too through ``SileroVad(model_path=...)``.
"""

from __future__ import annotations

import enum
import importlib.resources
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import ArrayLike, NDArray

from audiototext.audio.features import SAMPLE_RATE_HZ
from audiototext.errors import ModelError

__all__ = [
    "CONTEXT_SAMPLES",
    "FRAME_SAMPLES",
    "SAMPLE_RATE_HZ",
    "DetectorSnapshot",
    "SileroVad",
    "SpeechEndpointDetector",
    "SpeechEvent",
    "SpeechEventKind",
    "SpeechSpan",
    "VadOptions",
    "VadState",
    "bundled_model_path",
    "get_speech_timestamps",
    "spans_from_probabilities",
]

FRAME_SAMPLES = 512  # 32 ms
CONTEXT_SAMPLES = 64
_STATE_SHAPE = (2, 1, 128)  # LSTM (h, c), batch 1
# Frames scored per ONNX call on long input: 16 s of audio. The model's activations grow with
# the frames in a call; 512 was both the smallest and the fastest (bench/NOTES.md, round 12).
_MAX_FRAMES_PER_RUN = 512


@dataclass(frozen=True)
class VadOptions:
    """How speech probabilities become speech spans.

    The defaults are Silero's own, tuned for finding speech in files. faster-whisper uses much
    looser ones for transcription (``min_speech_duration_ms=0``, ``min_silence_duration_ms=2000``,
    ``speech_pad_ms=400``); for real-time endpointing a silence of 500-800 ms is typical.

    Attributes:
        threshold: a frame whose probability is at or above this is speech.
        neg_threshold: once in speech, only frames below this count as silence; ``None`` means
            ``max(threshold - 0.15, 0.01)``.
        min_speech_duration_ms: speech shorter than this is dropped.
        max_speech_duration_s: longer speech is split, at the last silence of at least
            ``min_silence_at_max_speech_ms`` if there is one, else just before this length.
        min_silence_duration_ms: silence needed before speech is considered over.
        speech_pad_ms: margin added at both ends of each span.
        start_pad_ms: the streaming detector's margin before a span instead (the audio kept
            before speech starts: OpenAI's ``prefix_padding_ms``); ``None``: ``speech_pad_ms``.
        min_silence_at_max_speech_ms: shortest silence where ``max_speech_duration_s`` may cut.
    """

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_duration_ms: int = 250
    max_speech_duration_s: float = math.inf
    min_silence_duration_ms: int = 100
    speech_pad_ms: int = 30
    min_silence_at_max_speech_ms: int = 98
    start_pad_ms: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.neg_threshold is not None and not 0.0 <= self.neg_threshold <= self.threshold:
            raise ValueError(
                f"neg_threshold must be in [0, threshold={self.threshold}], "
                f"got {self.neg_threshold}"
            )
        if not self.max_speech_duration_s > 0:
            raise ValueError(
                f"max_speech_duration_s must be positive, got {self.max_speech_duration_s}"
            )
        for name in (
            "min_speech_duration_ms",
            "min_silence_duration_ms",
            "speech_pad_ms",
            "min_silence_at_max_speech_ms",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.start_pad_ms is not None and self.start_pad_ms < 0:
            raise ValueError(f"start_pad_ms must be >= 0, got {self.start_pad_ms}")

    @property
    def effective_neg_threshold(self) -> float:
        if self.neg_threshold is not None:
            return self.neg_threshold
        return max(self.threshold - 0.15, 0.01)


@dataclass(frozen=True)
class SpeechSpan:
    """Speech from ``start_sample`` (inclusive) to ``end_sample`` (exclusive) at 16 kHz."""

    start_sample: int
    end_sample: int

    def __post_init__(self) -> None:
        if not 0 <= self.start_sample <= self.end_sample:
            raise ValueError(f"invalid span [{self.start_sample}, {self.end_sample})")

    @property
    def start_s(self) -> float:
        return self.start_sample / SAMPLE_RATE_HZ

    @property
    def end_s(self) -> float:
        return self.end_sample / SAMPLE_RATE_HZ

    @property
    def duration_s(self) -> float:
        return (self.end_sample - self.start_sample) / SAMPLE_RATE_HZ


def bundled_model_path() -> Path | None:
    """The packaged ``silero_vad.onnx`` on disk (the page's VAD loads the same file), or None
    when the package is not installed as files."""
    resource = importlib.resources.files(__package__ or "audiototext.audio")
    path = resource.joinpath("assets", "silero_vad.onnx")
    return path if isinstance(path, Path) and path.is_file() else None


def _zeros_state() -> NDArray[np.float32]:
    return np.zeros(_STATE_SHAPE, dtype=np.float32)


def _zeros_context() -> NDArray[np.float32]:
    return np.zeros(CONTEXT_SAMPLES, dtype=np.float32)


@dataclass
class VadState:
    """What one stream carries from frame to frame: the LSTM state and the last 64 samples."""

    recurrent: NDArray[np.float32] = field(default_factory=_zeros_state)
    context: NDArray[np.float32] = field(default_factory=_zeros_context)


class SileroVad:
    """The Silero VAD model, loaded once; call :meth:`process` with a per-stream state."""

    def __init__(self, model_path: str | os.PathLike[str] | None = None) -> None:
        if model_path is None:
            resource = importlib.resources.files(__package__ or "audiototext.audio")
            model: str | bytes = resource.joinpath("assets", "silero_vad.onnx").read_bytes()
            self.model_name = "silero_vad.onnx (bundled)"
        else:
            model = os.fspath(model_path)
            self.model_name = model
        options = ort.SessionOptions()
        # One frame is tiny: threads only add hand-off latency, and streams run in parallel.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False  # inputs vary in length; don't keep peak memory
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                model, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own untyped exceptions
            raise ModelError(f"{self.model_name}: cannot load the VAD model ({exc})") from exc
        inputs = {node.name for node in self._session.get_inputs()}
        if {"input", "h", "c"} <= inputs:
            self._per_frame = False
        elif {"input", "state", "sr"} <= inputs:
            self._per_frame = True
        else:
            raise ModelError(
                f"{self.model_name}: not a Silero VAD model (inputs {sorted(inputs)}; "
                "expected input/h/c or input/state/sr)"
            )

    def __repr__(self) -> str:
        return f"SileroVad({self.model_name!r})"

    def process(self, audio: ArrayLike, state: VadState) -> NDArray[np.float32]:
        """Speech probability of each 512-sample frame of ``audio``; advances ``state``.

        ``audio`` is 16 kHz mono whose length is a multiple of :data:`FRAME_SAMPLES`.
        """
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim != 1 or samples.shape[0] % FRAME_SAMPLES:
            raise ValueError(
                f"audio must be 1-D with a multiple of {FRAME_SAMPLES} samples, "
                f"got shape {samples.shape}"
            )
        frames = samples.reshape(-1, FRAME_SAMPLES)
        if frames.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        context = np.empty((frames.shape[0], CONTEXT_SAMPLES), dtype=np.float32)
        context[0] = state.context
        context[1:] = frames[:-1, -CONTEXT_SAMPLES:]
        model_input = np.concatenate([context, frames], axis=1)
        run = self._run_per_frame if self._per_frame else self._run_sequence
        probabilities = np.concatenate(
            [
                run(model_input[start : start + _MAX_FRAMES_PER_RUN], state)
                for start in range(0, model_input.shape[0], _MAX_FRAMES_PER_RUN)
            ]
        )
        state.context = frames[-1, -CONTEXT_SAMPLES:].copy()
        return probabilities

    def speech_probabilities(self, audio: ArrayLike) -> NDArray[np.float32]:
        """Probabilities for a whole recording; the last partial frame is zero-padded.

        The recording is scored one run's worth of frames at a time (the same runs, and so the
        same values, as :meth:`process` on the whole padded recording), so memory beyond the
        input is one run's input and activations (~12 MB), not a padded copy and a model input
        of the whole recording.
        """
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"audio must be 1-D (mono), got shape {samples.shape}")
        state = VadState()
        step = _MAX_FRAMES_PER_RUN * FRAME_SAMPLES
        parts = [np.zeros(0, dtype=np.float32)]
        for start in range(0, samples.shape[0], step):
            part = samples[start : start + step]
            remainder = part.shape[0] % FRAME_SAMPLES
            if remainder:
                part = np.pad(part, (0, FRAME_SAMPLES - remainder))
            parts.append(self.process(part, state))
        return np.concatenate(parts)

    def _run_sequence(
        self, model_input: NDArray[np.float32], state: VadState
    ) -> NDArray[np.float32]:
        probabilities, h, c = self._session.run(
            None,
            {"input": model_input, "h": state.recurrent[0:1], "c": state.recurrent[1:2]},
        )
        state.recurrent = np.concatenate([h, c]).astype(np.float32, copy=False)
        return np.asarray(probabilities, dtype=np.float32).reshape(-1)

    def _run_per_frame(
        self, model_input: NDArray[np.float32], state: VadState
    ) -> NDArray[np.float32]:
        rate = np.array(SAMPLE_RATE_HZ, dtype=np.int64)
        probabilities = np.empty(model_input.shape[0], dtype=np.float32)
        recurrent = state.recurrent
        for index in range(model_input.shape[0]):
            output, recurrent = self._session.run(
                None, {"input": model_input[index : index + 1], "state": recurrent, "sr": rate}
            )
            probabilities[index] = output.reshape(-1)[0]
        state.recurrent = np.asarray(recurrent, dtype=np.float32)
        return probabilities


class _Segmenter:
    """Silero's frame-by-frame speech segmentation, before padding.

    A line-for-line port of faster-whisper's ``get_speech_timestamps`` loop (Silero's with
    ``use_max_poss_sil_at_max_speech=False``); 0 means "unset" as in the original.
    """

    def __init__(self, options: VadOptions) -> None:
        rate = SAMPLE_RATE_HZ
        pad_samples = rate * options.speech_pad_ms / 1000
        self.threshold = options.threshold
        self.neg_threshold = options.effective_neg_threshold
        self.min_speech_samples = rate * options.min_speech_duration_ms / 1000
        self.max_speech_samples = (
            rate * options.max_speech_duration_s - FRAME_SAMPLES - 2 * pad_samples
        )
        self.min_silence_samples = rate * options.min_silence_duration_ms / 1000
        self.min_silence_at_max_speech = rate * options.min_silence_at_max_speech_ms / 1000
        self.triggered = False
        self.start = 0
        self.temp_end = 0
        self.prev_end = 0
        self.next_start = 0
        self.frame_index = 0

    def step(self, probability: float) -> list[tuple[int, int]]:
        """Consume one frame; return the segments it closed (almost always none)."""
        closed: list[tuple[int, int]] = []
        current = FRAME_SAMPLES * self.frame_index
        self.frame_index += 1
        is_speech = probability >= self.threshold

        if is_speech and self.temp_end:
            self.temp_end = 0
            if self.next_start < self.prev_end:
                self.next_start = current
        if is_speech and not self.triggered:
            self.triggered = True
            self.start = current
            return closed

        if self.triggered and current - self.start > self.max_speech_samples:
            if self.prev_end:
                closed.append((self.start, self.prev_end))
                if self.next_start < self.prev_end:
                    self.triggered = False
                else:
                    self.start = self.next_start
                self.prev_end = self.next_start = self.temp_end = 0
            else:
                closed.append((self.start, current))
                self.prev_end = self.next_start = self.temp_end = 0
                self.triggered = False
                return closed

        if probability < self.neg_threshold and self.triggered:
            if not self.temp_end:
                self.temp_end = current
            if current - self.temp_end > self.min_silence_at_max_speech:
                self.prev_end = self.temp_end
            if current - self.temp_end < self.min_silence_samples:
                return closed
            if self.temp_end - self.start > self.min_speech_samples:
                closed.append((self.start, self.temp_end))
            self.prev_end = self.next_start = self.temp_end = 0
            self.triggered = False
        return closed

    def finish(self, total_samples: int) -> list[tuple[int, int]]:
        """Close the segment still open at the end of the audio, if long enough."""
        if self.triggered and total_samples - self.start > self.min_speech_samples:
            self.triggered = False
            return [(self.start, total_samples)]
        self.triggered = False
        return []

    def is_confirmed(self) -> bool:
        """Whether the open segment is already long enough to survive whatever comes next."""
        end = self.temp_end or FRAME_SAMPLES * (self.frame_index - 1)
        return self.triggered and end - self.start > self.min_speech_samples


def _pad_spans(
    segments: list[tuple[int, int]], total_samples: int, speech_pad_ms: int
) -> list[SpeechSpan]:
    """Silero's padding: ``speech_pad_ms`` each side, or half the gap when spans are close."""
    pad = SAMPLE_RATE_HZ * speech_pad_ms / 1000
    spans = [[start, end] for start, end in segments]
    for index, span in enumerate(spans):
        if index == 0:
            span[0] = int(max(0, span[0] - pad))
        if index != len(spans) - 1:
            following = spans[index + 1]
            silence = following[0] - span[1]
            if silence < 2 * pad:
                span[1] += int(silence // 2)
                following[0] = int(max(0, following[0] - silence // 2))
            else:
                span[1] = int(min(total_samples, span[1] + pad))
                following[0] = int(max(0, following[0] - pad))
        else:
            span[1] = int(min(total_samples, span[1] + pad))
    return [SpeechSpan(start, end) for start, end in spans]


def spans_from_probabilities(
    probabilities: ArrayLike, total_samples: int, options: VadOptions | None = None
) -> list[SpeechSpan]:
    """Speech spans from per-frame probabilities (frame ``i`` starts at sample ``512 * i``)."""
    options = options or VadOptions()
    segmenter = _Segmenter(options)
    segments: list[tuple[int, int]] = []
    for probability in np.asarray(probabilities, dtype=np.float32).tolist():
        segments.extend(segmenter.step(probability))
    segments.extend(segmenter.finish(total_samples))
    return _pad_spans(segments, total_samples, options.speech_pad_ms)


def get_speech_timestamps(
    audio: ArrayLike, options: VadOptions | None = None, *, vad: SileroVad | None = None
) -> list[SpeechSpan]:
    """Speech spans in a whole 16 kHz mono recording.

    Pass a shared ``vad`` to avoid loading the model on every call.
    """
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"audio must be 1-D (mono), got shape {samples.shape}")
    if samples.size == 0:
        return []
    probabilities = (vad or SileroVad()).speech_probabilities(samples)
    return spans_from_probabilities(probabilities, samples.shape[0], options)


class SpeechEventKind(enum.Enum):
    START = "start"
    END = "end"


@dataclass(frozen=True)
class SpeechEvent:
    """Speech started or ended at ``sample`` (16 kHz, counted from the start of the stream).

    The position can lie in the past: a start is reported only once the speech has lasted
    ``min_speech_duration_ms``, and an end once ``min_silence_duration_ms`` of silence has
    passed, so keep that much audio buffered.
    """

    kind: SpeechEventKind
    sample: int

    @property
    def time_s(self) -> float:
        return self.sample / SAMPLE_RATE_HZ


@dataclass(frozen=True)
class DetectorSnapshot:
    """Everything a :class:`SpeechEndpointDetector` carries between calls, as plain data: a
    detector restored from it reports exactly what the original would have (a stream that
    moves to another process keeps its endpoints)."""

    recurrent: NDArray[np.float32]  # the LSTM state, _STATE_SHAPE
    context: NDArray[np.float32]  # the last CONTEXT_SAMPLES samples
    pending: NDArray[np.float32]  # samples short of a whole frame
    samples_received: int
    start_emitted: bool
    last_end: int
    last_probability: float
    segmenter: tuple[bool, int, int, int, int, int]  # triggered, start, temp_end, prev_end,
    # next_start, frame_index


class SpeechEndpointDetector:
    """Streaming speech start/end detection for one stream.

    Feed audio of any length with :meth:`feed`; call :meth:`flush` at the end of the stream.
    Events match the spans :func:`get_speech_timestamps` finds in the same audio, except that
    when two spans are closer than twice ``speech_pad_ms`` the end padding of the first cannot
    be taken back, so the second starts where the first ended.
    """

    def __init__(self, vad: SileroVad, options: VadOptions | None = None) -> None:
        self._vad = vad
        self._options = options or VadOptions()
        self._pad_samples = int(SAMPLE_RATE_HZ * self._options.speech_pad_ms / 1000)
        start_pad = self._options.start_pad_ms
        self._start_pad_samples = (
            self._pad_samples if start_pad is None else int(SAMPLE_RATE_HZ * start_pad / 1000)
        )
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next sample fed is sample 0 of a new stream."""
        self._state = VadState()
        self._segmenter = _Segmenter(self._options)
        self._pending = np.zeros(0, dtype=np.float32)
        self._samples_received = 0
        self._start_emitted = False
        self._last_end = 0
        self._last_probability = 0.0

    def snapshot(self) -> DetectorSnapshot:
        seg = self._segmenter
        return DetectorSnapshot(
            self._state.recurrent.copy(),
            self._state.context.copy(),
            self._pending.copy(),
            self._samples_received,
            self._start_emitted,
            self._last_end,
            self._last_probability,
            (
                seg.triggered,
                int(seg.start),
                int(seg.temp_end),
                int(seg.prev_end),
                int(seg.next_start),
                seg.frame_index,
            ),
        )

    def restore(self, snap: DetectorSnapshot) -> None:
        """Continue from ``snap`` (taken from a detector with the same options)."""
        if snap.recurrent.shape != _STATE_SHAPE or snap.context.shape != (CONTEXT_SAMPLES,):
            raise ValueError("a detector snapshot of another VAD model")
        self._state = VadState(
            snap.recurrent.astype(np.float32, copy=True), snap.context.astype(np.float32)
        )
        self._pending = snap.pending.astype(np.float32, copy=True)
        self._samples_received = snap.samples_received
        self._start_emitted = snap.start_emitted
        self._last_end = snap.last_end
        self._last_probability = snap.last_probability
        seg = _Segmenter(self._options)
        (
            seg.triggered,
            seg.start,
            seg.temp_end,
            seg.prev_end,
            seg.next_start,
            seg.frame_index,
        ) = snap.segmenter
        self._segmenter = seg

    @property
    def in_speech(self) -> bool:
        """Whether a start has been reported without its end yet."""
        return self._start_emitted

    @property
    def tentative_end(self) -> int | None:
        """The sample an END event will carry if the silence under way lasts long enough.

        ``None`` while speech goes on (or none was reported): set from the first frame below
        the negative threshold, cleared when a speech frame comes back. Lets a caller start
        work on an utterance before ``min_silence_duration_ms`` confirms its end.
        """
        seg = self._segmenter
        if not self._start_emitted or not seg.triggered or not seg.temp_end:
            return None
        return seg.temp_end + self._pad_samples

    @property
    def samples_received(self) -> int:
        return self._samples_received

    @property
    def last_probability(self) -> float:
        """Speech probability of the most recent complete frame (0 before the first)."""
        return self._last_probability

    def feed(self, audio: ArrayLike) -> list[SpeechEvent]:
        """Add 16 kHz mono samples; return the events they complete."""
        samples = np.asarray(audio, dtype=np.float32).reshape(-1)
        self._samples_received += samples.shape[0]
        buffered = np.concatenate([self._pending, samples]) if self._pending.size else samples
        usable = buffered.shape[0] - buffered.shape[0] % FRAME_SAMPLES
        self._pending = buffered[usable:].copy()
        if usable == 0:
            return []
        return self._consume(self._vad.process(buffered[:usable], self._state))

    def flush(self) -> list[SpeechEvent]:
        """End the stream: score the last partial frame and close open speech; then reset."""
        events: list[SpeechEvent] = []
        if self._pending.size:
            padded = np.pad(self._pending, (0, FRAME_SAMPLES - self._pending.size))
            self._pending = np.zeros(0, dtype=np.float32)
            events += self._consume(self._vad.process(padded, self._state))
        for start, end in self._segmenter.finish(self._samples_received):
            events += self._close(start, end)
        self.reset()
        return events

    def _consume(self, probabilities: NDArray[np.float32]) -> list[SpeechEvent]:
        events: list[SpeechEvent] = []
        for probability in probabilities.tolist():
            self._last_probability = probability
            for start, end in self._segmenter.step(probability):
                events += self._close(start, end)
            if not self._start_emitted and self._segmenter.is_confirmed():
                events.append(self._start(self._segmenter.start))
        return events

    def _start(self, start: int) -> SpeechEvent:
        self._start_emitted = True
        return SpeechEvent(
            SpeechEventKind.START, max(0, start - self._start_pad_samples, self._last_end)
        )

    def _close(self, start: int, end: int) -> list[SpeechEvent]:
        events = [] if self._start_emitted else [self._start(start)]
        self._last_end = min(self._samples_received, end + self._pad_samples)
        self._start_emitted = False
        events.append(SpeechEvent(SpeechEventKind.END, self._last_end))
        return events
