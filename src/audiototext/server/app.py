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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from audiototext.errors import ConfigError
from audiototext.server.engine import Engine
from audiototext.server.files import FileTranscribeFn, FileTranscriber
from audiototext.server.grpc.auth import TokenInterceptor
from audiototext.server.grpc.models import ModelsService
from audiototext.server.grpc.system import SystemService
from audiototext.server.grpc.transcription import TranscriptionService
from audiototext.server.pool import (
    ModelChoice,
    ModelKey,
    ModelPool,
    cache_resolver,
    default_choice,
    default_memory_budget_mb,
    load_streaming_engine,
)
from audiototext.server.sessions import SessionStore
from audiototext.server.streams import StreamLimits, StreamService
from audiototext.wire._proto import (
    models_pb2,
    models_pb2_grpc,
    system_pb2,
    system_pb2_grpc,
    transcription_pb2,
    transcription_pb2_grpc,
)

if TYPE_CHECKING:
    from audiototext.server.http.listener import HttpListener

__all__ = ["GrpcServer", "ServerConfig", "load_recognizer", "serve"]

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    transcription_pb2.DESCRIPTOR.services_by_name["Transcription"].full_name,
    models_pb2.DESCRIPTOR.services_by_name["Models"].full_name,
    system_pb2.DESCRIPTOR.services_by_name["System"].full_name,
)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051  # 0 picks a free port (see GrpcServer.port)
    model: str = "tiny.en"
    precision: str = "auto"
    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_sessions: int = 16
    max_message_bytes: int = 64 << 20  # transport limit; whole files go through Transcribe
    max_chunk_bytes: int = 1 << 20
    max_buffered_s: float = 30.0
    resume_grace_s: float = 30.0
    metrics_interval_s: float = 1.0
    shutdown_grace_s: float = 10.0
    cache_root: Path | None = None  # the model cache; None: $AUDIOTOTEXT_HOME or the default
    http_port: int | None = None  # None: no HTTP listener; 0 picks a free port
    http_host: str | None = None  # None: the same host as gRPC
    web_dir: Path | None = None  # the page's folder; None: the package's audiototext/web
    # Memory for loaded models (expected sizes); None: half the memory available at start.
    model_memory_mb: int | None = None
    extra_options: tuple[tuple[str, int], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("TLS needs both --tls-cert and --tls-key")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is not between 0 and 65535")
        if self.max_sessions < 1:
            raise ConfigError("--max-sessions must be at least 1")
        if self.max_chunk_bytes > self.max_message_bytes:
            raise ConfigError("--max-chunk-bytes cannot exceed --max-message-bytes")
        if not 1.0 <= self.max_buffered_s <= 600.0:
            raise ConfigError("--max-buffered-s must be between 1 and 600")
        if self.resume_grace_s < 0:
            raise ConfigError("--resume-grace-s cannot be negative")
        if self.http_port is not None and not 0 <= self.http_port <= 65535:
            raise ConfigError(f"--http-port {self.http_port} is not between 0 and 65535")
        if self.token is not None and not self.token:
            raise ConfigError("--token cannot be empty")
        if self.model_memory_mb is not None and self.model_memory_mb < 1:
            raise ConfigError("--model-memory-mb must be at least 1")


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
    ) -> None:
        """``recognizer``: the default model's engine, ready (else ``recognizer_factory``
        builds it); ``engine_loader``: builds the engine of another model for the pool
        (default: the real streaming engine over the cache entry)."""
        self.config = config
        self._recognizer = recognizer
        self._owns_recognizer = recognizer is None  # an injected one is the caller's to close
        self._factory = recognizer_factory
        self._engine_loader = engine_loader
        self._transcribe_file = transcribe_file
        self.pool: ModelPool | None = None
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self.store: SessionStore | None = None
        self.port = 0
        self.http: HttpListener | None = None
        self.serving = False  # what the health services (gRPC and HTTP) report
        self._stopped = asyncio.Event()

    @property
    def recognizer(self) -> Engine:
        if self._recognizer is None:
            raise RuntimeError("the server is not started")
        return self._recognizer

    async def start(self) -> None:
        cfg = self.config
        if self._recognizer is None:
            # Loading (and maybe converting) the model takes a while: not on the event loop.
            self._recognizer = await asyncio.to_thread(self._factory, cfg)
        self.pool = await asyncio.to_thread(self._build_pool, self._recognizer)
        self.store = SessionStore(
            self._recognizer, max_sessions=cfg.max_sessions, resume_grace_s=cfg.resume_grace_s
        )
        self.store.start()
        interceptors = [TokenInterceptor(cfg.token)] if cfg.token else []
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
        )
        transcribe_file = self._transcribe_file or FileTranscriber(
            cfg.model, cfg.precision, cfg.cache_root
        )
        streams = StreamService(self.store, pool=self.pool, limits=limits)
        # The generated registration functions are untyped (no .pyi from grpcio-tools).
        generated: tuple[Any, Any, Any] = (
            transcription_pb2_grpc,
            models_pb2_grpc,
            system_pb2_grpc,
        )
        generated[0].add_TranscriptionServicer_to_server(
            TranscriptionService(self.store, streams=streams, transcribe_file=transcribe_file),
            server,
        )
        generated[1].add_ModelsServicer_to_server(
            ModelsService(
                cfg.cache_root,
                in_use=lambda: self._models_in_use(transcribe_file),
                unload=self.pool.unload_idle,
            ),
            server,
        )
        generated[2].add_SystemServicer_to_server(SystemService(self.store, cfg.model), server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = f"{_host_for_address(cfg.host)}:{cfg.port}"
        if cfg.tls_cert is not None and cfg.tls_key is not None:
            try:
                creds = grpc.ssl_server_credentials(
                    [(cfg.tls_key.read_bytes(), cfg.tls_cert.read_bytes())]
                )
            except OSError as exc:
                raise ConfigError(f"cannot read the TLS key or certificate: {exc}") from exc
            self.port = server.add_secure_port(address, creds)
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise ConfigError(f"cannot listen on {address} (in use, or not a local address)")
        await server.start()
        self._server = server
        self.serving = True
        log.info("serving audiototext.v1 on %s:%d", cfg.host, self.port)
        if cfg.http_port is not None:
            try:
                await self._start_http(streams, transcribe_file)
            except BaseException:
                await self.stop(0)
                raise

    async def _start_http(self, streams: StreamService, transcribe_file: object) -> None:
        from audiototext.server.http.app import HttpContext, create_app
        from audiototext.server.http.listener import HttpListener
        from audiototext.server.http.web import package_web_dir

        cfg = self.config
        assert self.store is not None and self.pool is not None and cfg.http_port is not None
        context = HttpContext(
            streams=streams,
            store=self.store,
            model=cfg.model,
            token=cfg.token,
            cache_root=cfg.cache_root,
            is_serving=lambda: self.serving,
            started_at=time.monotonic(),
            web_dir=cfg.web_dir if cfg.web_dir is not None else package_web_dir(),
            pool=self.pool,
            models_in_use=lambda: self._models_in_use(transcribe_file),
        )
        self.http = HttpListener(
            create_app(context),
            host=cfg.http_host or cfg.host,
            port=cfg.http_port,
            # Room above the chunk limit, so an oversized chunk gets the stream layer's
            # explained refusal; larger frames are cut by the protocol (close 1009).
            max_frame_bytes=2 * cfg.max_chunk_bytes + (64 << 10),
            tls_cert=cfg.tls_cert,
            tls_key=cfg.tls_key,
            shutdown_grace_s=cfg.shutdown_grace_s,
        )
        await self.http.start()

    def _build_pool(self, default_engine: Engine) -> ModelPool:
        """The model pool with the default model's engine in it, pinned (blocking: reads the
        cache and the hardware profile)."""
        from audiototext.models.manager import resolve_precision

        cfg = self.config
        precision = resolve_precision(cfg.precision)
        default = default_choice(cfg.model, precision, cfg.cache_root)
        # The folder the engine runs from, when it says (a test double may not): it marks
        # which cached precision is the default's, and it cannot be removed.
        loaded_from = getattr(getattr(default_engine, "model", None), "path", None)
        path = loaded_from if isinstance(loaded_from, Path) else None
        key = default.key
        if path is not None and path.name in ("fp32", "int8", "fp16"):
            key = ModelKey(key.name, path.name, key.device)
        default = ModelChoice(key, path, default.multilingual, default.languages, default.ram_mb)

        def load(choice: ModelChoice) -> Engine:
            return load_streaming_engine(
                choice, max_sessions=cfg.max_sessions, cache_root=cfg.cache_root
            )

        pool = ModelPool(
            default=default,
            resolver=cache_resolver(cfg.cache_root, precision),
            loader=self._engine_loader or load,
            budget_mb=cfg.model_memory_mb or default_memory_budget_mb(),
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
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self.store is not None:
            await self.store.close(grace)
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
