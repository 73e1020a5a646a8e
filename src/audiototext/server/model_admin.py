"""The model cache's use cases for every adapter: pull with progress, remove, info.

gRPC ``Models`` (:mod:`.grpc.models`) and REST ``/api/v1/models`` (:mod:`.http.models`)
both call these, so they refuse the same things with the same words (a :class:`StatusError`)
and report the same progress (:class:`PullUpdate`). The listing is :mod:`.catalog`'s.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from audiototext.errors import AudioToTextError, UnknownModelError
from audiototext.server.status import Status, StatusError, status_for

if TYPE_CHECKING:
    from audiototext.models.cache import CacheEntry, ModelCache
    from audiototext.models.registry import ModelSpec

__all__ = [
    "InUse",
    "PullCancelled",
    "PullDone",
    "PullUpdate",
    "check_pull",
    "model_info",
    "pull_updates",
    "remove_models",
]

InUse = Callable[[], Collection[Path]]  # cache folders that must not be removed now
Unload = Callable[[set[Path]], Awaitable[None]]  # unload idle models loaded from these folders


@dataclass(frozen=True)
class PullUpdate:
    """One progress report of a pull: a task's progress, or a note."""

    task: str = ""  # "build" for the conversion; a file name for a download
    description: str = ""
    completed: float = 0.0
    total: float = 0.0  # 0 when unknown
    unit: str = ""  # "B" (download) or "step" (conversion)
    note: str = ""

    @property
    def stage(self) -> str:
        """``download``, ``convert`` or ``note``."""
        if self.note:
            return "note"
        return "convert" if self.task == "build" or self.unit == "step" else "download"

    @property
    def percent(self) -> float | None:
        if self.total <= 0:
            return None
        return round(min(100.0, 100.0 * self.completed / self.total), 1)


@dataclass(frozen=True)
class PullDone:
    entry: CacheEntry
    already_cached: bool


class PullCancelled(Exception):
    """Raised in the pull's thread at its next progress report after a cancel: downloads and
    conversion report often, and unwinding from there runs their own cleanup."""


class _QueueProgress:
    """A ProgressSink that hands updates from the pull thread to the event loop (and stops
    the pull once ``cancel`` is set)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[PullUpdate | None],
        cancel: threading.Event | None = None,
    ) -> None:
        self._loop = loop
        self._queue = queue
        self._cancel = cancel
        self._totals: dict[str, tuple[str, float | None, str, float]] = {}

    def _put(self, item: PullUpdate, *, stop: bool = True) -> None:
        if self._cancel is not None and self._cancel.is_set():
            if stop:
                raise PullCancelled
            return  # a task closing (cleanup, perhaps of the cancel itself): not the place
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def task(self, key: str, description: str, total: float | None, unit: str = "B") -> None:
        self._totals[key] = (description, total, unit, 0.0)
        self._put(PullUpdate(task=key, description=description, total=total or 0, unit=unit))

    def advance(self, key: str, amount: float) -> None:
        desc, total, unit, done = self._totals.get(key, (key, None, "B", 0.0))
        done += amount
        self._totals[key] = (desc, total, unit, done)
        self._put(
            PullUpdate(task=key, description=desc, completed=done, total=total or 0, unit=unit)
        )

    def done(self, key: str) -> None:
        desc, total, unit, done = self._totals.get(key, (key, None, "B", 0.0))
        self._put(
            PullUpdate(
                task=key, description=desc, completed=total or done, total=total or 0, unit=unit
            ),
            stop=False,
        )

    def note(self, message: str) -> None:
        self._put(PullUpdate(note=message))


def _cache(cache_root: Path | None) -> ModelCache:
    from audiototext.models.cache import ModelCache

    return ModelCache(cache_root)


def _resolve(name: str) -> ModelSpec:
    from audiototext.models.registry import resolve

    try:
        return resolve(name)
    except UnknownModelError as exc:  # its message names close matches and known models
        raise StatusError(Status.NOT_FOUND, str(exc)) from exc


def check_pull(name: str, precision: str, field: str = "name") -> ModelSpec:
    """What can be refused before a pull starts: no name, an unknown one, a bad precision."""
    if not name.strip():
        raise StatusError(Status.INVALID_ARGUMENT, f"{field} is empty; name a model to pull")
    spec = _resolve(name)
    from audiototext.models.versions import PRECISIONS

    if precision not in ("auto", *PRECISIONS):
        raise StatusError(
            Status.INVALID_ARGUMENT,
            f"precision must be auto or one of {', '.join(PRECISIONS)}, not {precision!r}",
        )
    return spec


async def pull_updates(
    name: str,
    *,
    precision: str = "auto",
    revision: str | None = None,
    force: bool = False,
    cache_root: Path | None = None,
    cancel: threading.Event | None = None,
) -> AsyncIterator[PullUpdate | PullDone]:
    """Download and convert ``name`` in a worker thread, yielding its progress, then a
    :class:`PullDone`; a failure raises :class:`StatusError` (after the progress so far).

    Stopping the iteration early does not stop the pull: the thread finishes it into the
    cache (the next pull finds it there). Setting ``cancel`` does: the pull ends with
    ABORTED at its next progress report. Files already downloaded (and the ``.incomplete``
    part of the one under way) stay in the download cache, so the next pull resumes; a
    conversion under way is discarded with its staging folder.
    """
    from audiototext.models.manager import pull

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[PullUpdate | None] = asyncio.Queue()
    sink = _QueueProgress(loop, queue, cancel)
    job = asyncio.ensure_future(
        asyncio.to_thread(
            pull,
            name,
            revision=revision or None,
            precision=precision or "auto",
            force=force,
            progress=sink,
            cache=_cache(cache_root),
        )
    )
    # After the thread's last call_soon_threadsafe: the None comes after every update.
    job.add_done_callback(lambda _f: loop.call_soon(queue.put_nowait, None))
    while True:
        item = await queue.get()
        if item is None:
            break
        yield item
    try:
        result = job.result()
    except PullCancelled as exc:
        raise StatusError(
            Status.ABORTED,
            f"the download of {name} was cancelled; the files downloaded so far are kept and "
            "pulling it again resumes from them",
        ) from exc
    except (AudioToTextError, ValueError) as exc:
        raise StatusError(status_for(exc), str(exc)) from exc
    while not queue.empty():  # progress posted just before the job ended
        item = queue.get_nowait()
        if item is not None:
            yield item
    yield PullDone(result.entry, result.cached)


async def remove_models(
    name: str,
    *,
    version: str = "",
    precision: str = "",
    remove_all: bool = False,
    cache_root: Path | None = None,
    in_use: InUse = lambda: (),
    unload: Unload | None = None,
) -> list[CacheEntry]:
    """Remove the cached entries of ``name`` that match; refused (FAILED_PRECONDITION) for
    an ambiguous match without ``remove_all`` and for entries in use by this server. Idle
    models loaded from the entries are unloaded first (``unload``)."""
    spec = _resolve(name)
    cache = _cache(cache_root)
    entries = await asyncio.to_thread(cache.entries, spec.name, precision or None)
    chosen = [e for e in entries if e.matches_version(version or None)]
    if not chosen:
        raise StatusError(Status.NOT_FOUND, f"no cached entry of {spec.name} matches")
    if len(chosen) > 1 and not remove_all:
        options = "; ".join(f"{e.version_id}/{e.precision}" for e in chosen)
        raise StatusError(
            Status.FAILED_PRECONDITION,
            f"{len(chosen)} entries of {spec.name} match ({options}); pick one with "
            "version/precision or set all",
        )
    folders = {Path(e.path).resolve() for e in chosen}
    if unload is not None:
        await unload(folders)
    loaded = {p.resolve() for p in in_use()}
    busy = [e for e in chosen if Path(e.path).resolve() in loaded]
    if busy:
        names = "; ".join(f"{e.name} {e.version_id}/{e.precision}" for e in busy)
        raise StatusError(
            Status.FAILED_PRECONDITION,
            f"{names} is in use by this server (open streams, or the model it serves); end "
            "those streams, or stop the server (or serve another model), before removing it",
        )
    for entry in chosen:
        await asyncio.to_thread(cache.remove, entry)
    return chosen


async def model_info(
    name: str, cache_root: Path | None = None
) -> tuple[ModelSpec, list[CacheEntry]]:
    """The registry's (or an ad-hoc repo's) spec of ``name`` and its cached entries."""
    spec = _resolve(name)
    entries = await asyncio.to_thread(_cache(cache_root).entries, spec.name)
    return spec, entries
