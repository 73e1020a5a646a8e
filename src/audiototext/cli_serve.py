"""``audiototext serve``: the gRPC server, and the HTTP server (page, REST, WebSocket)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Add the ``serve`` command to the CLI's sub-parsers."""
    p = sub.add_parser(
        "serve",
        help="run the server: gRPC, and the web page with REST and WebSocket over HTTP",
        description="Serve audiototext.v1 over gRPC and, on a second port, the web page, the "
        "REST API (/api/v1, OpenAPI at /docs) and live streams over WebSocket. Binds "
        "127.0.0.1 unless told otherwise; Ctrl-C or SIGTERM finalises open streams, then stops.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=50051, help="port (0: any free port; default 50051)")
    p.add_argument(
        "--http-port",
        type=int,
        default=None,
        help="HTTP port of the page and REST API (0: any free port; default 8080, or a free "
        "port when --port is 0)",
    )
    p.add_argument(
        "--http-host", default=None, help="address for HTTP (default: the same as --host)"
    )
    p.add_argument(
        "--no-web",
        action="store_true",
        help="no HTTP listener at all (gRPC only): no page, REST API or WebSocket",
    )
    p.add_argument(
        "--model",
        default="tiny.en",
        help="the default model, loaded at start (default: tiny.en); streams may name any "
        "other model in the cache, loaded on first use",
    )
    p.add_argument(
        "--model-memory-mb",
        type=int,
        default=None,
        help="memory for the models loaded at once (their expected sizes); idle models are "
        "unloaded to make room, a model that cannot fit is refused (default: half the "
        "memory available at start, at least 1024)",
    )
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8", "fp16"])
    p.add_argument(
        "--token",
        default=os.environ.get("AUDIOTOTEXT_TOKEN"),
        help="require 'authorization: Bearer TOKEN' on every call (or $AUDIOTOTEXT_TOKEN)",
    )
    p.add_argument(
        "--tls-cert", type=Path, help="PEM certificate chain (enables TLS: grpcs and https)"
    )
    p.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    p.add_argument("--max-sessions", type=int, default=16, help="concurrent streams (default 16)")
    p.add_argument(
        "--max-buffered-s",
        type=float,
        default=30.0,
        help="audio seconds a stream may have waiting unprocessed (default 30)",
    )
    p.add_argument(
        "--max-chunk-bytes", type=int, default=1 << 20, help="largest AudioChunk (default 1 MiB)"
    )
    p.add_argument(
        "--max-message-bytes",
        type=int,
        default=64 << 20,
        help="largest gRPC message, e.g. a file for Transcribe (default 64 MiB)",
    )
    p.add_argument(
        "--resume-grace-s",
        type=float,
        default=30.0,
        help="how long a disconnected stream waits for its client to resume (default 30)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from audiototext.server.app import GrpcServer, ServerConfig, serve

    http_port: int | None = None
    if not args.no_web:
        # Whoever asks for any free gRPC port (tests, scripts) would not want a fixed HTTP one.
        http_port = (
            args.http_port if args.http_port is not None else (0 if args.port == 0 else 8080)
        )
    config = ServerConfig(
        host=args.host,
        port=args.port,
        http_port=http_port,
        http_host=args.http_host,
        model=args.model,
        precision=args.precision,
        token=args.token,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        max_sessions=args.max_sessions,
        max_buffered_s=args.max_buffered_s,
        max_chunk_bytes=args.max_chunk_bytes,
        max_message_bytes=args.max_message_bytes,
        resume_grace_s=args.resume_grace_s,
        model_memory_mb=args.model_memory_mb,
    )

    def ready(server: GrpcServer) -> None:
        scheme = "grpcs" if config.tls_cert else "grpc"
        print(f"listening on {scheme}://{config.host}:{server.port}", flush=True)
        if server.http is not None:
            print(f"web page: {server.http.url}", flush=True)
        print(
            f"model {config.model}; stream a file with: audiototext stream FILE "
            f"--server {config.host}:{server.port}",
            file=sys.stderr,
            flush=True,
        )

    asyncio.run(serve(config, ready=ready))
    return 0
