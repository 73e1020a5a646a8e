"""What the server needs from the streaming engine (``audiototext.streaming``), as protocols.

The server is written against these so it runs the real engine and the test double alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import Future
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from audiototext.streaming.types import EngineStats, SpeechEvent, StreamOptions, StreamResult

__all__ = ["Engine", "EngineStream", "ThreadedEngine"]


class EngineStream(Protocol):
    def accept(
        self, audio: NDArray[np.float32], sample_rate_hz: int, channels: int = 1
    ) -> None: ...

    def events(self) -> AsyncIterator[StreamResult | SpeechEvent]: ...

    def flush(self) -> None: ...

    async def finish(self) -> None: ...

    @property
    def audio_received_s(self) -> float: ...

    @property
    def audio_processed_s(self) -> float: ...


class Engine(Protocol):
    def open(self, options: StreamOptions) -> EngineStream: ...

    def stats(self) -> EngineStats: ...


@runtime_checkable
class ThreadedEngine(Protocol):
    """An engine whose ONNX Runtime sessions can be rebuilt with another thread count (the
    real streaming engine; the adaptive controller uses it when an engine offers it)."""

    @property
    def threads(self) -> int: ...

    def build_threads(self, threads: int) -> Any: ...  # blocking: new sessions

    def swap_model(self, model: Any) -> Future[Any]: ...  # done once they decode
