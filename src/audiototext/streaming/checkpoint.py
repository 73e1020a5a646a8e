"""A stream's state as plain data, so that another process can carry it on exactly.

Taken on the recognizer's worker when a final goes out (:func:`take_checkpoint`) and put
into a fresh stream before its first audio (:func:`restore_checkpoint`), a checkpoint holds
what decides every later result: the VAD's state, absolute positions and utterance ids, the
utterances still waiting for finals and the open one, the earlier finals' tokens (a final's
decoder context) and the audio a later final may read (the context reach before the
checkpoint plus the audio received but not yet read). Finals depend on the audio alone, so a
restored stream fed the same audio after the checkpoint gives the same finals. Partial
progress is not kept: partials of the open utterance start again.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from audiototext.audio.features import SAMPLE_RATE_HZ
from audiototext.audio.vad import DetectorSnapshot, SpeechEndpointDetector
from audiototext.streaming._ring import SampleRing
from audiototext.streaming.options import FinalSettings
from audiototext.streaming.state import EarlierFinal, FinalHistory, OpenUtterance, PendingFinal

__all__ = [
    "CheckpointFinal",
    "CheckpointUtterance",
    "StreamCheckpoint",
    "restore_checkpoint",
    "take_checkpoint",
]

FloatArray = NDArray[np.float32]


class _Stream(Protocol):
    """What a checkpoint reads and writes of a stream (``RecognitionStream`` has it)."""

    ring: SampleRing
    detector: SpeechEndpointDetector
    detector_base: int
    vad_position: int
    utterance: OpenUtterance | None
    pending_finals: deque[PendingFinal]
    next_utterance_id: int
    last_utterance_stop: int
    processed: int
    detected_language: str | None
    final_history: FinalHistory

    @property
    def audio_received_s(self) -> float: ...

    def unread_samples(self) -> FloatArray: ...

    def restore_input(
        self, unread: FloatArray, *, pending_final_samples: int, received: int
    ) -> None: ...


@dataclass(frozen=True)
class CheckpointUtterance:
    """The open utterance (its partial progress is not kept)."""

    utterance_id: int
    start: int
    shown_text: bool


@dataclass(frozen=True)
class CheckpointFinal:
    """An ended utterance waiting for its final."""

    utterance_id: int
    start: int
    stop: int
    shown_text: bool


@dataclass(frozen=True)
class StreamCheckpoint:
    received: int  # absolute 16-kHz samples accepted: ``audio_start + len(audio)``
    vad_position: int
    audio_start: int  # absolute sample of audio[0]
    audio: FloatArray  # [audio_start, received): read by the VAD up to vad_position, then not
    detector_base: int
    detector: DetectorSnapshot
    next_utterance_id: int
    last_utterance_stop: int
    processed: int
    earlier: tuple[EarlierFinal, ...]
    pending: tuple[CheckpointFinal, ...]
    utterance: CheckpointUtterance | None
    detected_language: str | None

    def __post_init__(self) -> None:
        if self.audio_start + self.audio.shape[0] != self.received:
            raise ValueError("checkpoint audio does not end where the stream's input ends")
        if not self.audio_start <= self.vad_position <= self.received:
            raise ValueError("checkpoint VAD position outside its audio")


def take_checkpoint(stream: _Stream, settings: FinalSettings) -> StreamCheckpoint:
    """The stream's state now (worker thread), with the audio its next finals may read:
    ``context_pad_ms`` before an utterance, earlier finals within ``context_s``."""
    context_pad = settings.context_pad_ms * SAMPLE_RATE_HZ // 1000
    context = round(max(settings.context_s, settings.reduced_context_s) * SAMPLE_RATE_HZ)
    v = stream.vad_position
    opened = [f.start for f in stream.pending_finals]
    if stream.utterance is not None:
        opened.append(stream.utterance.start)
    first_open = min([v, stream.last_utterance_stop, *opened])
    reach = [v, stream.last_utterance_stop - context_pad, *(s - context_pad for s in opened)]
    earlier = tuple(stream.final_history.earlier)
    if earlier:
        # The previous final is always a candidate context; older ones only within reach.
        reach.append(earlier[-1].audio_start)
        reach += [e.audio_start for e in earlier if e.audio_start >= first_open - context]
    start = max(stream.ring.start, min(reach))
    read = stream.ring.read(start, v)
    unread = stream.unread_samples()
    audio = np.concatenate([read, unread]) if unread.size else read
    utt = stream.utterance
    return StreamCheckpoint(
        received=start + audio.shape[0],
        vad_position=v,
        audio_start=start,
        audio=audio,
        detector_base=stream.detector_base,
        detector=stream.detector.snapshot(),
        next_utterance_id=stream.next_utterance_id,
        last_utterance_stop=stream.last_utterance_stop,
        processed=stream.processed,
        earlier=earlier,
        pending=tuple(
            CheckpointFinal(f.utterance_id, f.start, f.stop, f.shown_text)
            for f in stream.pending_finals
        ),
        utterance=None
        if utt is None
        else CheckpointUtterance(utt.utterance_id, utt.start, utt.shown_text),
        detected_language=stream.detected_language,
    )


def restore_checkpoint(stream: _Stream, cp: StreamCheckpoint) -> None:
    """Make a new stream (no audio accepted yet, not yet seen by the worker) continue ``cp``."""
    if stream.vad_position or stream.audio_received_s:
        raise ValueError("a checkpoint is restored into a new stream only")
    read = cp.vad_position - cp.audio_start
    stream.ring.end = cp.audio_start
    stream.ring.append(np.ascontiguousarray(cp.audio[:read], dtype=np.float32))
    stream.vad_position = cp.vad_position
    stream.detector_base = cp.detector_base
    stream.detector.restore(cp.detector)
    stream.next_utterance_id = cp.next_utterance_id
    stream.last_utterance_stop = cp.last_utterance_stop
    stream.processed = cp.processed
    stream.detected_language = cp.detected_language
    stream.final_history.earlier.extend(cp.earlier)
    now = time.monotonic()
    for f in cp.pending:
        stream.pending_finals.append(
            PendingFinal(f.utterance_id, f.start, f.stop, now, (), "", f.shown_text, f.start)
        )
    if cp.utterance is not None:
        u = cp.utterance
        stream.utterance = OpenUtterance(
            u.utterance_id, u.start, last_partial_at=u.start, shown_text=u.shown_text
        )
    stream.restore_input(
        np.ascontiguousarray(cp.audio[read:], dtype=np.float32),
        pending_final_samples=sum(f.stop - f.start for f in cp.pending),
        received=cp.received,
    )
