"""The ``Models`` service: the model cache over gRPC (list, pull with progress, remove, info)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc

from audiototext.server.catalog import model_catalog
from audiototext.server.grpc.status import grpc_code
from audiototext.server.model_admin import (
    InUse,
    PullDone,
    Unload,
    check_pull,
    model_info,
    pull_updates,
    remove_models,
)
from audiototext.server.status import StatusError
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


class ModelsService(models_pb2_grpc.ModelsServicer):
    """The model cache: list, pull (with progress), remove, info.

    ``in_use`` returns the cache folders of the models this server cannot let go of (open
    streams, the model it serves); removing one of them is refused. ``unload`` unloads idle
    models from given folders before they are removed. The logic is
    :mod:`audiototext.server.model_admin`'s, shared with the REST API.
    """

    def __init__(
        self,
        cache_root: Path | None = None,
        in_use: InUse = lambda: (),
        unload: Unload | None = None,
    ) -> None:
        self._cache_root = cache_root
        self._in_use = in_use
        self._unload = unload

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
        try:
            check_pull(request.name, request.precision or "auto", "PullModelRequest.name")
            async for item in pull_updates(
                request.name,
                precision=request.precision or "auto",
                revision=request.revision or None,
                force=request.force,
                cache_root=self._cache_root,
            ):
                if isinstance(item, PullDone):
                    await context.write(
                        models_pb2.PullProgress(
                            done=True,
                            model=_cached_message(item.entry),
                            already_cached=item.already_cached,
                        )
                    )
                else:
                    await context.write(
                        models_pb2.PullProgress(
                            task=item.task,
                            description=item.description,
                            completed=item.completed,
                            total=item.total,
                            unit=item.unit,
                            note=item.note,
                        )
                    )
        except StatusError as exc:
            await context.abort(grpc_code(exc.code), exc.message)

    async def Remove(
        self, request: models_pb2.RemoveModelRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> models_pb2.RemoveModelResponse:
        try:
            removed = await remove_models(
                request.name,
                version=request.version,
                precision=request.precision,
                remove_all=request.all,
                cache_root=self._cache_root,
                in_use=self._in_use,
                unload=self._unload,
            )
        except StatusError as exc:
            await context.abort(grpc_code(exc.code), exc.message)
        return models_pb2.RemoveModelResponse(removed=[_cached_message(e) for e in removed])

    async def Info(
        self, request: models_pb2.ModelInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> models_pb2.ModelInfo:
        try:
            spec, entries = await model_info(request.name, self._cache_root)
        except StatusError as exc:
            await context.abort(grpc_code(exc.code), exc.message)
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
