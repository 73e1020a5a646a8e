"""The server's resource use as the page shows it live: CPU, memory, GPU.

The same sources as the Prometheus metrics (:mod:`audiototext.server.metrics`): the
process's CPU seconds (user + system, what ``process_cpu_seconds_total`` counts) and
resident memory (``process_resident_memory_bytes``), the machine's available memory
(:func:`~audiototext.server.alerts.free_memory_bytes`, the
``audiototext_memory_available_bytes`` gauge) and the GPU sampler's last reading
(:class:`~audiototext.server.gpu.GpuSampler`, the ``audiototext_gpu_*`` gauges; one sampler
per server). CPU shares are differences between two readings, so :class:`ResourceSampler`
keeps the previous one; readings closer together than ``min_interval_s`` return the last
figures (several pages polling at once do not shrink the window to nothing).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from audiototext.server.alerts import free_memory_bytes
from audiototext.server.gpu import GpuSampler

__all__ = ["Counters", "GpuFigures", "ResourceSample", "ResourceSampler", "read_counters"]

_MB = float(1 << 20)


@dataclass(frozen=True)
class Counters:
    """One reading of the cumulative counters (seconds of CPU time, bytes)."""

    process_cpu_s: float  # this process, user + system
    machine_busy_s: float  # every core, not idle
    machine_total_s: float  # every core
    process_rss_bytes: float
    memory_available_bytes: float
    memory_total_bytes: float


@dataclass(frozen=True)
class GpuFigures:
    index: str
    name: str
    utilization_percent: float
    memory_used_mb: float
    memory_total_mb: float


@dataclass(frozen=True)
class ResourceSample:
    process_cpu_percent: float  # share of the whole machine (every core busy = 100)
    machine_cpu_percent: float
    process_rss_mb: float
    memory_available_mb: float
    memory_total_mb: float
    gpus: tuple[GpuFigures, ...]


def read_counters() -> Counters:
    import psutil

    process = psutil.Process()
    times = process.cpu_times()
    machine = psutil.cpu_times()
    # Linux counts guest time inside user and nice too (psutil's cpu_percent subtracts it).
    guest = float(getattr(machine, "guest", 0.0)) + float(getattr(machine, "guest_nice", 0.0))
    total = float(sum(machine)) - guest
    idle = float(machine.idle) + float(getattr(machine, "iowait", 0.0))
    total_memory = float(psutil.virtual_memory().total)
    return Counters(
        process_cpu_s=float(times.user + times.system),
        machine_busy_s=total - idle,
        machine_total_s=total,
        process_rss_bytes=float(process.memory_info().rss),
        memory_available_bytes=free_memory_bytes(),
        memory_total_bytes=total_memory,
    )


def _share(part: float, whole: float) -> float:
    if whole <= 0:
        return 0.0
    return round(min(100.0, max(0.0, 100.0 * part / whole)), 1)


class ResourceSampler:
    def __init__(
        self,
        gpu: GpuSampler | None = None,
        *,
        read: Callable[[], Counters] = read_counters,
        clock: Callable[[], float] = time.monotonic,
        min_interval_s: float = 0.5,
    ) -> None:
        self.gpu = gpu
        self._read = read
        self._clock = clock
        self._min_interval_s = min_interval_s
        self._lock = threading.Lock()
        # The baseline: the first sample covers the time since the server started.
        self._previous = read()
        self._previous_at = clock()
        self._last: ResourceSample | None = None

    def sample(self) -> ResourceSample:
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._previous_at < self._min_interval_s:
                return self._last
            current = self._read()
            before = self._previous
            elapsed_total = current.machine_total_s - before.machine_total_s
            self._last = ResourceSample(
                process_cpu_percent=_share(
                    current.process_cpu_s - before.process_cpu_s, elapsed_total
                ),
                machine_cpu_percent=_share(
                    current.machine_busy_s - before.machine_busy_s, elapsed_total
                ),
                process_rss_mb=round(current.process_rss_bytes / _MB, 1),
                memory_available_mb=round(current.memory_available_bytes / _MB, 1),
                memory_total_mb=round(current.memory_total_bytes / _MB, 1),
                gpus=self._gpus(),
            )
            self._previous, self._previous_at = current, now
            return self._last

    def _gpus(self) -> tuple[GpuFigures, ...]:
        if self.gpu is None:
            return ()
        return tuple(
            GpuFigures(
                index=g.index,
                name=g.name,
                utilization_percent=round(g.utilization * 100, 1),
                memory_used_mb=round(g.memory_used_bytes / _MB, 1),
                memory_total_mb=round(g.memory_total_bytes / _MB, 1),
            )
            for g in self.gpu.samples
        )
