"""Joining a Ray cluster from this process: the address checked first, Ray's errors in words.

Shared by the two Ray adapters, :mod:`audiototext.bulk` (Ray Data) and
:mod:`audiototext.rayserve` (Ray Serve); Ray is imported only when a connection is made.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from audiototext.errors import ConfigError

__all__ = ["RAY_EXTRA", "check_address", "connected"]

# Seconds to wait for a HOST:PORT to accept a connection before saying it cannot be reached
# (ray.init itself retries for a minute).
_CONNECT_TIMEOUT_S = 5.0
RAY_EXTRA = "the Ray extra is not installed: pip install 'audiototext[ray]'"


class connected:
    """``with connected(address) as ray``: Ray initialised for the run, shut down after
    unless it was already initialised by the caller."""

    def __init__(self, address: str) -> None:
        self._address = check_address(address)
        self._owned = False

    def __enter__(self) -> Any:
        try:
            import ray
        except ImportError:
            raise ConfigError(RAY_EXTRA) from None
        if ray.is_initialized():
            return ray
        env = {k: v for k, v in os.environ.items() if k == "AUDIOTOTEXT_HOME"}
        try:
            ray.init(
                address=self._address,
                logging_level=logging.WARNING,
                log_to_driver=False,  # the workers' results carry their errors
                runtime_env={"env_vars": env} if env else None,
                include_dashboard=False if self._address == "local" else None,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"cannot connect to the Ray cluster at {self._address}: {exc}"
            ) from exc
        self._owned = True
        return ray

    def __exit__(self, *exc: object) -> None:
        if self._owned:
            import ray

            ray.shutdown()


def check_address(address: str) -> str:
    """``address`` if it can name a cluster; a HOST:PORT must accept a connection."""
    text = address.strip()
    if text in ("local", "auto") or text.startswith("ray://"):
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"--ray {address!r}: expected local, auto, HOST:PORT (the head node's address, "
            "as `ray start --head` prints it) or ray://HOST:PORT"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {text}: {exc.strerror or exc}; is `ray start "
            "--head` running there?"
        ) from exc
    return text
