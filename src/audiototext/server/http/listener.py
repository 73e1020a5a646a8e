"""uvicorn serving the HTTP app as a task on the running event loop (the gRPC server's).

The socket is bound here, not by uvicorn, so a port in use is a :class:`ConfigError` with
advice instead of uvicorn's ``sys.exit``; and uvicorn's signal handlers are left out: the
composition root owns shutdown (finalise streams first, then stop the listeners).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from audiototext.errors import ConfigError
from audiototext.server.addresses import openable_hosts, url_host

__all__ = ["HttpListener"]

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # SIGINT/SIGTERM belong to the composition root (audiototext.server.app)


class HttpListener:
    """``start()`` binds and serves ``app``; ``stop()`` closes open connections and waits."""

    def __init__(
        self,
        app: FastAPI,
        *,
        host: str,
        port: int,
        max_frame_bytes: int,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        shutdown_grace_s: float = 5.0,
    ) -> None:
        self._config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,  # the CLI configures logging; a library does not
            access_log=False,
            # h11 whether or not httptools is installed (ray[serve] brings it): one parser's
            # behaviour (limits, errors) everywhere.
            http="h11",
            ws="auto",
            ws_max_size=max_frame_bytes,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            timeout_graceful_shutdown=max(1, int(shutdown_grace_s)),
        )
        self._host = host
        self._port = port
        self.tls = tls_cert is not None
        self._server = _Server(self._config)
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The page's URL, one a person can open (localhost for a wildcard bind)."""
        return self.urls[0]

    @property
    def urls(self) -> list[str]:
        """Every URL the page answers on: the bound host, or for ``0.0.0.0`` / ``::``
        localhost and each address of the machine."""
        scheme = "https" if self.tls else "http"
        return [f"{scheme}://{url_host(h)}:{self.port}/" for h in openable_hosts(self._host)]

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say
        # TCP, and with Nagle on each keep-alive answer waited ~40 ms for a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"cannot listen for HTTP on {self._host}:{self._port} ({exc.strerror}); "
                "pick another port with --http-port (0: any free one), or --no-web"
            ) from exc
        sock.listen(128)
        sock.setblocking(False)
        return sock

    async def start(self) -> None:
        try:
            self._config.load()  # reads the TLS files: fail here, not in the task
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot use the TLS key or certificate for HTTPS: {exc}") from exc
        self._socket = self._bind()
        self.port = self._socket.getsockname()[1]
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._socket]), name="http-listener"
        )
        while not self._server.started:
            if self._task.done():
                self._task.result()  # its exception, if any
                raise ConfigError(f"the HTTP server on {self._host}:{self.port} did not start")
            await asyncio.sleep(0.01)
        log.info("serving HTTP on %s", self.url)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await self._task
        self._task = None
        if self._socket is not None:
            self._socket.close()
