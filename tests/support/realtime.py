"""Tests marked ``realtime`` get the machine to themselves while parallel workers run the rest.

A realtime test streams audio at the pace of speech into the real engine (16 streams at once,
say) and asserts it keeps up: another worker's model conversion on the second core would make
it fall behind for a reason that is not the code's. Every other test holds a shared lock from
the start of its setup (fixtures of any scope included) to the end of its teardown; a realtime
test takes the lock exclusively, so it waits for the test in flight on the other worker to end
and keeps the next one from starting. A turnstile lock in front gives the
realtime test priority, so a stream of shared holders cannot starve it. The lock files are in
the machine's temp folder, so two test runs on one machine (two checkouts) respect each other.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

MARKER = "realtime"
_LOCKS = Path(tempfile.gettempdir()) / "audiototext-test-locks"


@contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextmanager
def machine_share(exclusive: bool, locks: Path = _LOCKS) -> Iterator[None]:
    locks.mkdir(parents=True, exist_ok=True)
    turnstile, share = locks / "turnstile", locks / "share"
    if exclusive:
        with _flock(turnstile, fcntl.LOCK_EX), _flock(share, fcntl.LOCK_EX):
            yield
    else:
        with _flock(turnstile, fcntl.LOCK_EX):
            pass  # wait behind a realtime test that is queued or running
        with _flock(share, fcntl.LOCK_SH):
            yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    # Around setup, call and teardown: a module's engine or a session's model conversion,
    # built in a test's setup, is CPU a realtime test must not share either.
    with machine_share(exclusive=item.get_closest_marker(MARKER) is not None):
        yield
