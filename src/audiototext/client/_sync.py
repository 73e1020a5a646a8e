"""Blocking wrapper over :class:`AsyncClient`: its event loop runs in a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from audiototext.client._client import AsyncClient
from audiototext.client._results import StreamSpeechEvent, TranscriptUpdate
from audiototext.client._settings import StreamSettings
from audiototext.client._stream import Stream
from audiototext.wire._proto import transcription_pb2

__all__ = ["Client", "SyncStream"]

T = TypeVar("T")


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="audiototext-client", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


class SyncStream:
    def __init__(self, loop: _LoopThread, stream: Stream) -> None:
        self._loop = loop
        self._stream = stream
        self._results: AsyncIterator[TranscriptUpdate | StreamSpeechEvent] = stream.results()

    @property
    def session_id(self) -> str:
        return self._stream.session_id

    @property
    def stream(self) -> Stream:
        return self._stream

    def send(self, audio: NDArray[np.floating]) -> None:
        self._loop.run(self._stream.send(audio))

    def flush(self) -> None:
        self._loop.run(self._stream.flush())

    def finish(self) -> None:
        self._loop.run(self._stream.finish())

    def results(self) -> Iterator[TranscriptUpdate | StreamSpeechEvent]:
        async def next_item() -> TranscriptUpdate | StreamSpeechEvent:
            return await anext(self._results)

        while True:
            try:
                item = self._loop.run(next_item())
            except StopAsyncIteration:
                return
            yield item

    def close(self) -> None:
        self._loop.run(self._stream.close())


class Client:
    """The blocking client: ``Client("127.0.0.1:50051").stream()`` → :class:`SyncStream`."""

    def __init__(self, target: str, **kwargs: Any) -> None:
        self._loop = _LoopThread()

        async def make() -> AsyncClient:
            return AsyncClient(target, **kwargs)

        self._client = self._loop.run(make())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stream(self, settings: StreamSettings | None = None) -> SyncStream:
        return SyncStream(self._loop, self._loop.run(self._client.stream(settings)))

    def transcribe(self, audio: bytes, **kwargs: Any) -> transcription_pb2.TranscribeResponse:
        return self._loop.run(self._client.transcribe(audio, **kwargs))

    def close(self) -> None:
        self._loop.run(self._client.close())
        self._loop.stop()
