"""The REST API under ``/api/v1``: health, models, system.

Answers come from the same calls as the gRPC services (:mod:`audiototext.server.catalog`,
:mod:`audiototext.server.stats`), so the two APIs cannot disagree.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from audiototext._version import __version__
from audiototext.server.catalog import ModelCatalog, model_catalog
from audiototext.server.http.context import HttpContext
from audiototext.server.http.errors import ERROR_RESPONSES
from audiototext.server.http.guard import check_token
from audiototext.server.stats import hardware_profile, live_stats

__all__ = ["rest_router"]


class Health(BaseModel):
    status: Literal["SERVING", "NOT_SERVING"] = Field(
        description="SERVING while the server takes new streams; NOT_SERVING while it shuts "
        "down (the gRPC health service says the same)"
    )
    model: str = Field(description="the model the server runs")
    version: str = Field(description="audiototext's version")


class ModelRow(BaseModel):
    name: str
    precision: str | None = Field(description="fp32, int8 or fp16 when cached; null if not")
    cached: bool
    version: str | None = Field(description="the cached entry's version id; null if not cached")
    size_mb: float = Field(description="on disk when cached, else the download size")
    download_mb: int
    ram_mb: int = Field(description="expected resident memory for one stream (0: unknown)")
    params_millions: float
    multilingual: bool
    languages: list[str] = Field(
        description="language codes the model knows: read from the cached model; ['en'] "
        "for English-only models; [] for a multilingual model not downloaded yet"
    )
    description: str
    current: bool = Field(description="the model this server runs")


class Models(BaseModel):
    models: list[ModelRow]
    current: str = Field(description="the model this server runs")
    cache_dir: str


class LiveStatsModel(BaseModel):
    active_streams: int
    detached_streams: int = Field(description="streams waiting for their client to resume")
    queue_depth: int
    rtf: float = Field(description="compute seconds per audio second, recent")
    final_latency_ms_p50: float
    final_latency_ms_p95: float
    overloaded: bool
    model: str
    version: str
    uptime_s: float
    streams_total: int


class HardwareModel(BaseModel):
    machine: str
    cpu_model: str
    logical_cores: int
    physical_cores: int
    memory_total_mb: int
    cpu_flags: list[str]
    providers: list[str] = Field(description="ONNX Runtime execution providers available")
    gpu_providers: list[str]
    recommended_precision: str


class AlertModel(BaseModel):
    name: str = Field(description="engine_overloaded, memory_low, disk_low or model_load_failed")
    message: str = Field(description="what is wrong, in words")
    since: float = Field(description="when it was raised (Unix time)")


class System(BaseModel):
    hardware: HardwareModel
    stats: LiveStatsModel
    alerts: list[AlertModel] = Field(
        description="the alerts raised now (with hysteresis: see README, Metrics)"
    )


def _languages(entry: Any) -> list[str]:
    try:
        config = json.loads(entry.file("model_config.json").read_text())
        return sorted(config.get("languages") or {}) or ["en"]
    except (OSError, ValueError):
        return []


def _model_rows(
    catalog: ModelCatalog, current: str, in_use: tuple[Path, ...] = ()
) -> list[ModelRow]:
    known = {m.name: m for m in catalog.known}
    loaded = {p.resolve() for p in in_use}
    rows: list[ModelRow] = []
    for entry in catalog.cached:
        spec = known.get(entry.name)
        rows.append(
            ModelRow(
                name=entry.name,
                precision=entry.precision,
                cached=True,
                version=entry.version_id,
                size_mb=round(entry.size_bytes / 2**20, 1),
                download_mb=int(spec.download_mb) if spec else 0,
                ram_mb=int(spec.ram_mb) if spec else 0,
                params_millions=float(spec.params_millions) if spec else 0.0,
                multilingual=spec.multilingual if spec else _languages(entry) != ["en"],
                languages=_languages(entry),
                description=spec.description if spec else "",
                current=entry.path.resolve() in loaded if loaded else entry.name == current,
            )
        )
    for spec in catalog.known:
        if spec.name in catalog.cached_names:
            continue
        rows.append(
            ModelRow(
                name=spec.name,
                precision=None,
                cached=False,
                version=None,
                size_mb=float(spec.download_mb),
                download_mb=int(spec.download_mb),
                ram_mb=int(spec.ram_mb),
                params_millions=float(spec.params_millions),
                multilingual=spec.multilingual,
                languages=[] if spec.multilingual else ["en"],
                description=spec.description,
                current=spec.name == current,
            )
        )
    return rows


def rest_router(ctx: HttpContext) -> APIRouter:
    def token(request: Request) -> None:
        check_token(request, ctx.token)

    router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)
    guarded = [Depends(token)]

    @router.get("/health", response_model=Health, summary="Is the server taking streams?")
    async def health() -> Health:
        """No token needed: load balancers and the page's status light ask it."""
        return Health(
            status="SERVING" if ctx.is_serving() else "NOT_SERVING",
            model=ctx.model,
            version=__version__,
        )

    @router.get(
        "/models", response_model=Models, dependencies=guarded, summary="Cached and known models"
    )
    async def models() -> Models:
        """One row per cached entry (name + precision) and one per registry model not cached;
        the same listing as gRPC ``Models.List``."""
        catalog = await asyncio.to_thread(model_catalog, ctx.cache_root)
        rows = await asyncio.to_thread(_model_rows, catalog, ctx.model, ctx.models_in_use)
        return Models(models=rows, current=ctx.model, cache_dir=str(catalog.cache_dir))

    @router.get(
        "/system",
        response_model=System,
        dependencies=guarded,
        summary="Hardware profile and live statistics",
    )
    async def system() -> System:
        """The same figures as gRPC ``System.GetHardware`` and ``System.GetStats``."""
        profile, precision = await asyncio.to_thread(hardware_profile)
        stats = live_stats(ctx.store, ctx.model, ctx.started_at)
        return System(
            hardware=HardwareModel.model_validate(
                {**profile.to_json(), "recommended_precision": precision}
            ),
            stats=LiveStatsModel(**asdict(stats)),
            alerts=[AlertModel(**asdict(a)) for a in ctx.alerts.active()] if ctx.alerts else [],
        )

    return router
