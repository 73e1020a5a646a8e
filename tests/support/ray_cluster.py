"""A two-node Ray cluster on this machine for a test: ``ray start --head`` plus a second node.

Both nodes run ``ray start --block`` in a session of their own, so stopping is by their
process ids: SIGTERM to each one's process group, then SIGKILL to whatever is left of it.
Never ``ray stop``, which ends every Ray process of the machine. Every port is picked free
(two clusters, or another program on Ray's default ports, do not collide), the temp dir is a
short private one (Ray's socket paths must fit 107 bytes), the object store is small, and
token authentication is off (loopback only).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

RAY = Path(sys.executable).parent / "ray"
_START_TIMEOUT_S = 120.0
_OBJECT_STORE_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class RayCluster:
    address: str  # the head's GCS address, HOST:PORT
    nodes: int
    cpus_per_node: int
    env: dict[str, str]  # what a driver needs in its environment to join


def ray_available() -> bool:
    return RAY.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node_ports() -> list[str]:
    return [
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
    ]


def _start(args: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(RAY), "start", "--block", "--disable-usage-stats", *args],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped by id
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    # The whole group at once: SIGTERM to `ray start` alone drains the node for up to 30 s.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)  # its group: raylet, GCS, workers, agents
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    time.sleep(1)  # the group's other members end on their own first
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _cpus(address: str, env: Mapping[str, str]) -> int:
    status = subprocess.run(
        [str(RAY), "status", "--address", address],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    match = re.search(r"/([0-9.]+) CPU", status)
    return int(float(match[1])) if match else 0


@contextmanager
def ray_cluster(
    env: Mapping[str, str], *, nodes: int = 2, cpus_per_node: int = 2
) -> Iterator[RayCluster]:
    """A running cluster of ``nodes`` nodes whose workers see ``env``; stopped on exit."""
    tmp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # Token authentication (Ray's default for a head since 2.5x) is for clusters others can
    # reach; this one listens on loopback only and its nodes share no token file.
    env = {**env, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    started: list[subprocess.Popen[bytes]] = []
    try:
        started.append(
            _start(
                [
                    "--head",
                    f"--port={port}",
                    "--node-ip-address=127.0.0.1",
                    f"--num-cpus={cpus_per_node}",
                    f"--object-store-memory={_OBJECT_STORE_BYTES}",
                    "--include-dashboard=false",
                    f"--dashboard-port={_free_port()}",
                    f"--ray-client-server-port={_free_port()}",
                    f"--temp-dir={tmp}",
                    *_node_ports(),
                ],
                env,
                tmp / "head.log",
            )
        )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if started[0].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the Ray head did not start:\n{(tmp / 'head.log').read_text()}"
                    ) from None
                time.sleep(0.3)
        for n in range(1, nodes):
            started.append(
                _start(
                    [
                        f"--address={address}",
                        "--node-ip-address=127.0.0.1",
                        f"--num-cpus={cpus_per_node}",
                        f"--object-store-memory={_OBJECT_STORE_BYTES}",
                        *_node_ports(),
                    ],
                    env,
                    tmp / f"node{n}.log",
                )
            )
        while _cpus(address, env) < nodes * cpus_per_node:
            dead = [p for p in started if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(p.read_text()[-3000:] for p in sorted(tmp.glob("*.log")))
                raise RuntimeError(f"the Ray cluster did not come up:\n{logs}")
            time.sleep(1)
        yield RayCluster(address, nodes, cpus_per_node, env)
    finally:
        for process in reversed(started):
            _stop(process)
        shutil.rmtree(tmp, ignore_errors=True)
