"""A network namespace for WebRTC tests: ICE needs an address other than 127.0.0.1.

aioice never offers loopback candidates, so a test's peers (aiortc, Chromium) and the server
meet on a veth pair inside a namespace of their own (a unique name per run, deleted at the
end). The test's event loop runs in a thread that entered the namespace (``setns`` moves
only the calling thread), as do the loop's executor threads, so every socket the server and
the test open is inside it; child processes started from that thread are too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
SERVER_ADDRESS = "10.213.0.1"
PEER_ADDRESS = "10.213.0.2"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def namespace(*, veth: bool = True) -> Iterator[str]:
    """A fresh namespace with loopback up and (``veth``) a veth pair 10.213.0.1/.2; its name.

    Skips the test, saying why, when namespaces cannot be made here (not root, no ``ip``).
    """
    if shutil.which("ip") is None:
        pytest.skip("WebRTC tests need the ip command (Debian iproute2) for a network namespace")
    if os.geteuid() != 0:
        pytest.skip("WebRTC tests need root for a network namespace (ip netns add)")
    name = f"att-{os.getpid()}-{secrets.token_hex(3)}"
    made = _ip("netns", "add", name)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {made.stderr.strip()}")
    try:
        # No IPv6 in here: a veth's link-local address comes a second or two after the link
        # is up (duplicate address detection), and Chromium, seeing the network change,
        # aborts the page's loads under way (net::ERR_NETWORK_CHANGED): a page without its
        # scripts. The tests' peers meet on IPv4.
        for conf in ("all", "default"):
            sysctl = ["netns", "exec", name, "sysctl", "-qw"]
            done = _ip(*sysctl, f"net.ipv6.conf.{conf}.disable_ipv6=1")
            if done.returncode != 0:
                pytest.skip(f"cannot turn IPv6 off in the namespace: {done.stderr.strip()}")
        steps: list[tuple[str, ...]] = [("link", "set", "lo", "up")]
        if veth:
            steps += [
                ("link", "add", "v0", "type", "veth", "peer", "name", "v1"),
                ("addr", "add", f"{SERVER_ADDRESS}/24", "dev", "v0"),
                ("addr", "add", f"{PEER_ADDRESS}/24", "dev", "v1"),
                ("link", "set", "v0", "up"),
                ("link", "set", "v1", "up"),
            ]
        for step in steps:
            done = _ip("-n", name, *step)
            if done.returncode != 0:
                pytest.skip(f"cannot set up the namespace ({' '.join(step)}): {done.stderr}")
        yield name
    finally:
        _ip("netns", "del", name)


def enter(name: str) -> None:
    """Move the calling thread into the namespace ``name``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def run_inside(name: str, make: Callable[[], Coroutine[Any, Any, T]], timeout_s: float) -> T:
    """Run the coroutine ``make()`` on an event loop of a thread inside namespace ``name``
    (bounded by ``timeout_s``); its result, or its exception re-raised here."""
    box: dict[str, Any] = {}

    async def bounded() -> T:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(
            concurrent.futures.ThreadPoolExecutor(4, initializer=enter, initargs=(name,))
        )
        return await asyncio.wait_for(make(), timeout_s)

    def thread() -> None:
        try:
            enter(name)
            box["result"] = asyncio.run(bounded())
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=thread, name=f"netns-{name}")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result
