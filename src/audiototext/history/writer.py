"""The server's single writer of the history file: a thread with a queue.

SQLite allows one writer at a time and its calls block, so the event loop never writes: it
hands an operation to :meth:`HistoryWriter.submit` and awaits the future. The thread takes
whatever is queued (up to :data:`MAX_BATCH` operations) and commits them in one transaction,
one fsync for the lot, then resolves the futures. The server awaits a final's future before
the final becomes visible to any client, so a final a client has seen is on disk.

If a batch fails, its operations are retried one by one so that only the failing one fails
(a ``delete`` of an unknown id must not lose a final queued beside it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from audiototext.history.store import HistoryStore, Retention

__all__ = ["MAX_BATCH", "HistoryWriter"]

log = logging.getLogger(__name__)

MAX_BATCH = 64

T = TypeVar("T")
Operation = Callable[[HistoryStore], Any]
_Job = tuple[Operation, "concurrent.futures.Future[Any]"]


class HistoryWriter:
    """Owns one :class:`HistoryStore` connection, used only by its thread."""

    def __init__(self, store: HistoryStore, retention: Retention) -> None:
        self.store = store
        self.retention = retention
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._closed = False

    @classmethod
    def open(cls, path: Path, retention: Retention) -> HistoryWriter:
        """Open (or create) the file and apply the retention once; raises
        :class:`~audiototext.history.errors.HistoryUnavailableError`."""
        store = HistoryStore.open(path)
        try:
            with store.transaction():
                removed = store.prune(retention)
        except Exception:
            store.close()
            raise
        if removed:
            log.info("history: %d sessions past the retention removed from %s", removed, path)
        writer = cls(store, retention)
        writer._thread.start()
        return writer

    @property
    def path(self) -> Path:
        return self.store.path

    def submit(self, operation: Callable[[HistoryStore], T]) -> concurrent.futures.Future[T]:
        """Queue ``operation`` (run inside a write transaction on the writer thread)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self._closed:
            future.set_exception(RuntimeError("the history writer is closed"))
        else:
            self._queue.put((operation, future))
        return future

    async def run(self, operation: Callable[[HistoryStore], T]) -> T:
        """:meth:`submit` and wait for the commit without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(operation))

    def close(self, timeout_s: float | None = 10.0) -> None:
        """Commit what is queued, then stop the thread and close the file (``timeout_s``
        None: ask the thread to stop and return at once)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        if timeout_s is None:
            return
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("history: the writer did not stop within %.0f s", timeout_s)

    def _run(self) -> None:
        try:
            while True:
                first = self._queue.get()
                batch: list[_Job] = []
                stop = first is None
                if first is not None:
                    batch.append(first)
                while not stop and len(batch) < MAX_BATCH:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                    else:
                        batch.append(job)
                if batch:
                    self._commit(batch)
                if stop:
                    return
        finally:
            self.store.close()

    def _commit(self, batch: list[_Job]) -> None:
        batch = [(op, fut) for op, fut in batch if fut.set_running_or_notify_cancel()]
        try:
            with self.store.transaction():
                results = [op(self.store) for op, _ in batch]
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for op, fut in batch:
                self._commit_one(op, fut)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            fut.set_result(result)

    def _commit_one(self, op: Operation, fut: concurrent.futures.Future[Any]) -> None:
        try:
            with self.store.transaction():
                result = op(self.store)
        except Exception as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
