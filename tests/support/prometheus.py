"""Debian's ``prometheus`` for tests: started on 127.0.0.1 with a temp config, stopped by pid.

``running_prometheus(target, token=...)`` scrapes ``target`` (host:port) every second and
yields a :class:`Prometheus` whose :meth:`Prometheus.query` asks its HTTP API. Every wait is
bounded (a stuck scrape fails the test with Prometheus's own view of the target).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Prometheus", "prometheus_binary", "running_prometheus"]


def prometheus_binary() -> str:
    """The binary's path, or skip the test (Debian package prometheus; ./test.sh installs it)."""
    path = shutil.which("prometheus")
    if path is None:
        pytest.skip(
            "needs the prometheus binary (Debian package prometheus; ./test.sh installs it)"
        )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Prometheus:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as r:
            return json.loads(r.read())

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` (``[{"metric": {...}, "value": [t, "v"]}, ...]``)."""
        body = self._get("/api/v1/query", {"query": expr})
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self._get("/api/v1/targets")["data"]["activeTargets"]
        return active

    def wait_for(self, expr: str, limit_s: float = 60.0) -> list[dict[str, Any]]:
        """Poll until ``expr`` has a sample (bounded); the samples."""
        deadline = time.monotonic() + limit_s
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"Prometheus had no sample of {expr!r} after {limit_s:g} s; targets: "
                    f"{self.targets()}; log tail: {self.log.read_text()[-2000:]}"
                )
            time.sleep(0.25)


@contextlib.contextmanager
def running_prometheus(
    target: str, *, token: str | None = None, job: str = "audiototext"
) -> Iterator[Prometheus]:
    binary = prometheus_binary()
    with tempfile.TemporaryDirectory(prefix="prometheus-") as tmp:
        folder = Path(tmp)
        auth = ""
        if token is not None:
            (folder / "token").write_text(token)
            auth = (
                "    authorization:\n"
                "      type: Bearer\n"
                f"      credentials_file: {folder / 'token'}\n"
            )
        (folder / "prometheus.yml").write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "scrape_configs:\n"
            f"  - job_name: {job}\n"
            f"{auth}"
            "    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        port = _free_port()
        log = folder / "prometheus.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={folder / 'prometheus.yml'}",
                    f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"prometheus exited: {log.read_text()[-2000:]}")
                with (
                    contextlib.suppress(OSError),
                    urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r,
                ):
                    if r.status == 200:
                        break
                if time.monotonic() > deadline:
                    raise AssertionError(f"prometheus not ready: {log.read_text()[-2000:]}")
                time.sleep(0.2)
            yield Prometheus(url, log)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
