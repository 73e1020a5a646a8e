"""The Serve application: one deployment of :class:`TranscriptionReplica`, and how to run it.

Each replica holds one engine; ``max_ongoing_requests`` is its session limit (an open stream
is one ongoing request), autoscaling follows ongoing requests, and Serve's gRPC proxy carries
``Transcription.StreamingTranscribe`` (bidirectional) to a replica chosen by
``SessionAffinityRouter`` (:mod:`.routing`, consistent hashing) from the client's
``session_id`` metadata, so every connection of a stream reaches the same replica while the
replica set holds. When it changes (a crash, a scale-up, a redeploy), a stream that lands
elsewhere resumes from the Redis session store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from audiototext.errors import ConfigError
from audiototext.server.config import ServerConfig

__all__ = [
    "APP_NAME",
    "DEPLOYMENT_NAME",
    "GRPC_SERVICER",
    "ServeSettings",
    "build_app",
    "deploy",
    "serve_on_ray",
    "undeploy",
]

APP_NAME = "audiototext"
# The page and its APIs use absolute paths (/api/v1/..., /v1/...), so the app owns "/".
ROUTE = "/"
DEPLOYMENT_NAME = "Transcription"
# The proxy registers our service's methods with the function grpcio-tools generated.
GRPC_SERVICER = "audiototext.wire._proto.transcription_pb2_grpc.add_TranscriptionServicer_to_server"
# Serve imports the router by path in the proxies and handles (rayserve/routing.py).
_ROUTER = "audiototext.rayserve.routing.SessionAffinityRouter"
_READY_TIMEOUT_S = 600.0  # replicas load (maybe convert) their model before they count as up


@dataclass(frozen=True)
class ServeSettings:
    """How many replicas and where the proxy listens (``serve --ray`` flags)."""

    replicas: int = 1  # a fixed count; with max_replicas above it, the autoscaling floor
    max_replicas: int | None = None  # None: a fixed count; else autoscale up to this
    grpc_port: int = 9000  # Serve's gRPC proxy (on the head node)
    http_port: int = 8000  # Serve's HTTP proxy (it starts with the gRPC one)
    cpus_per_replica: float = 1.0
    # A replica being replaced (redeploy, scale-down) keeps serving this long, then stops;
    # its open streams reconnect to another replica and resume from the store.
    drain_s: float = 2.0
    # With autoscaling: how long open streams must stay above the target before Serve adds a
    # replica (its upscale_delay_s and the window it averages load over; Serve's default).
    scale_window_s: float = 30.0

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ConfigError(f"--ray-replicas {self.replicas}: at least 1")
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ConfigError(
                f"--ray-max-replicas {self.max_replicas} is below --ray-replicas "
                f"{self.replicas}; give a maximum at least as large"
            )
        for flag, port in (
            ("--ray-grpc-port", self.grpc_port),
            ("--ray-http-port", self.http_port),
        ):
            if not 0 < port < 65536:
                raise ConfigError(f"{flag} {port}: use 1 to 65535")
        if self.cpus_per_replica <= 0:
            raise ConfigError(f"--ray-cpus {self.cpus_per_replica}: must be above 0")
        if self.scale_window_s <= 0:
            raise ConfigError(f"scale_window_s {self.scale_window_s}: must be above 0")


def _check_config(config: ServerConfig) -> None:
    if config.session_store == "memory":
        raise ConfigError(
            "serve --ray needs --session-store redis://HOST:PORT: replicas come and go, and a "
            "stream moved to another replica resumes from the shared store"
        )
    if config.tls_cert is not None or config.self_signed or config.token:
        raise ConfigError(
            "serve --ray: TLS and --token are not applied by Ray Serve's proxy; terminate TLS "
            "and check tokens in front of it (see the README)"
        )


def build_app(config: ServerConfig, settings: ServeSettings) -> Any:
    """The Serve application (a ``serve.Application``), not yet running."""
    from ray import serve
    from ray.serve.config import RequestRouterConfig

    from audiototext.rayserve.replica import TranscriptionReplica

    scaling: dict[str, Any]
    if settings.max_replicas is None or settings.max_replicas == settings.replicas:
        scaling = {"num_replicas": settings.replicas}
    else:
        scaling = {
            "autoscaling_config": {
                "min_replicas": settings.replicas,
                "max_replicas": settings.max_replicas,
                # Scale up before a replica is full: at 3/4 of its session limit.
                "target_ongoing_requests": max(1.0, 0.75 * config.max_sessions),
                "upscale_delay_s": settings.scale_window_s,
                "look_back_period_s": settings.scale_window_s,
                # Load reports reach the controller a few times per window (Serve: 10 s).
                "metrics_interval_s": min(10.0, settings.scale_window_s / 3),
            }
        }
    deployment = serve.deployment(
        name=DEPLOYMENT_NAME,
        max_ongoing_requests=config.max_sessions,
        ray_actor_options={"num_cpus": settings.cpus_per_replica},
        graceful_shutdown_timeout_s=settings.drain_s,
        graceful_shutdown_wait_loop_s=min(settings.drain_s, 2.0),
        health_check_period_s=5.0,
        request_router_config=RequestRouterConfig(
            request_router_class=cast(Any, _ROUTER),  # an import path is accepted too
            # A full replica (max_ongoing_requests) passes a new stream to the next one on
            # the ring; a slow one does not (routing.py), so reconnects stay where they were.
            request_router_kwargs={"num_fallback_replicas": 2},
        ),
        **scaling,
    )(serve.ingress()(TranscriptionReplica))  # HTTP: the replica's own app (replica.py)
    return deployment.bind(config)


def deploy(
    config: ServerConfig,
    settings: ServeSettings,
    *,
    on_progress: Callable[[str], None] = lambda _line: None,
) -> None:
    """Start Serve's proxies (gRPC on ``settings.grpc_port``, HTTP on ``http_port``) and run
    the application on the cluster this process joined (``ray.init``); returns once every
    replica is up.

    Running it again with other settings redeploys in place: Serve replaces the replicas and
    open streams move to the new ones through the store.
    """
    _check_config(config)
    from ray import serve
    from ray.serve.config import gRPCOptions

    serve.start(
        grpc_options=gRPCOptions(port=settings.grpc_port, grpc_servicer_functions=[GRPC_SERVICER]),
        # The page's address, as a plain server's: --http-host, else --host (127.0.0.1).
        http_options={"host": config.http_host or config.host, "port": settings.http_port},
        proxy_location="HeadOnly",
    )
    on_progress(f"deploying {settings.replicas} replica(s) of {config.model}")
    began = time.monotonic()
    # A route prefix makes it an endpoint of the proxies (None would hide it from them).
    serve.run(build_app(config, settings), name=APP_NAME, route_prefix=ROUTE, blocking=False)
    while True:
        status = serve.status().applications.get(APP_NAME)
        state = str(getattr(status, "status", ""))
        if state.endswith("RUNNING"):
            return
        if status is not None and state.endswith("DEPLOY_FAILED"):
            raise ConfigError(f"the Serve application failed to deploy: {status.message}")
        if time.monotonic() - began > _READY_TIMEOUT_S:
            raise ConfigError(
                f"the replicas were not up after {_READY_TIMEOUT_S:.0f} s ({state}); see "
                "`serve status` on the cluster"
            )
        time.sleep(0.5)


def undeploy() -> None:
    """Delete the application (its replicas finalise nothing: streams are left to the store)."""
    from ray import serve

    serve.delete(APP_NAME)


def serve_on_ray(
    address: str,
    config: ServerConfig,
    settings: ServeSettings,
    *,
    say: Callable[[str], None] = lambda _line: None,
) -> None:
    """``audiototext serve --ray ADDRESS``: join the cluster, deploy, wait for SIGINT or
    SIGTERM, then delete the application."""
    import signal
    import threading

    from audiototext.ray_connect import connected

    _check_config(config)  # before a minute of connecting
    with connected(address):
        deploy(config, settings, on_progress=say)
        say(f"listening on grpc://<head node>:{settings.grpc_port} (Ray Serve's gRPC proxy)")
        say(
            f"the page and HTTP APIs on http://<head node>:{settings.http_port}/ (Serve's "
            "HTTP proxy; send x-session-id to keep a stream's connections on one replica)"
        )
        say(
            f"stream with: audiototext stream FILE --server HEAD:{settings.grpc_port}; "
            "Ctrl-C deletes the deployment"
        )
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        say("deleting the deployment")
        undeploy()
