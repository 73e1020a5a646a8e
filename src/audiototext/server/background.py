"""Background work (model downloads and conversions, profiling) at a low OS priority.

Live streams come first: finals of active speech, then partials (the engine's lanes), then
this. A background job runs in a thread of its own whose nice value is raised to
:data:`BACKGROUND_NICE` before it starts, so the kernel gives the engine's threads the CPU
whenever both want it; the threads it starts (ONNX Runtime's pools in a conversion) inherit
the value. A thread of its own, because an unprivileged process cannot lower a nice value
again: a shared pool thread would stay slow for the live work that used it next. Where the
OS has no per-thread priority (not Linux) the job runs at normal priority.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["BACKGROUND_NICE", "run_in_background"]

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKGROUND_NICE = 10  # added to the process's own: the kernel weighs it about 10x below


def lower_this_thread() -> bool:
    """Lower the calling thread's priority (Linux: a thread's nice value is its own)."""
    if not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, now + BACKGROUND_NICE))
    except OSError as exc:  # a sandbox may forbid it: the job still runs
        log.debug("cannot lower the priority of a background thread: %s", exc)
        return False
    return True


async def run_in_background(name: str, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """``fn(*args, **kwargs)`` in a new low-priority thread; its result or its exception."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        lower_this_thread()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=work, name=f"audiototext-bg-{name}", daemon=True).start()
    return await future
