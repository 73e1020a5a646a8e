"""The ``Models`` service: the model cache over gRPC (list, pull with progress, remove, info)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import grpc

from audiototext.errors import AudioToTextError, UnknownModelError
from audiototext.server.catalog import model_catalog
from audiototext.server.grpc.status import grpc_status_for
from audiototext.wire._proto import models_pb2, models_pb2_grpc

__all__ = ["ModelsService"]


def _cached_message(entry: Any) -> models_pb2.CachedModel:
    return models_pb2.CachedModel(
        name=entry.name,
        version_id=entry.version_id,
        precision=entry.precision,
        size_bytes=entry.size_bytes,
        source_repo=entry.source["repo_id"],
        commit=entry.commit,
        created_at=entry.created_at,
        path=str(entry.path),
    )


class _QueueProgress:
    """A ProgressSink that hands updates from the pull thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        self._loop = loop
        self._queue = queue
        self._totals: dict[str, tuple[str, float | None, str, float]] = {}

    def _put(self, item: models_pb2.PullProgress) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def task(self, key: str, description: str, total: float | None, unit: str = "B") -> None:
        self._totals[key] = (description, total, unit, 0.0)
        self._put(
            models_pb2.PullProgress(task=key, description=description, total=total or 0, unit=unit)
        )

    def advance(self, key: str, amount: float) -> None:
        desc, total, unit, done = self._totals.get(key, (key, None, "B", 0.0))
        done += amount
        self._totals[key] = (desc, total, unit, done)
        self._put(
            models_pb2.PullProgress(
                task=key, description=desc, completed=done, total=total or 0, unit=unit
            )
        )

    def done(self, key: str) -> None:
        desc, total, unit, done = self._totals.get(key, (key, None, "B", 0.0))
        self._put(
            models_pb2.PullProgress(
                task=key, description=desc, completed=total or done, total=total or 0, unit=unit
            )
        )

    def note(self, message: str) -> None:
        self._put(models_pb2.PullProgress(note=message))


class ModelsService(models_pb2_grpc.ModelsServicer):
    """The model cache: list, pull (with progress), remove, info.

    ``in_use`` returns the cache folders of the models this server has loaded; removing one
    of them is refused (the server would need it again to load a file transcriber or after a
    restart), so stop the server or serve another model first.
    """

    def __init__(
        self,
        cache_root: Path | None = None,
        in_use: Callable[[], Collection[Path]] = lambda: (),
    ) -> None:
        self._cache_root = cache_root
        self._in_use = in_use

    def _cache(self) -> Any:
        from audiototext.models.cache import ModelCache

        return ModelCache(self._cache_root)

    async def List(
        self, request: models_pb2.ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> models_pb2.ListModelsResponse:
        catalog = await asyncio.to_thread(model_catalog, self._cache_root)
        names = catalog.cached_names
        return models_pb2.ListModelsResponse(
            cached=[_cached_message(e) for e in catalog.cached],
            known=[
                models_pb2.KnownModel(
                    name=m.name,
                    languages=m.languages,
                    params_millions=m.params_millions or 0.0,
                    download_mb=int(m.download_mb or 0),
                    ram_mb=int(m.ram_mb or 0),
                    cached=m.name in names,
                )
                for m in catalog.known
            ],
            cache_dir=str(catalog.cache_dir),
        )

    async def Pull(
        self, request: models_pb2.PullModelRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        from audiototext.models.manager import pull

        if not request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "PullModelRequest.name is empty")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        sink = _QueueProgress(loop, queue)
        job = asyncio.ensure_future(
            asyncio.to_thread(
                pull,
                request.name,
                revision=request.revision or None,
                precision=request.precision or "auto",
                force=request.force,
                progress=sink,
                cache=self._cache(),
            )
        )
        job.add_done_callback(lambda _f: queue.put_nowait(None))
        while True:
            item = await queue.get()
            if item is None:
                break
            await context.write(item)
        try:
            result = job.result()
        except (AudioToTextError, ValueError) as exc:
            await context.abort(grpc_status_for(exc), str(exc))
        # Progress posted just before the job ended may still be queued.
        while not queue.empty():
            item = queue.get_nowait()
            if item is not None:
                await context.write(item)
        await context.write(
            models_pb2.PullProgress(
                done=True, model=_cached_message(result.entry), already_cached=result.cached
            )
        )

    async def Remove(
        self, request: models_pb2.RemoveModelRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> models_pb2.RemoveModelResponse:
        from audiototext.models.registry import resolve

        try:
            spec = resolve(request.name)
        except UnknownModelError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        cache = self._cache()
        chosen = [
            e
            for e in cache.entries(spec.name, request.precision or None)
            if e.matches_version(request.version)
        ]
        if not chosen:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"no cached entry of {spec.name} matches"
            )
        if len(chosen) > 1 and not request.all:
            options = "; ".join(f"{e.version_id}/{e.precision}" for e in chosen)
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{len(chosen)} entries of {spec.name} match ({options}); pick one with "
                "version/precision or set all",
            )
        loaded = {p.resolve() for p in self._in_use()}
        busy = [e for e in chosen if Path(e.path).resolve() in loaded]
        if busy:
            names = "; ".join(f"{e.name} {e.version_id}/{e.precision}" for e in busy)
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{names} is in use by this server; stop it (or serve another model) "
                "before removing it",
            )
        for entry in chosen:
            await asyncio.to_thread(cache.remove, entry)
        return models_pb2.RemoveModelResponse(removed=[_cached_message(e) for e in chosen])

    async def Info(
        self, request: models_pb2.ModelInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> models_pb2.ModelInfo:
        from audiototext.models.registry import resolve

        try:
            spec = resolve(request.name)
        except UnknownModelError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        entries = self._cache().entries(spec.name)
        return models_pb2.ModelInfo(
            name=spec.name,
            description=spec.description or "",
            languages=spec.languages,
            n_mels=spec.n_mels,
            params_millions=spec.params_millions or 0.0,
            download_mb=int(spec.download_mb or 0),
            ram_mb=int(spec.ram_mb or 0),
            cached=[_cached_message(e) for e in entries],
        )
