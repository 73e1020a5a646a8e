"""How a stream behaves: its audio, what it asks the server for, buffering and reconnection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from audiototext.client._adaptive import DEFAULT_LADDER, Level

__all__ = ["ReconnectPolicy", "StreamSettings"]


@dataclass(frozen=True)
class ReconnectPolicy:
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    multiplier: float = 2.0
    max_attempts: int = 30  # consecutive failed connection attempts before giving up
    # Before the server first accepted the stream there is nothing to resume: a server that
    # is not there (or speaks TLS to a plaintext client) is reported after this many.
    max_initial_attempts: int = 3


@dataclass(frozen=True)
class StreamSettings:
    sample_rate_hz: int = 16_000
    channels: int = 1
    language: str | None = None
    model: str = ""  # empty: the server's default model
    task: Literal["transcribe", "translate"] = "transcribe"  # translate: to English
    interim_results: bool = True
    partial_interval_ms: int = 0  # 0: the server's default
    endpoint_silence_ms: int = 0
    max_segment_s: float = 0.0
    prompt: str = ""  # names and spellings the speech may contain (StreamConfig.prompt)
    chunk_ms: int = 100
    # "auto": PCM16, switching to Opus bit rates when the link cannot carry it.
    compression: Literal["auto", "pcm16", "float32", "opus"] = "auto"
    ladder: tuple[Level, ...] = DEFAULT_LADDER
    opus_bit_rate: int = 24_000  # compression="opus"
    max_unacked_s: float = 120.0  # ring buffer of chunks the server has not acknowledged
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)

    def __post_init__(self) -> None:
        if not 8000 <= self.sample_rate_hz <= 48000:
            raise ValueError("sample_rate_hz must be between 8000 and 48000")
        if not 10 <= self.chunk_ms <= 1000:
            raise ValueError("chunk_ms must be between 10 and 1000")
        if self.max_unacked_s * 1000 < 2 * self.chunk_ms:
            raise ValueError("max_unacked_s must hold at least two chunks")
