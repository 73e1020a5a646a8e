"""asyncio helpers shared by the gRPC server and the client."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["wait_event"]


async def wait_event(event: asyncio.Event, timeout_s: float) -> None:
    """Wait for ``event`` at most ``timeout_s``. (asyncio.wait_for on Python 3.11 can swallow
    a cancellation that arrives as the event fires; asyncio.timeout does not.)"""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
