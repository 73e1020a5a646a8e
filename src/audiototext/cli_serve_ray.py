"""``audiototext serve --ray ADDRESS``: the same server as replicas of a Ray Serve deployment."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audiototext.server.config import ServerConfig

__all__ = ["add_arguments", "run"]


def add_arguments(p: Any) -> None:
    """``serve``'s Ray Serve flags (README, 'Scale out with Ray Serve')."""
    ray = p.add_argument_group("Ray Serve (serve --ray ADDRESS; needs audiototext[ray])")
    ray.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=None,
        help="deploy on this Ray cluster (HOST:PORT of `ray start --head`, auto or ray://...) "
        "instead of serving here: one replica per engine behind Serve's gRPC proxy, "
        "streams routed by session; needs --session-store redis://...",
    )
    ray.add_argument(
        "--ray-replicas",
        type=int,
        default=1,
        help="replicas (the floor with autoscaling; default 1)",
    )
    ray.add_argument(
        "--ray-max-replicas",
        type=int,
        default=None,
        help="autoscale on open streams up to this many replicas (default: a fixed count)",
    )
    ray.add_argument(
        "--ray-grpc-port", type=int, default=9000, help="Serve's gRPC proxy port (default 9000)"
    )
    ray.add_argument(
        "--ray-http-port", type=int, default=8000, help="Serve's HTTP proxy port (default 8000)"
    )
    ray.add_argument(
        "--ray-cpus", type=float, default=1.0, help="CPUs Ray reserves per replica (default 1)"
    )


def run(args: argparse.Namespace, config: ServerConfig) -> int:
    from audiototext.rayserve.deploy import ServeSettings, serve_on_ray

    settings = ServeSettings(
        replicas=args.ray_replicas,
        max_replicas=args.ray_max_replicas,
        grpc_port=args.ray_grpc_port,
        http_port=args.ray_http_port,
        cpus_per_replica=args.ray_cpus,
    )

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    serve_on_ray(args.ray, config, settings, say=say)
    return 0
