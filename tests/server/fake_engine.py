"""A test double of ``audiototext.streaming``'s recognizer: same contract, no model.

Utterances are found by energy (20-ms frames above an RMS threshold); a final result's text
is ``"u<id> n<samples> c<crc32>"`` of the exact samples of the utterance, so any lost or
repeated audio shows up in the text. Processing runs in a task at ``speed`` × real time, so
lag and flow control behave like a real engine's.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

import numpy as np
from numpy.typing import NDArray

from audiototext.streaming.types import (
    BufferFullError,
    EngineStats,
    OverloadedError,
    SpeechEvent,
    SpeechEventKind,
    StreamOptions,
    StreamResult,
)

RATE = 16_000
FRAME = 320  # 20 ms


class FakeSession:
    def __init__(self, owner: FakeRecognizer, options: StreamOptions) -> None:
        self._owner = owner
        self.options = options
        self._pending: list[NDArray[np.float32]] = []
        self._pending_samples = 0
        self._received = 0
        self._processed = 0
        self._queue: asyncio.Queue[StreamResult | SpeechEvent | None] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._finishing = False
        self._flush = False
        self._task = asyncio.create_task(self._run())
        self._utt: list[NDArray[np.float32]] = []
        self._utt_start = 0
        self._silence = 0
        self._since_partial = 0
        self._utt_id = 0
        self.rates: set[int] = set()

    @property
    def audio_received_s(self) -> float:
        return self._received / RATE

    @property
    def audio_processed_s(self) -> float:
        return self._processed / RATE

    def accept(self, audio: NDArray[np.float32], sample_rate_hz: int, channels: int = 1) -> None:
        if self._finishing:
            raise ValueError("accept after finish")
        self.rates.add(sample_rate_hz)
        mono = np.asarray(audio, dtype=np.float32).reshape(-1, channels).mean(axis=1)
        if sample_rate_hz != RATE:
            import soxr

            mono = np.asarray(soxr.resample(mono, sample_rate_hz, RATE), dtype=np.float32)
        waiting = (self._received - self._processed + mono.shape[0]) / RATE
        if waiting > self.options.max_buffered_s:
            raise BufferFullError(
                f"{waiting:.1f} s of audio would wait unprocessed "
                f"(limit {self.options.max_buffered_s:g} s)"
            )
        self._pending.append(mono)
        self._pending_samples += mono.shape[0]
        self._received += mono.shape[0]
        self._wake.set()

    async def events(self) -> AsyncIterator[StreamResult | SpeechEvent]:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            yield item

    def flush(self) -> None:
        self._flush = True
        self._wake.set()

    async def finish(self) -> None:
        self._finishing = True
        self._wake.set()
        await asyncio.shield(self._task)

    def _take(self, n: int) -> NDArray[np.float32]:
        joined = np.concatenate(self._pending) if self._pending else np.zeros(0, np.float32)
        out, rest = joined[:n], joined[n:]
        self._pending = [rest] if rest.size else []
        self._pending_samples = rest.shape[0]
        return out

    async def _run(self) -> None:
        try:
            while True:
                if self._pending_samples >= FRAME:
                    budget = max(FRAME, int(RATE * 0.1))  # up to 100 ms per step
                    n = min(self._pending_samples // FRAME * FRAME, budget)
                    block = self._take(n)
                    for start in range(0, n, FRAME):
                        self._frame(block[start : start + FRAME])
                    await asyncio.sleep(n / RATE / self._owner.speed)
                    continue
                if self._flush:
                    self._flush = False
                    self._final()
                if self._finishing:
                    if self._pending_samples:
                        self._frame(self._take(self._pending_samples))
                    self._final()
                    return
                self._wake.clear()
                await self._wake.wait()
        finally:
            self._owner._closed(self)
            self._queue.put_nowait(None)

    def _frame(self, frame: NDArray[np.float32]) -> None:
        t0 = self._processed
        self._processed += frame.shape[0]
        loud = float(np.sqrt(np.mean(np.square(frame)))) > 0.01 if frame.size else False
        if not self._utt:
            if loud:
                self._utt_id += 1
                self._utt_start = t0
                self._utt = [frame]
                self._silence = 0
                self._since_partial = 0
                self._queue.put_nowait(SpeechEvent(SpeechEventKind.BEGIN, t0 / RATE))
            return
        self._utt.append(frame)
        self._silence = 0 if loud else self._silence + frame.shape[0]
        self._since_partial += frame.shape[0]
        if self._silence * 1000 >= self.options.endpoint_silence_ms * RATE:
            self._final()
        elif self._since_partial * 1000 >= self.options.partial_interval_ms * RATE:
            self._since_partial = 0
            n = sum(f.shape[0] for f in self._utt)
            text = f"u{self._utt_id} partial {n}"
            self._queue.put_nowait(
                StreamResult(
                    self._utt_id,
                    False,
                    text,
                    f"u{self._utt_id}",
                    0.5,
                    self._utt_start / RATE,
                    self._processed / RATE,
                    self._processed / RATE,
                )
            )

    def _final(self) -> None:
        if not self._utt:
            return
        audio = np.concatenate(self._utt)
        pcm = np.clip(np.round(audio * 32768), -32768, 32767).astype("<i2").tobytes()
        text = f"u{self._utt_id} n{audio.shape[0]} c{zlib.crc32(pcm):08x}"
        end = self._utt_start + audio.shape[0]
        self._queue.put_nowait(
            StreamResult(
                self._utt_id,
                True,
                text,
                text,
                1.0,
                self._utt_start / RATE,
                end / RATE,
                self._processed / RATE,
            )
        )
        self._queue.put_nowait(SpeechEvent(SpeechEventKind.END, end / RATE))
        self._utt = []


class FakeRecognizer:
    # Declared, not set: a test sets it to play the loaded model (the server reads it with
    # getattr, so an unset one means "no model on disk").
    model: object

    def __init__(self, *, max_sessions: int = 64, speed: float = 50.0) -> None:
        self.max_sessions = max_sessions
        self.speed = speed
        self.sessions: list[FakeSession] = []
        self.opened = 0

    def open(self, options: StreamOptions) -> FakeSession:
        if len(self.sessions) >= self.max_sessions:
            raise OverloadedError(f"engine limit of {self.max_sessions} sessions reached")
        session = FakeSession(self, options)
        self.sessions.append(session)
        self.opened += 1
        return session

    def _closed(self, session: FakeSession) -> None:
        if session in self.sessions:
            self.sessions.remove(session)

    def stats(self) -> EngineStats:
        return EngineStats(len(self.sessions), 0, 1.0 / self.speed, 10.0, 20.0, False)
