"""A model swap waiting for a scheduling-round boundary (new sessions, other thread count).

The recognizer's model is read by the worker and by the decoding lanes. A new model (the
same graphs in sessions built with other options, :meth:`WhisperModel.with_threads`) is
handed in from any thread with :meth:`ModelSwap.request`; while it waits, the worker hands
no new batch to a lane, and at the top of the first round that finds every lane idle it
takes the new model (:meth:`ModelSwap.at_boundary`). So every partial and final is decoded wholly
on one model, none is dropped, and a batch already on a lane finishes where it started.
The old model goes with its last reference (a file transcription may still hold it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from audiototext.inference.whisper import WhisperModel

__all__ = ["ModelSwap", "SwapDone"]


class SwapDone:
    """What a finished swap reports: seconds it waited for the lanes, threads before/after."""

    def __init__(self, waited_s: float, threads_before: int, threads_after: int) -> None:
        self.waited_s = waited_s
        self.threads_before = threads_before
        self.threads_after = threads_after


class ModelSwap:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: tuple[WhisperModel, Future[SwapDone], float] | None = None

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def request(self, model: WhisperModel) -> Future[SwapDone]:
        """Swap to ``model`` at the next round boundary; a swap still waiting is replaced
        (its future fails: a newer model superseded it)."""
        future: Future[SwapDone] = Future()
        with self._lock:
            old, self._pending = self._pending, (model, future, time.monotonic())
        if old is not None:
            old[1].set_exception(RuntimeError("superseded by a newer model swap"))
        return future

    def at_boundary(self, recognizer: Any, lanes: Sequence[Any]) -> bool:
        """On the worker, between rounds: install the waiting model into ``recognizer`` (its
        ``model`` and its decoders') if no lane holds a batch; whether it did."""
        if self._pending is None or any(lane.busy for lane in lanes):
            return False
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return False
        model, future, since = pending
        report = SwapDone(time.monotonic() - since, recognizer.model.threads, model.threads)
        recognizer.model = model
        recognizer.final_decoder.model = model
        recognizer.partial_decoder.model = model
        future.set_result(report)
        return True

    def cancel(self, why: str) -> None:
        """Fail a waiting swap (the recognizer stopped before it could happen)."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            pending[1].set_exception(RuntimeError(why))
