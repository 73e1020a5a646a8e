"""REST for one model: ``GET``/``DELETE /api/v1/models/{name}`` and
``POST /api/v1/models/{name}/pull`` (progress as Server-Sent Events).

The work is :mod:`audiototext.server.model_admin`'s, the same as gRPC ``Models``; the list
of models (``GET /api/v1/models``) is in :mod:`.rest`. Names may be Hugging Face repo ids
(``org/name``): the slash needs no escaping.

Pull events (``text/event-stream``), each ``event: KIND`` and ``data: JSON``:

* ``progress``: ``{"stage": "download" | "convert", "task", "description", "completed",
  "total", "unit", "percent"}`` (``percent`` null when the total is unknown; sent when a
  task starts, at each whole percent and when it ends);
* ``note``: ``{"message"}`` (a source skipped, a fallback);
* ``done``: ``{"model": CACHED_ENTRY, "already_cached"}``, the last event of a success;
* ``error``: ``{"error": {"code", "message"}}``, the last event of a failure (``ABORTED``
  after ``POST /api/v1/models/{name}/pull/cancel``).

What can be refused before the pull starts (an unknown name, a bad precision) is an ordinary
JSON error with its HTTP status.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from audiototext.server.http.context import HttpContext
from audiototext.server.http.errors import ERROR_RESPONSES
from audiototext.server.http.guard import check_token
from audiototext.server.model_admin import (
    PullDone,
    PullUpdate,
    check_pull,
    model_info,
    pull_updates,
    remove_models,
)
from audiototext.server.pool import LoadedModel, ModelPool
from audiototext.server.status import Status, StatusError

__all__ = ["LoadedModelRow", "loaded_rows", "models_router"]


class LoadedModelRow(BaseModel):
    name: str
    precision: str
    device: str
    state: str = Field(description="loading or loaded")
    sessions: int = Field(description="open streams (and file requests) on this model")
    ram_mb: int = Field(description="expected resident memory, counted against the budget")
    default: bool = Field(description="the server's default model (never unloaded)")
    load_s: float = Field(description="seconds the load took")
    active_streams: int
    queue_depth: int
    rtf: float
    final_latency_ms_p95: float
    overloaded: bool


def loaded_rows(pool: ModelPool | None) -> list[LoadedModelRow]:
    if pool is None:
        return []
    return [_loaded_row(m) for m in pool.models()]


def _loaded_row(m: LoadedModel) -> LoadedModelRow:
    s = m.stats
    return LoadedModelRow(
        name=m.name,
        precision=m.precision,
        device=m.device,
        state=m.state,
        sessions=m.sessions,
        ram_mb=m.ram_mb,
        default=m.pinned,
        load_s=m.load_s,
        active_streams=s.active_sessions if s else 0,
        queue_depth=s.queue_depth if s else 0,
        rtf=s.rtf if s else 0.0,
        final_latency_ms_p95=s.final_latency_ms_p95 if s else 0.0,
        overloaded=s.overloaded if s else False,
    )


class CachedEntryRow(BaseModel):
    name: str
    version: str
    precision: str
    size_mb: float
    source_repo: str
    commit: str
    created_at: str
    path: str
    languages: list[str]
    loaded: bool = Field(description="loaded by this server now")


class ModelInfoDoc(BaseModel):
    name: str
    description: str
    multilingual: bool
    languages: list[str] = Field(
        description="codes, from the cached model when there is one; ['en'] for English-only"
    )
    n_mels: int
    params_millions: float
    download_mb: int
    ram_mb: int
    cached: list[CachedEntryRow]
    loaded: list[LoadedModelRow]
    current: bool = Field(description="the server's default model")


class Removed(BaseModel):
    removed: list[CachedEntryRow]


class PullsCancelled(BaseModel):
    name: str
    cancelled: int = Field(description="running downloads of the model told to stop")


def _languages(entry: Any) -> list[str]:
    try:
        config = json.loads(entry.file("model_config.json").read_text())
        return sorted(config.get("languages") or {}) or ["en"]
    except (OSError, ValueError):
        return []


def cached_row(entry: Any, loaded: set[Any] | None = None) -> CachedEntryRow:
    return CachedEntryRow(
        name=entry.name,
        version=entry.version_id,
        precision=entry.precision,
        size_mb=round(entry.size_bytes / 2**20, 1),
        source_repo=entry.source.get("repo_id", ""),
        commit=entry.commit,
        created_at=entry.created_at,
        path=str(entry.path),
        languages=_languages(entry),
        loaded=entry.path.resolve() in (loaded or set()),
    )


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def _progress(update: PullUpdate) -> dict[str, Any]:
    return {
        "stage": update.stage,
        "task": update.task,
        "description": update.description,
        "completed": update.completed,
        "total": update.total,
        "unit": update.unit,
        "percent": update.percent,
    }


def models_router(ctx: HttpContext) -> APIRouter:
    def token(request: Request) -> None:
        check_token(request, ctx.token)

    router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES, dependencies=[Depends(token)])

    # The pulls running now, by model name: each one's cancel flag.
    running: dict[str, set[threading.Event]] = {}

    def loaded_paths() -> set[Any]:
        return {p.resolve() for p in ctx.pool.loaded_paths()} if ctx.pool is not None else set()

    @router.get("/models/{name:path}", response_model=ModelInfoDoc, summary="One model")
    async def info(name: str) -> ModelInfoDoc:
        """The registry's facts about a model (any Hugging Face repo id is accepted), its
        cached entries and whether this server has it loaded; the same as gRPC
        ``Models.Info``. 404 NOT_FOUND for a name that is neither."""
        spec, entries = await model_info(name, ctx.cache_root)
        loaded = loaded_paths()
        rows = [cached_row(e, loaded) for e in entries]
        languages = next((r.languages for r in rows if r.languages), None)
        if languages is None:
            languages = [] if spec.multilingual else ["en"]
        return ModelInfoDoc(
            name=spec.name,
            description=spec.description,
            multilingual=spec.multilingual,
            languages=languages,
            n_mels=spec.n_mels,
            params_millions=float(spec.params_millions),
            download_mb=int(spec.download_mb),
            ram_mb=int(spec.ram_mb),
            cached=rows,
            loaded=[r for r in loaded_rows(ctx.pool) if r.name == spec.name],
            current=spec.name == ctx.model,
        )

    @router.post(
        "/models/{name:path}/pull",
        summary="Download and convert a model (progress as Server-Sent Events)",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def pull(
        name: str,
        precision: str = Query("auto", description="auto, fp32, int8 or fp16"),
        revision: str = Query("", description="a branch, tag or commit; empty: the default"),
        force: bool = Query(False, description="build again even when cached"),
    ) -> StreamingResponse:
        """Streams ``progress`` events (``stage`` download, then convert, with ``percent``),
        ``note`` events, then ``done`` (or ``error``); see the module doc. The pull goes on
        into the cache if the client goes away. The same work as gRPC ``Models.Pull``."""
        check_pull(name, precision)
        cancel = threading.Event()

        async def events() -> AsyncIterator[bytes]:
            shown: dict[str, float | None] = {}
            running.setdefault(name, set()).add(cancel)
            try:
                async for item in pull_updates(
                    name,
                    precision=precision,
                    revision=revision or None,
                    force=force,
                    cache_root=ctx.cache_root,
                    cancel=cancel,
                ):
                    if isinstance(item, PullDone):
                        yield _event(
                            "done",
                            {
                                "model": cached_row(item.entry).model_dump(),
                                "already_cached": item.already_cached,
                            },
                        )
                    elif item.note:
                        yield _event("note", {"message": item.note})
                    else:
                        percent = item.percent
                        step = None if percent is None else float(int(percent))
                        first = item.task not in shown
                        if first or step != shown[item.task] or percent == 100.0:
                            shown[item.task] = step
                            yield _event("progress", _progress(item))
            except StatusError as exc:
                yield _event("error", {"error": {"code": exc.code.value, "message": exc.message}})
            finally:
                flags = running.get(name, set())
                flags.discard(cancel)
                if not flags:
                    running.pop(name, None)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.post(
        "/models/{name:path}/pull/cancel",
        response_model=PullsCancelled,
        summary="Cancel the running downloads of a model",
    )
    async def cancel_pull(name: str) -> PullsCancelled:
        """Stops every running pull of ``name`` (as it was named in the pull): each ends its
        event stream with an ``error`` event, code ABORTED. Downloaded files stay in the
        download cache (the next pull resumes from them); a conversion under way is
        discarded. 404 NOT_FOUND when no pull of ``name`` is running."""
        flags = running.get(name, set())
        if not flags:
            raise StatusError(
                Status.NOT_FOUND,
                f"no download of {name} is running on this server (it may have finished)",
            )
        for flag in flags:
            flag.set()
        return PullsCancelled(name=name, cancelled=len(flags))

    @router.delete("/models/{name:path}", response_model=Removed, summary="Remove a model")
    async def remove(
        name: str,
        precision: str = Query("", description="only this precision; empty: any"),
        version: str = Query("", description="only this version id or commit; empty: any"),
        all: bool = Query(True, description="remove every match (else >1 match is refused)"),
    ) -> Removed:
        """Removes the model's cached entries (narrowed by precision / version). Refused
        with 409 FAILED_PRECONDITION while the model has open streams or is the server's
        default; an idle loaded model is unloaded first. The same as gRPC ``Models.Remove``."""
        removed = await remove_models(
            name,
            version=version,
            precision=precision,
            remove_all=all,
            cache_root=ctx.cache_root,
            in_use=ctx.models_in_use,
            unload=ctx.pool.unload_idle if ctx.pool is not None else None,
        )
        return Removed(removed=[cached_row(e) for e in removed])

    return router
