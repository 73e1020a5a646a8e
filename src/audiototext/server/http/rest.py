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
from audiototext.server.http.models import LoadedModelRow, loaded_rows
from audiototext.server.stats import hardware_profile, live_stats
from audiototext.server.status import Status, StatusError

__all__ = ["rest_router"]


class Health(BaseModel):
    status: Literal["SERVING", "NOT_SERVING"] = Field(
        description="SERVING while the server takes new streams; NOT_SERVING while it shuts "
        "down (the gRPC health service says the same)"
    )
    model: str = Field(description="the model the server runs")
    version: str = Field(description="audiototext's version")
    models: list[LoadedModelRow] = Field(
        default_factory=list, description="the models loaded now (the default first)"
    )


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
    loaded: bool = Field(default=False, description="loaded by this server now")


class Models(BaseModel):
    models: list[ModelRow]
    current: str = Field(description="the model this server runs")
    cache_dir: str
    loaded: list[LoadedModelRow] = Field(
        default_factory=list, description="the models loaded now, with their live figures"
    )
    memory_budget_mb: int = Field(
        default=0, description="memory for loaded models (serve --model-memory-mb)"
    )


class GpuModel(BaseModel):
    index: str
    name: str
    utilization_percent: float = Field(description="share of time the GPU was busy")
    memory_used_mb: float = Field(description="GPU memory in use (all processes)")
    memory_total_mb: float


class DeviceModel(BaseModel):
    name: Literal["cpu", "gpu"]
    available: bool = Field(description="a stream may ask for it (StreamConfig.device)")
    reason: str = Field(default="", description="why not, when not available")
    providers: list[str] = Field(
        default_factory=list, description="the execution providers that created a session"
    )


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
    process_cpu_percent: float = Field(
        default=0.0, description="the server process's share of the machine's CPU (all cores: 100)"
    )
    machine_cpu_percent: float = Field(default=0.0, description="the whole machine's CPU use")
    process_rss_mb: float = Field(default=0.0, description="the server process's resident memory")
    memory_available_mb: float = Field(
        default=0.0, description="memory available to programs on this machine"
    )
    memory_total_mb: float = Field(default=0.0, description="the machine's memory")
    gpus: list[GpuModel] = Field(
        default_factory=list, description="per GPU, when nvidia-smi is there (else empty)"
    )


class CgroupModel(BaseModel):
    cgroup_version: int = Field(description="cgroup version read (1 or 2; 0: none)")
    cpu_quota_cores: float | None = Field(description="the container's CPU quota in cores")
    memory_limit_mb: int | None = Field(description="the container's memory limit")
    memory_usage_mb: int | None
    cpu_dir: str
    memory_dir: str


class HardwareModel(BaseModel):
    machine: str
    cpu_model: str
    logical_cores: int
    physical_cores: int
    usable_cores: int = Field(description="CPU affinity, lowered to a container's CPU quota")
    cpu_freq_max_mhz: float | None
    memory_total_mb: int
    memory_limit_mb: int = Field(description="the machine's memory, or a container's limit")
    cpu_flags: list[str]
    instruction_sets: list[str] = Field(description="AVX2, AVX-512, VNNI, AMX, NEON present")
    cgroup: CgroupModel
    providers: list[str] = Field(description="ONNX Runtime execution providers available")
    gpu_providers: list[str]
    recommended_precision: str


class RecommendationModel(BaseModel):
    model: str
    precision: str
    threads: int = Field(description="ONNX Runtime threads per decoding job")
    streams: int = Field(description="concurrent streams these settings hold here")
    partial_interval_ms: int
    realtime: bool = Field(description="false: nothing measured keeps up; the fastest")
    reasons: dict[str, str] = Field(description="model, threads, streams, partial_interval_ms")
    profile_created_at: str


class ProfileStateModel(BaseModel):
    state: Literal["fresh", "missing", "stale", "corrupt", "unread"]
    path: str = Field(description="the profile file (in the model cache)")
    message: str
    rebuilding: bool = Field(description="a low-priority rebuild is running")
    recommendation: RecommendationModel | None


class ProfileModel(ProfileStateModel):
    profile: dict[str, Any] | None = Field(description="the stored profile, when fresh")


class SystemProfile(BaseModel):
    hardware: HardwareModel
    now: dict[str, Any] = Field(
        description="free memory and disk (model cache), CPU clock, NVIDIA GPUs via NVML"
    )
    profile: ProfileModel
    network: list[dict[str, Any]] = Field(description="clients' latest network reports")


class AlertModel(BaseModel):
    name: str = Field(
        description="engine_overloaded, memory_low, disk_low, model_load_failed, gpu_fallback, "
        "history_unavailable or session_store_down"
    )
    message: str = Field(description="what is wrong, in words")
    since: float = Field(description="when it was raised (Unix time)")


class ControlAction(BaseModel):
    at: float = Field(description="when (Unix time)")
    action: str = Field(
        description="partial_interval, finals_reduced, finals_full, overload, "
        "overload_cleared (the engine's load policy), model_fallback, model_restored, "
        "batch_size, gpu_to_cpu, compression, threads, threads_applied, threads_failed "
        "(the controller)"
    )
    reason: str = Field(description="why, with the figures that decided it")


class ControlState(BaseModel):
    fallback_active: bool = Field(description="new streams on the default model get a cheaper one")
    fallback_models: list[str] = Field(description="the cheaper models chosen so far")
    default_model: str
    partial_interval_scale: float = Field(description="how far partial intervals are stretched")
    overloaded: bool = Field(description="the default engine refuses new streams")
    batch_limit: int = Field(description="the most utterances decoded together now")
    threads_adjustable: bool = Field(
        description="the controller changes intra-op threads (off: serve --no-adapt-threads, "
        "or an engine that cannot rebuild its sessions)"
    )
    threads: int = Field(description="intra-op threads per lane the controller wants now")
    max_threads: int | None = Field(
        description="the most it gives (serve --threads, or the engine's default at start)"
    )
    engine_threads: dict[str, int] = Field(
        description="per loaded CPU model: the threads its sessions run with now"
    )
    compressed_streams: int = Field(description="streams asked to compress their audio")


class Controller(BaseModel):
    state: ControlState
    actions_total: dict[str, int] = Field(description="actions since start, by action")
    timeline: list[ControlAction] = Field(description="the latest actions, oldest first")


class System(BaseModel):
    hardware: HardwareModel
    stats: LiveStatsModel
    alerts: list[AlertModel] = Field(
        description="the alerts raised now (with hysteresis: see README, Metrics)"
    )
    models: list[LoadedModelRow] = Field(
        default_factory=list, description="per loaded model: streams, queue, rtf, latency"
    )
    devices: list[DeviceModel] = Field(
        default_factory=list,
        description="processing devices a stream may ask for (StreamConfig.device), probed",
    )
    default_device: str = Field(
        default="cpu", description="where a stream with device auto runs (the default model's)"
    )
    profile: ProfileStateModel | None = Field(
        default=None, description="the performance profile's state and recommendation"
    )


def _languages(entry: Any) -> list[str]:
    try:
        config = json.loads(entry.file("model_config.json").read_text())
        return sorted(config.get("languages") or {}) or ["en"]
    except (OSError, ValueError):
        return []


def _model_rows(
    catalog: ModelCatalog,
    current: str,
    default_path: Path | None = None,
    loaded_paths: tuple[Path, ...] = (),
) -> list[ModelRow]:
    """``default_path``: the cache folder the default model runs from (marks that precision
    only as ``current``); ``loaded_paths``: the folders of every loaded model."""
    known = {m.name: m for m in catalog.known}
    default = default_path.resolve() if default_path is not None else None
    loaded = {p.resolve() for p in loaded_paths}
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
                current=(entry.path.resolve() == default if default else entry.name == current),
                loaded=entry.path.resolve() in loaded,
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
            models=loaded_rows(ctx.pool),
        )

    @router.get(
        "/models", response_model=Models, dependencies=guarded, summary="Cached and known models"
    )
    async def models() -> Models:
        """One row per cached entry (name + precision) and one per registry model not cached;
        the same listing as gRPC ``Models.List``."""
        catalog = await asyncio.to_thread(model_catalog, ctx.cache_root)
        pool = ctx.pool
        default_path = next((m.path for m in pool.models() if m.pinned), None) if pool else None
        loaded_paths = tuple(pool.loaded_paths()) if pool else ()
        rows = await asyncio.to_thread(_model_rows, catalog, ctx.model, default_path, loaded_paths)
        return Models(
            models=rows,
            current=ctx.model,
            cache_dir=str(catalog.cache_dir),
            loaded=loaded_rows(pool),
            memory_budget_mb=pool.budget_mb if pool else 0,
        )

    @router.get(
        "/system",
        response_model=System,
        dependencies=guarded,
        summary="Hardware profile and live statistics",
    )
    async def system() -> System:
        """The same figures as gRPC ``System.GetHardware`` and ``System.GetStats``."""
        profile, precision = await asyncio.to_thread(hardware_profile)
        devices = await asyncio.to_thread(ctx.devices)  # probed once, then cached
        stats = asdict(live_stats(ctx.store, ctx.model, ctx.started_at))
        if ctx.resources is not None:
            stats.update(asdict(await asyncio.to_thread(ctx.resources.sample)))
        return System(
            hardware=HardwareModel.model_validate(
                {**profile.to_json(), "recommended_precision": precision}
            ),
            stats=LiveStatsModel.model_validate(stats),
            alerts=[AlertModel(**asdict(a)) for a in ctx.alerts.active()] if ctx.alerts else [],
            models=loaded_rows(ctx.pool),
            devices=[DeviceModel.model_validate(asdict(d)) for d in devices],
            default_device=ctx.pool.default.key.device if ctx.pool else "cpu",
            profile=(
                ProfileStateModel.model_validate(ctx.profile.report().to_json())
                if ctx.profile
                else None
            ),
        )

    @router.get(
        "/system/profile",
        response_model=SystemProfile,
        dependencies=guarded,
        summary="Hardware, performance profile and recommendations",
    )
    async def system_profile() -> SystemProfile:
        """What ``audiototext doctor --json`` says, from the server: the recommendation is the
        one gRPC ``System.GetHardware`` gives."""
        from audiototext.hardware.detect import observe

        profile, precision = await asyncio.to_thread(hardware_profile)
        now = await asyncio.to_thread(observe, ctx.cache_root, profile)
        report = (
            ctx.profile.report().to_json()
            if ctx.profile
            else {
                "state": "unread",
                "path": "",
                "message": "no profile keeper",
                "rebuilding": False,
                "recommendation": None,
                "profile": None,
            }
        )
        return SystemProfile(
            hardware=HardwareModel.model_validate(
                {**profile.to_json(), "recommended_precision": precision}
            ),
            now=now.to_json(),
            profile=ProfileModel.model_validate(report),
            network=[r.to_json() for r in ctx.network.recent()],
        )

    @router.get(
        "/system/controller",
        response_model=Controller,
        dependencies=guarded,
        summary="What the adaptive controller does under load, and why",
    )
    async def controller() -> Controller:
        """Its state and its recent actions (README, "Under load")."""
        if ctx.controller is None:
            raise StatusError(
                Status.UNIMPLEMENTED,
                "this server runs without the adaptive controller (serve --no-controller)",
            )
        return Controller.model_validate(ctx.controller.status())

    return router
