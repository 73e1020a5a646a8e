"""Debian's ``redis-server`` and ``haproxy`` for tests: started on free loopback ports with
their files in a temp folder, stopped by pid (no system service is touched).

``running_redis()`` yields a :class:`Redis` (its URL, and :meth:`Redis.kill` to take it down
mid-test); ``running_haproxy(backends)`` yields the front port of an HAProxy routing gRPC
(h2c) to ``backends`` by the ``session-id`` header, with the configuration of
``deploy/haproxy.cfg``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = [
    "CLI",
    "Redis",
    "Server",
    "free_port",
    "haproxy_config",
    "running_haproxy",
    "running_redis",
]

CLI = [sys.executable, "-m", "audiototext.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if path is None:
        pytest.skip(f"needs {name} (Debian package {package}; ./test.sh installs it)")
    return path


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no listener on {port} after {limit_s:g} s: {log.read_text()[-2000:]}"
            )
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class Redis:
    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.folder / "redis.log"
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(log),
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        log.touch()
        _wait_port(self.port, self.proc, log)

    def kill(self) -> None:
        """Take Redis down at once (as a crash would)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


class Server:
    """``audiototext serve`` as a process on fixed ports (so a new one can take its place)."""

    def __init__(self, store_url: str, grpc_port: int = 0, http_port: int = 0, *extra: str) -> None:
        self.extra = extra
        self.store_url = store_url
        self.port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.proc: subprocess.Popen[str] | None = None
        # The log goes to a file: an unread pipe fills and then blocks the server.
        self.log = Path(tempfile.mkstemp(prefix="att-serve-", suffix=".log")[1])

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def start(self) -> Server:
        proc = subprocess.Popen(
            [
                *CLI,
                "serve",
                "--port",
                str(self.port),
                "--http-port",
                str(self.http_port),
                "--precision",
                "int8",
                "--session-store",
                self.store_url,
                *self.extra,
            ],
            stdout=subprocess.PIPE,
            stderr=self.log.open("a"),
            text=True,
        )
        self.proc = proc
        assert proc.stdout is not None
        lines = [proc.stdout.readline(), proc.stdout.readline()]  # gRPC, then the page
        if "web page:" not in lines[1]:
            proc.kill()
            raise AssertionError(f"server did not start: {lines!r} {self.log_tail()}")
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(30) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.log.unlink(missing_ok=True)

    def system(self) -> dict[str, object]:
        url = f"http://127.0.0.1:{self.http_port}/api/v1/system"
        with urllib.request.urlopen(url, timeout=10) as r:
            body: dict[str, object] = json.loads(r.read())
        return body


@contextlib.contextmanager
def running_redis() -> Iterator[Redis]:
    binary = _binary("redis-server", "redis-server")
    with tempfile.TemporaryDirectory(prefix="att-redis-") as folder:
        redis = Redis(binary, Path(folder))
        redis.start()
        try:
            yield redis
        finally:
            redis.stop()


def haproxy_config(front_port: int, backends: list[tuple[int, int]]) -> str:
    """deploy/haproxy.cfg with the front port and the servers (gRPC port, HTTP port) on
    127.0.0.1 filled in."""
    template = (Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg").read_text()
    servers = "\n".join(
        f"    server s{i} 127.0.0.1:{grpc} proto h2 check port {http} check-proto h1 "
        "inter 300ms fall 1 rise 1"
        for i, (grpc, http) in enumerate(backends)
    )
    lines = []
    for line in template.splitlines():
        if line.strip().startswith("server "):
            continue  # the example's servers
        lines.append(line.replace("bind :50050", f"bind 127.0.0.1:{front_port}"))
    text = "\n".join(lines) + "\n"
    return text.replace("    # servers\n", f"    # servers\n{servers}\n")


@contextlib.contextmanager
def running_haproxy(backends: list[tuple[int, int]]) -> Iterator[int]:
    binary = _binary("haproxy", "haproxy")
    with tempfile.TemporaryDirectory(prefix="att-haproxy-") as folder:
        port = free_port()
        cfg = Path(folder) / "haproxy.cfg"
        cfg.write_text(haproxy_config(port, backends))
        log = Path(folder) / "haproxy.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=out, stderr=out)
        try:
            _wait_port(port, proc, log)
            yield port
        finally:
            _stop(proc)
