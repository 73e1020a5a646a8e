"""Composition root of the server: one model pool, one session store, every listener.

``GrpcServer(config).start()`` loads the default model into the model pool (other models
are loaded when a stream first names them) and builds the stream layer, then serves them over
gRPC and (with ``http_port``) over HTTP: FastAPI on uvicorn in the same event loop, sharing
the pool, sessions, limits and token. ``stop()`` shuts down gracefully: new streams are
refused (UNAVAILABLE), open sessions are finalised so connected clients get their last
results, then both listeners stop with a grace period for in-flight calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from audiototext.errors import ConfigError
from audiototext.server.alerts import (
    AlertMonitor,
    AlertProbes,
    free_disk_bytes,
    free_memory_bytes,
)
from audiototext.server.config import ServerConfig
from audiototext.server.controller import CONTROL_INTERVAL_S, Controller
from audiototext.server.devices import DeviceProbe, real_probe
from audiototext.server.engine import Engine
from audiototext.server.files import FileTranscribeFn, FileTranscriber
from audiototext.server.gpu import GpuSampler
from audiototext.server.grpc.auth import TokenInterceptor
from audiototext.server.grpc.history import HistoryService
from audiototext.server.grpc.models import ModelsService
from audiototext.server.grpc.system import SystemService
from audiototext.server.grpc.transcription import TranscriptionService
from audiototext.server.network import NetworkReport, NetworkReports
from audiototext.server.observer import NO_OBSERVER, StreamObserver
from audiototext.server.perf_profile import ProfileKeeper
from audiototext.server.pool import (
    ModelChoice,
    ModelKey,
    ModelPool,
    cache_resolver,
    check_memory_budget,
    default_choice,
    default_memory_budget_mb,
    load_streaming_engine,
)
from audiototext.server.recording import HistoryRecorder, recording_files
from audiototext.server.resources import ResourceSampler
from audiototext.server.session_state import (
    MemoryStateStore,
    SessionStateStore,
    state_ttl_s,
)
from audiototext.server.sessions import SessionStore
from audiototext.server.streams import StreamLimits, StreamService
from audiototext.wire._proto import (
    history_pb2,
    history_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    system_pb2,
    system_pb2_grpc,
    transcription_pb2,
    transcription_pb2_grpc,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from audiototext.server.http.listener import HttpListener
    from audiototext.server.http.rtc_peers import RtcPeers
    from audiototext.server.metrics import ServerMetrics
    from audiototext.server.tls import SelfSigned

__all__ = ["GrpcServer", "ServerConfig", "load_recognizer", "serve"]

log = logging.getLogger(__name__)

ALERT_CHECK_S = 1.0  # how often the alerts read the engine, free memory and free disk

SERVICE_NAMES = (
    transcription_pb2.DESCRIPTOR.services_by_name["Transcription"].full_name,
    models_pb2.DESCRIPTOR.services_by_name["Models"].full_name,
    system_pb2.DESCRIPTOR.services_by_name["System"].full_name,
    history_pb2.DESCRIPTOR.services_by_name["History"].full_name,
)


def load_recognizer(config: ServerConfig) -> Engine:
    """The real streaming engine with ``config.model`` (pulled into the cache if missing).

    It also limits numpy's OpenBLAS to one thread in this process: the engine's decoding
    lanes keep the cores busy, and OpenBLAS's spinning threads took CPU from them
    (:mod:`audiototext._blas`).
    """
    from audiototext._blas import limit_blas_threads
    from audiototext.streaming import RecognizerOptions, StreamingRecognizer

    limit_blas_threads(1)

    recognizer: Engine = StreamingRecognizer.load(
        config.model,
        RecognizerOptions(max_sessions=config.max_sessions),
        precision=config.precision,
        threads=config.threads,
        cache_root=config.cache_root,
    )
    return recognizer


class GrpcServer:
    """A running (after ``start``) grpc.aio server with every service of audiototext.v1."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        recognizer: Engine | None = None,
        recognizer_factory: Callable[[ServerConfig], Engine] = load_recognizer,
        engine_loader: Callable[[ModelChoice], Engine] | None = None,
        transcribe_file: FileTranscribeFn | None = None,
        devices: DeviceProbe = real_probe,
    ) -> None:
        """``recognizer``: the default model's engine, ready (else ``recognizer_factory``
        builds it); ``engine_loader``: builds the engine of another model for the pool
        (default: the real streaming engine over the cache entry); ``devices``: which
        processing devices work here (default: the hardware probe)."""
        self.config = config
        self._recognizer = recognizer
        self._owns_recognizer = recognizer is None  # an injected one is the caller's to close
        self._factory = recognizer_factory
        self._engine_loader = engine_loader
        self._transcribe_file = transcribe_file
        self.devices = devices
        self.resources: ResourceSampler | None = None
        self.pool: ModelPool | None = None
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self.store: SessionStore | None = None
        self.state_store: SessionStateStore | None = None
        self.history: HistoryRecorder | None = None
        self.port = 0
        self.tls: SelfSigned | None = None  # with config.self_signed, once started
        self.http: HttpListener | None = None
        self.webrtc: RtcPeers | None = None  # the HTTP listener's WebRTC peers
        # What the HTTP app is built from, once started (http_app()).
        self._http_inputs: tuple[StreamService, object, FileTranscribeFn] | None = None
        self.serving = False  # what the health services (gRPC and HTTP) report
        self._stopped = asyncio.Event()
        self.metrics: ServerMetrics | None = None
        self.alerts: AlertMonitor | None = None
        self.profile: ProfileKeeper | None = None  # the performance profile, once started
        # What clients measured of their network (the page reports it; the controller reads
        # it through server.network.ClientNetwork).
        self.network = NetworkReports()
        self._alert_task: asyncio.Task[None] | None = None
        self.controller: Controller | None = None
        # The stream layer, once started: what another front end (rayserve/) hands streams to.
        self.streams: StreamService | None = None
        self._control_task: asyncio.Task[None] | None = None

    @property
    def recognizer(self) -> Engine:
        if self._recognizer is None:
            raise RuntimeError("the server is not started")
        return self._recognizer

    @property
    def tls_files(self) -> tuple[Path, Path] | None:
        """(certificate, key) both listeners use; None without TLS."""
        if self.tls is not None:
            return self.tls.cert, self.tls.key
        cfg = self.config
        if cfg.tls_cert is not None and cfg.tls_key is not None:
            return cfg.tls_cert, cfg.tls_key
        return None

    async def start(self) -> None:
        cfg = self.config
        alerts = self._start_observability()
        if cfg.self_signed:
            from audiototext.server.tls import (
                certificate_hosts,
                ensure_self_signed,
                self_signed_dir,
            )

            hosts = certificate_hosts(cfg.host, cfg.http_host or cfg.host)
            self.tls = await asyncio.to_thread(
                ensure_self_signed, hosts, self_signed_dir(cfg.cache_root)
            )
        await asyncio.to_thread(
            check_memory_budget, cfg.model_memory_mb, cfg.model, cfg.precision, cfg.cache_root
        )
        if self._recognizer is None:
            # Loading (and maybe converting) the model takes a while: not on the event loop.
            self._recognizer = await asyncio.to_thread(self._load, cfg.model, self._factory, cfg)
        self.pool = await asyncio.to_thread(self._build_pool, self._recognizer)
        # After the load: a model pulled at start-up is part of the profile's fingerprint.
        self.profile = ProfileKeeper(cfg.cache_root, rebuild=cfg.benchmark_on_start)
        await self.profile.start()
        observer: StreamObserver = self.metrics or NO_OBSERVER
        # A history file that cannot be used is logged; transcription goes on regardless.
        self.history = await HistoryRecorder.start(
            cfg.history_settings(), model=cfg.model, on_unavailable=alerts.history_unavailable
        )
        self.state_store = await asyncio.to_thread(self._open_state_store, alerts)
        self.store = SessionStore(
            self._recognizer,
            max_sessions=cfg.max_sessions,
            resume_grace_s=cfg.resume_grace_s,
            recorder=self.history,
            observer=observer,
            state_store=self.state_store,
        )
        self.store.start()
        if self.metrics is not None:
            self.metrics.attach(self.store, alerts)
        # One GPU sampler per server: the metrics' one when there are metrics.
        gpu = self.metrics.gpu if self.metrics is not None else GpuSampler()
        gpu.start()
        self.resources = await asyncio.to_thread(ResourceSampler, gpu)
        if cfg.controller:
            from audiototext.streaming.options import RecognizerOptions

            self.controller = Controller(
                self.pool,
                cfg.control,
                max_batch=RecognizerOptions().max_batch,
                cache_root=cfg.cache_root,
                resources=self.resources,
                alerts=alerts,
                registry=self.metrics.registry if self.metrics is not None else None,
            )
            self.network.listeners.append(_uplink_to(self.controller))
        interceptors: list[Any] = [TokenInterceptor(cfg.token)] if cfg.token else []
        if self.metrics is not None:
            from audiototext.server.grpc.metrics import MetricsInterceptor

            # First, so that the calls the token check refuses are counted too.
            interceptors.insert(0, MetricsInterceptor(self.metrics))
        options = [
            ("grpc.max_receive_message_length", cfg.max_message_bytes),
            ("grpc.max_send_message_length", cfg.max_message_bytes),
            ("grpc.so_reuseport", 0),
            *cfg.extra_options,
        ]
        server = grpc.aio.server(interceptors=interceptors, options=options)
        limits = StreamLimits(
            max_chunk_bytes=cfg.max_chunk_bytes,
            max_buffered_s=cfg.max_buffered_s,
            metrics_interval_s=cfg.metrics_interval_s,
            partial_interval_ms=cfg.partial_interval_ms,
        )
        file_transcriber = self._transcribe_file or FileTranscriber(
            cfg.model, cfg.precision, cfg.cache_root, on_load=self._loaded
        )
        transcribe_file = recording_files(file_transcriber, self.history)
        streams = StreamService(
            self.store,
            pool=self.pool,
            limits=limits,
            alerts=alerts.active,
            controller=self.controller,
        )
        self.streams = streams
        # The generated registration functions are untyped (no .pyi from grpcio-tools).
        generated: tuple[Any, Any, Any, Any] = (
            transcription_pb2_grpc,
            models_pb2_grpc,
            system_pb2_grpc,
            history_pb2_grpc,
        )
        generated[0].add_TranscriptionServicer_to_server(
            TranscriptionService(self.store, streams=streams, transcribe_file=transcribe_file),
            server,
        )
        generated[1].add_ModelsServicer_to_server(
            ModelsService(
                cfg.cache_root,
                in_use=lambda: self._models_in_use(file_transcriber),
                unload=self.pool.unload_idle,
            ),
            server,
        )
        generated[2].add_SystemServicer_to_server(
            SystemService(self.store, cfg.model, alerts.active, self.devices, self.profile),
            server,
        )
        generated[3].add_HistoryServicer_to_server(HistoryService(lambda: self.history), server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = f"{_host_for_address(cfg.host)}:{cfg.port}"
        tls = self.tls_files
        if tls is not None:
            try:
                creds = grpc.ssl_server_credentials([(tls[1].read_bytes(), tls[0].read_bytes())])
            except OSError as exc:
                self._close_history()
                raise ConfigError(f"cannot read the TLS key or certificate: {exc}") from exc
            self.port = server.add_secure_port(address, creds)
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            self._close_history()
            raise ConfigError(f"cannot listen on {address} (in use, or not a local address)")
        await server.start()
        self._server = server
        self.serving = True
        # Started with the server (stop() ends it), not before: a failed start leaves no task.
        self._alert_task = asyncio.create_task(alerts.run(ALERT_CHECK_S), name="alerts")
        if self.controller is not None:
            self._control_task = asyncio.create_task(
                self.controller.run(CONTROL_INTERVAL_S), name="controller"
            )
        log.info("serving audiototext.v1 on %s:%d", cfg.host, self.port)
        self._http_inputs = (streams, file_transcriber, transcribe_file)
        if cfg.http_port is not None:
            try:
                await self._start_http()
            except BaseException:
                await self.stop(0)
                raise

    def http_app(self) -> FastAPI:
        """The HTTP app (page, REST, WebSockets, /v1) bound to this started server, for a host
        that serves it itself (a Ray Serve replica's ingress); the ``http_port`` listener
        serves the same app."""
        from audiototext.server.http.app import HttpContext, create_app
        from audiototext.server.http.rtc_peers import RtcPeers
        from audiototext.server.http.web import package_web_dir

        assert self._http_inputs is not None, "start() the server first"
        streams, file_transcriber, transcribe_file = self._http_inputs
        cfg = self.config
        assert self.store is not None and self.pool is not None
        context = HttpContext(
            streams=streams,
            store=self.store,
            model=cfg.model,
            token=cfg.token,
            cache_root=cfg.cache_root,
            is_serving=lambda: self.serving,
            started_at=time.monotonic(),
            web_dir=cfg.web_dir if cfg.web_dir is not None else package_web_dir(),
            history=self.history,
            metrics=self.metrics,
            alerts=self.alerts,
            transcribe_file=transcribe_file,
            max_upload_bytes=cfg.max_upload_bytes,
            webrtc=RtcPeers(),
            pool=self.pool,
            models_in_use=lambda: self._models_in_use(file_transcriber),
            devices=self.devices,
            resources=self.resources,
            controller=self.controller,
            profile=self.profile,
            network=self.network,
        )
        self.webrtc = context.webrtc
        return create_app(context)

    async def _start_http(self) -> None:
        from audiototext.server.http.listener import HttpListener

        cfg = self.config
        assert cfg.http_port is not None
        self.http = HttpListener(
            self.http_app(),
            host=cfg.http_host or cfg.host,
            port=cfg.http_port,
            # Room above the chunk limit, so an oversized chunk gets the stream layer's
            # explained refusal; larger frames are cut by the protocol (close 1009).
            max_frame_bytes=2 * cfg.max_chunk_bytes + (64 << 10),
            tls_cert=self.tls_files[0] if self.tls_files else None,
            tls_key=self.tls_files[1] if self.tls_files else None,
            shutdown_grace_s=cfg.shutdown_grace_s,
        )
        await self.http.start()

    def _close_history(self) -> None:
        """Before the server ran (start failed): no final is queued, nothing to wait for."""
        if self.history is not None:
            self.history.close()
            self.history = None

    def _open_state_store(self, alerts: AlertMonitor) -> SessionStateStore:
        """The configured store; an unreachable Redis is a warning and an alert, not a stop
        (it is retried, and streams meanwhile are resumable on this server only)."""
        cfg = self.config
        if cfg.session_store == "memory":
            return MemoryStateStore()
        from audiototext.server.redis_store import RedisStateStore

        store = RedisStateStore(
            cfg.session_store,
            ttl_s=state_ttl_s(cfg.resume_grace_s),
            on_health=alerts.session_store,
        )
        store.ping()
        alerts.check()
        return store

    def _start_observability(self) -> AlertMonitor:
        """The alert monitor, and (unless ``metrics=False``) the metrics registry."""
        from audiototext.models.cache import cache_home

        cfg = self.config
        cache_dir = cfg.cache_root or cache_home()
        self.alerts = AlertMonitor(
            cfg.alerts,
            AlertProbes(
                overloaded=lambda: (
                    self._recognizer is not None and self._recognizer.stats().overloaded
                ),
                free_memory_bytes=free_memory_bytes,
                free_disk_bytes=lambda: free_disk_bytes(cache_dir),
            ),
        )
        if cfg.metrics:
            from audiototext.server.metrics import ServerMetrics

            self.metrics = ServerMetrics(cfg.model, cache_dir)
        return self.alerts

    def _load(
        self, model: str, factory: Callable[[ServerConfig], Engine], cfg: ServerConfig
    ) -> Engine:
        """``factory(cfg)``, timed and counted; a failure raises the model_load_failed alert."""
        began = time.monotonic()
        try:
            engine = factory(cfg)
        except Exception as exc:
            self._loaded(model, time.monotonic() - began, exc)
            raise
        self._loaded(model, time.monotonic() - began, None)
        return engine

    def _loaded(self, model: str, seconds: float, error: BaseException | None) -> None:
        """A model load finished (the engine's, or the file transcriber's, on any thread)."""
        if error is None:
            log.info("model %s loaded in %.1f s", model, seconds)
        else:
            log.error("model %s failed to load after %.1f s: %s", model, seconds, error)
        if self.metrics is not None:
            self.metrics.model_loaded(model, seconds, error)
        if self.alerts is not None:
            self.alerts.model_load(model, None if error is None else str(error))

    def _build_pool(self, default_engine: Engine) -> ModelPool:
        """The model pool with the default model's engine in it, pinned (blocking: reads the
        cache and the hardware profile)."""
        from audiototext.models.cache import entry_precision
        from audiototext.models.manager import resolve_precision

        cfg = self.config
        precision = resolve_precision(cfg.precision)
        default = default_choice(cfg.model, precision, cfg.cache_root)
        # The folder the engine runs from, when it says (a test double may not): it marks
        # which cached precision is the default's, and it cannot be removed.
        loaded_from = getattr(getattr(default_engine, "model", None), "path", None)
        path = loaded_from if isinstance(loaded_from, Path) else None
        key = default.key
        precision_used = entry_precision(path) if path is not None else None
        if precision_used is not None:
            key = ModelKey(key.name, precision_used, key.device)
        default = ModelChoice(key, path, default.multilingual, default.languages, default.ram_mb)

        def load(choice: ModelChoice) -> Engine:
            return load_streaming_engine(
                choice,
                max_sessions=cfg.max_sessions,
                cache_root=cfg.cache_root,
                threads=cfg.threads,
            )

        pool = ModelPool(
            default=default,
            resolver=cache_resolver(cfg.cache_root, precision),
            loader=self._engine_loader or load,
            budget_mb=cfg.model_memory_mb or default_memory_budget_mb(),
            devices=self.devices,
        )
        pool.add(default, default_engine, pinned=True, owned=self._owns_recognizer)
        return pool

    def _models_in_use(self, transcribe_file: object) -> list[Path]:
        """Cache folders that cannot be removed now: the models with open streams, the
        default model (pinned in the pool) and the file transcriber's."""
        paths = list(self.pool.busy_paths()) if self.pool is not None else []
        file_model = getattr(transcribe_file, "model_path", None)
        if isinstance(file_model, Path):
            paths.append(file_model)
        return paths

    async def stop(self, grace_s: float | None = None) -> None:
        """Refuse new streams, finalise open ones, then stop the server."""
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        if self._server is None:
            return
        self.serving = False
        if self._alert_task is not None:
            self._alert_task.cancel()
        if self._control_task is not None:
            self._control_task.cancel()
        if self.profile is not None:
            await self.profile.stop()
        if self.metrics is not None:
            self.metrics.close()
        if self.resources is not None and self.resources.gpu is not None:
            self.resources.gpu.stop()
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self.store is not None:
            await self.store.close(grace)
        if self.state_store is not None:
            await asyncio.to_thread(self.state_store.close)
        if self.webrtc is not None:  # after the finals went out on their data channels
            await self.webrtc.close_all()
        if self.history is not None:
            # After the sessions' last finals: their commits are queued before this stop.
            await asyncio.to_thread(self.history.close)
        if self.http is not None:
            await self.http.stop()
            self.http = None
        await self._server.stop(grace)
        self._server = None
        if self.pool is not None:
            await self.pool.close()  # closes the engines it built (and ours, when we built it)
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _host_for_address(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


async def serve(config: ServerConfig, *, ready: Callable[[GrpcServer], None] | None = None) -> None:
    """Run until SIGINT/SIGTERM, then shut down gracefully."""
    server = GrpcServer(config)
    await server.start()
    if ready is not None:
        ready(server)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: finalising open streams")
    await server.stop()


def _uplink_to(controller: Controller) -> Callable[[NetworkReport], None]:
    """A client's measured upload speed, for the stream it names, to the controller: audio
    goes up, so the uplink decides whether the stream should be compressed."""

    def report(r: NetworkReport) -> None:
        if r.session_id and r.upload_mbps:
            controller.report_link(r.session_id, r.upload_mbps * 1e6)

    return report
