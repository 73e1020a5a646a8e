"""``audiototext serve``: the gRPC server, and the HTTP server (page, REST, WebSocket)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audiototext.server.app import GrpcServer
    from audiototext.server.perf_profile import ProfileReport


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
        "--threads",
        type=int,
        default=None,
        help="ONNX Runtime threads per decoding lane (default: the usable cores shared out "
        "over the lanes; `audiototext doctor` recommends a count for this machine)",
    )
    p.add_argument(
        "--partial-interval-ms",
        type=int,
        default=None,
        help="partial results at most every this much new speech, for streams that do not "
        "choose (default 500; `audiototext doctor` recommends one for this machine)",
    )
    p.add_argument(
        "--benchmark-on-start",
        action="store_true",
        help="when the performance profile is missing, corrupt or stale, rebuild it in the "
        "background at low priority (nice 19, half the cores), as `doctor --benchmark` would",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("AUDIOTOTEXT_TOKEN"),
        help="require 'authorization: Bearer TOKEN' on every call (or $AUDIOTOTEXT_TOKEN)",
    )
    p.add_argument(
        "--tls-cert", type=Path, help="PEM certificate chain (enables TLS: grpcs and https)"
    )
    p.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    p.add_argument(
        "--self-signed",
        action="store_true",
        help="HTTPS and grpcs with a certificate made for this machine's names and addresses, "
        "kept in the cache and reused (its SHA-256 fingerprint is printed)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=200.0,
        help="largest file upload to POST /api/v1/transcriptions, in MiB (default 200)",
    )
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
    p.add_argument(
        "--session-store",
        default="memory",
        metavar="URL",
        help="where stream sessions are kept for a resume: memory (this process, default) or "
        "redis://HOST:PORT/DB, shared by servers, so a stream resumes on another server or "
        "after a restart (README: Several servers)",
    )
    history = p.add_argument_group(
        "history", "recent transcripts are listed by the REST API; --history also keeps them"
    )
    history.add_argument(
        "--history",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="keep every transcript in this SQLite file (without PATH: "
        "$AUDIOTOTEXT_HOME/history.sqlite3, as ./run.sh does); see `audiototext history`",
    )
    history.add_argument(
        "--history-days",
        type=float,
        default=None,
        metavar="DAYS",
        help="remove sessions older than this (default: keep any age)",
    )
    history.add_argument(
        "--history-max-sessions",
        type=int,
        default=None,
        metavar="N",
        help="keep only the newest N sessions (default: any number)",
    )
    p.add_argument(
        "--log-format",
        choices=["human", "json"],
        default="human",
        help="log lines for people (default) or JSON lines (ts, level, logger, message, "
        "session_id) for log collectors",
    )
    p.add_argument(
        "--no-metrics",
        action="store_true",
        help="no Prometheus /metrics on the HTTP port (it needs --token when one is set)",
    )
    p.add_argument(
        "--no-controller",
        action="store_true",
        help="no adaptive control: partials still stretch under load inside the engine, but "
        "new streams never move to a cheaper model, batches and client compression are left "
        "as they are (README, 'Under load')",
    )
    p.add_argument(
        "--no-adapt-threads",
        action="store_true",
        help="keep the engines' ONNX Runtime threads as started; by default the controller "
        "lowers them (at most to 1) while other processes take our cores, and restores them "
        "(at most --threads) when the cores are free again (README, 'Under load')",
    )
    p.add_argument(
        "--metrics-interval",
        type=float,
        default=1.0,
        help="seconds between the Metrics messages a stream gets (default 1)",
    )
    p.add_argument(
        "--alert-min-free-memory-mb",
        type=float,
        default=256.0,
        help="raise the memory_low alert below this much available memory (0: off; default 256)",
    )
    p.add_argument(
        "--alert-min-free-disk-mb",
        type=float,
        default=1024.0,
        help="raise the disk_low alert below this much free disk in the model cache "
        "(0: off; default 1024)",
    )
    from audiototext.cli_serve_ray import add_arguments

    add_arguments(p)
    p.set_defaults(func=_run)


def history_path(arg: str | None) -> Path | None:
    """The file of ``--history [PATH]`` (None: not asked for)."""
    if arg is None:
        return None
    if arg:
        return Path(arg).expanduser()
    from audiototext.history.store import default_history_path

    return default_history_path()


def startup_lines(server: GrpcServer) -> list[str]:
    """What ``serve`` prints once listening: addresses a person can open (never 0.0.0.0),
    https when TLS is on, and the self-signed certificate's fingerprint and file."""
    from audiototext.server.addresses import openable_hosts, url_host

    cfg = server.config
    scheme = "grpcs" if server.tls_files else "grpc"
    lines = [f"listening on {scheme}://{url_host(openable_hosts(cfg.host)[0])}:{server.port}"]
    if server.http is not None:
        urls = server.http.urls
        lines.append(f"web page: {urls[0]}")
        lines += [f"          {url}" for url in urls[1:]]
    if server.tls is not None:
        state = "reused" if server.tls.reused else "new"
        lines.append(f"self-signed certificate ({state}): {server.tls.cert}")
        lines.append(f"  SHA-256 fingerprint {server.tls.fingerprint}")
        lines.append(
            "  browsers warn once: compare this fingerprint with the certificate they show, "
            "then accept it"
        )
    return lines


def profile_line(report: ProfileReport) -> str:
    """What ``serve`` says at start-up about the performance profile."""
    rec = report.recommendation
    if rec is None:
        doing = " (rebuilding it now, at low priority)" if report.rebuilding else ""
        return f"performance profile: {report.message}{doing}"
    return (
        f"recommended here: {rec.model} {rec.precision}, --threads {rec.threads}, "
        f"--max-sessions {rec.streams}, --partial-interval-ms {rec.partial_interval_ms} "
        "(audiototext doctor says why)"
    )


def _run(args: argparse.Namespace) -> int:
    import logging

    from audiototext.server.addresses import openable_hosts, url_host
    from audiototext.server.alerts import AlertSettings
    from audiototext.server.app import ServerConfig, serve
    from audiototext.server.control_policy import ControlSettings
    from audiototext.server.logging_setup import configure_logging

    configure_logging(args.log_format, logging.getLogger().level)

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
        self_signed=args.self_signed,
        max_upload_bytes=int(args.max_upload_mb * (1 << 20)),
        max_sessions=args.max_sessions,
        max_buffered_s=args.max_buffered_s,
        max_chunk_bytes=args.max_chunk_bytes,
        max_message_bytes=args.max_message_bytes,
        resume_grace_s=args.resume_grace_s,
        session_store=args.session_store,
        history_path=history_path(args.history),
        history_days=args.history_days,
        history_max_sessions=args.history_max_sessions,
        metrics=not args.no_metrics,
        controller=not args.no_controller,
        control=ControlSettings(adapt_threads=not args.no_adapt_threads),
        metrics_interval_s=args.metrics_interval,
        alerts=AlertSettings(
            min_free_memory_mb=args.alert_min_free_memory_mb,
            min_free_disk_mb=args.alert_min_free_disk_mb,
        ),
        model_memory_mb=args.model_memory_mb,
        threads=args.threads,
        partial_interval_ms=args.partial_interval_ms,
        benchmark_on_start=args.benchmark_on_start,
    )

    if args.ray is not None:
        from audiototext.cli_serve_ray import run

        return run(args, config)

    def ready(server: GrpcServer) -> None:
        for line in startup_lines(server):
            print(line, flush=True)
        if server.history is not None and server.history.persistent:
            print(f"history: {config.history_path}", file=sys.stderr, flush=True)
        if server.profile is not None:
            print(profile_line(server.profile.report()), file=sys.stderr, flush=True)
        target = f"{url_host(openable_hosts(config.host)[0])}:{server.port}"
        tls = ""
        if server.tls is not None:
            tls = f" --tls-ca {server.tls.cert}"
        elif config.tls_cert is not None:
            tls = " --tls-ca CA.pem"
        print(
            f"model {config.model}; stream a file with: audiototext stream FILE "
            f"--server {target}{tls}",
            file=sys.stderr,
            flush=True,
        )

    asyncio.run(serve(config, ready=ready))
    return 0
