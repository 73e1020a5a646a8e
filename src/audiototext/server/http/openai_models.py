"""OpenAI's model listing: ``GET /v1/models`` and ``GET /v1/models/{id}``.

Lists what a request's ``model`` may name here: OpenAI's speech-to-text names (``whisper-1``
...: the server's own model), the server's model, and every model downloaded to the cache
(short names or repo ids) — the same catalog as ``/api/v1/models`` and gRPC ``Models.List``.
A model the registry knows but that is not downloaded is not listed (a request for it is
refused until it is pulled).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from audiototext.server.catalog import model_catalog
from audiototext.server.http.context import HttpContext
from audiototext.server.http.openai_common import (
    OPENAI_ALIASES,
    OPENAI_ERROR_RESPONSES,
    OpenAIError,
    check_bearer,
)

__all__ = ["openai_models_router"]

OWNER = "audiototext"


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int  # seconds since the epoch (when it was downloaded; 0: not known)
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


def openai_models_router(ctx: HttpContext) -> APIRouter:
    router = APIRouter(prefix="/v1", responses=OPENAI_ERROR_RESPONSES, tags=["openai"])

    @router.get("/models", response_model=OpenAIModelList, summary="Models (OpenAI-compatible)")
    async def list_models(request: Request) -> OpenAIModelList:
        check_bearer(request, ctx.token)
        return OpenAIModelList(data=await _models(ctx))

    @router.get(
        "/models/{model_id:path}",
        response_model=OpenAIModel,
        summary="One model (OpenAI-compatible)",
    )
    async def one_model(request: Request, model_id: str) -> OpenAIModel:
        check_bearer(request, ctx.token)
        for model in await _models(ctx):
            if model.id == model_id:
                return model
        raise OpenAIError(
            404,
            f"the model {model_id!r} is not served here; GET /v1/models lists those that are "
            f"(a known model must be downloaded first: POST /api/v1/models/NAME/pull)",
            param="model",
            code="model_not_found",
        )

    return router


async def _models(ctx: HttpContext) -> list[OpenAIModel]:
    catalog = await asyncio.to_thread(model_catalog, ctx.cache_root)
    created: dict[str, int] = {}
    for entry in catalog.cached:  # newest first: a name's first entry is its newest
        created.setdefault(entry.name, _epoch(entry.manifest.get("created_at")))
    default = ctx.pool.default.key.name if ctx.pool is not None else ctx.model
    rows = [
        OpenAIModel(id=alias, created=created.get(default, 0), owned_by=OWNER)
        for alias in sorted(OPENAI_ALIASES)
    ]
    rows.append(OpenAIModel(id=default, created=created.get(default, 0), owned_by=OWNER))
    rows += [
        OpenAIModel(id=name, created=when, owned_by=OWNER)
        for name, when in created.items()
        if name != default
    ]
    return rows


def _epoch(value: Any) -> int:
    try:
        return int(datetime.fromisoformat(str(value)).timestamp())
    except ValueError:
        return 0
