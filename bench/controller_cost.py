"""What the adaptive controller costs per tick, against the alert check in the same run.

    .venv/bin/python bench/controller_cost.py [--rounds 300]

Both run once a second in a server. The controller's tick reads the default engine
(tiny.en int8, loaded from the cache, idle), the machine (psutil: a fresh sample each tick)
and the loaded models, and applies the policy; the peer is :meth:`AlertMonitor.check` with
the server's real probes (engine stats, free memory, free disk). They alternate, one call
each per round. Printed: median CPU and wall time of each, their ratio, and the controller's
share of one core at one tick per second.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from audiototext.models.cache import cache_home
from audiototext.server.alerts import (
    AlertMonitor,
    AlertProbes,
    AlertSettings,
    free_disk_bytes,
    free_memory_bytes,
)
from audiototext.server.control_policy import ControlSettings
from audiototext.server.controller import Controller
from audiototext.server.pool import ModelPool, cache_resolver, default_choice
from audiototext.server.resources import ResourceSampler
from audiototext.streaming import RecognizerOptions, StreamingRecognizer


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    cpu, wall = time.thread_time(), time.perf_counter()
    fn()
    return time.thread_time() - cpu, time.perf_counter() - wall


async def main(rounds: int) -> None:
    engine = StreamingRecognizer.load("tiny.en", RecognizerOptions(), precision="int8")
    choice = default_choice("tiny.en", "int8", None)
    pool = ModelPool(
        default=choice,
        resolver=cache_resolver(None, "int8"),
        loader=lambda c: engine,
        budget_mb=4096,
    )
    pool.add(choice, engine, pinned=True, owned=False)
    alerts = AlertMonitor(
        AlertSettings(),
        AlertProbes(
            overloaded=lambda: engine.stats().overloaded,
            free_memory_bytes=free_memory_bytes,
            free_disk_bytes=lambda: free_disk_bytes(cache_home()),
        ),
    )
    resources = ResourceSampler(None, min_interval_s=0.0)
    controller = Controller(
        pool, ControlSettings(), max_batch=8, resources=resources, alerts=alerts
    )
    ctl: list[tuple[float, float]] = []
    peer: list[tuple[float, float]] = []
    for i in range(rounds):
        pair = [(ctl, controller.tick), (peer, alerts.check)]
        for out, fn in pair if i % 2 == 0 else pair[::-1]:  # alternate who goes first
            out.append(timed(fn))
        await asyncio.sleep(0.005)
    await engine.close()
    c_cpu = statistics.median(c for c, _ in ctl)
    p_cpu = statistics.median(c for c, _ in peer)
    c_wall = statistics.median(w for _, w in ctl)
    p_wall = statistics.median(w for _, w in peer)
    print(f"{rounds} rounds, alternating")
    print(f"controller tick: {c_cpu * 1e6:.0f} us CPU, {c_wall * 1e6:.0f} us wall (median)")
    print(f"alert check:     {p_cpu * 1e6:.0f} us CPU, {p_wall * 1e6:.0f} us wall (median)")
    print(f"ratio controller / alerts: CPU {c_cpu / p_cpu:.2f}, wall {c_wall / p_wall:.2f}")
    print(f"controller at 1 tick/s: {100 * c_cpu:.3f} % of one core")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=300)
    asyncio.run(main(p.parse_args().rounds))
