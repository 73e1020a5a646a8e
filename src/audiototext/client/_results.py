"""What a stream hands back: results and speech events (each once), and running statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from audiototext.wire._proto import transcription_pb2 as pb

__all__ = [
    "StreamSpeechEvent",
    "StreamStats",
    "TranscriptUpdate",
    "result_from",
    "speech_event_from",
]


@dataclass(frozen=True)
class TranscriptUpdate:
    utterance_id: int
    is_final: bool
    text: str
    stable_text: str
    stability: float
    start_s: float
    end_s: float
    audio_processed_s: float
    words: tuple[tuple[str, float, float], ...] = ()


@dataclass(frozen=True)
class StreamSpeechEvent:
    kind: Literal["begin", "end"]
    time_s: float


@dataclass
class StreamStats:
    reconnects: int = 0
    chunks_sent: int = 0  # including resends
    chunks_resent: int = 0
    bytes_sent: int = 0
    duplicates_dropped: int = 0
    encodings: dict[str, int] = field(default_factory=dict)  # chunks made per level
    switches: list[str] = field(default_factory=list)
    ack_rtt_ms: float | None = None
    server_lag_ms: int = 0
    credit_waits: int = 0
    max_inflight_ms: float = 0.0
    rtf: float = 0.0
    server_latency_ms: float = 0.0


def result_from(r: pb.Result) -> TranscriptUpdate:
    start = r.segments[0].start_s if r.segments else 0.0
    end = r.segments[-1].end_s if r.segments else 0.0
    return TranscriptUpdate(
        utterance_id=int(r.utterance_id),
        is_final=r.is_final,
        text=r.text,
        stable_text=r.stable_text,
        stability=r.stability,
        start_s=start,
        end_s=end,
        audio_processed_s=r.audio_processed_s,
        words=tuple((w.text, w.start_s, w.end_s) for w in r.words),
    )


def speech_event_from(ev: pb.SpeechEvent) -> StreamSpeechEvent:
    begin = ev.kind == pb.SpeechEvent.BEGIN
    return StreamSpeechEvent("begin" if begin else "end", ev.time_s)
