"""What the adaptive controller decides, from one reading of the server's measurements.

No threads, no I/O, the clock passed in: :class:`ControlPolicy.update` takes a
:class:`Measurements` and returns the :class:`Action` s it took (each with its reason), and
its state says what the server does now. :mod:`audiototext.server.controller` reads the
measurements, applies the state and logs the actions.

What gives way under load, in order:

1. partial results (their interval stretches; the engine's :class:`LoadMonitor` decides, per
   scheduling round, and reports each change here with its reason);
2. finals (cheaper settings while they queue; the engine again, reported here);
3. new streams (``model_fallback``): after the engine has been overloaded, or the machine's
   CPU saturated with finals already reduced, for ``fallback_after_s``, new streams get a
   cheaper model (another precision, or the next smaller cached model); streams already
   running keep theirs. Restored after ``restore_after_s`` without that pressure. A stream
   that finds even that engine behind real time is refused by it.

Besides, from free memory: batches of finals and partials are capped (``batch_limit``) while
memory is low; from a stream's reported link bandwidth: the client is asked for compressed
audio (``bitrate_cap``); from the CPU other processes take (``threads``): the intra-op
threads per lane scale with the share of our usable cores (affinity, cgroup quota) left
free, between 1 and the threads the engines started with (serve --threads or the default).
ONNX Runtime's threads spin while they wait for each other, so a pool sized for idle
cores, on cores another process is busy on, waits for preempted threads. Fewer threads
after ``threads_down_after_s`` of contention, more again after ``threads_up_after_s``
with contention ``threads_band_cores`` below the level that lowered them (no flapping).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from audiototext.units import MIB, human_bytes

__all__ = [
    "PCM16_BPS",
    "Action",
    "ControlPolicy",
    "ControlSettings",
    "EngineChange",
    "Hysteresis",
    "Measurements",
]

PCM16_BPS = 256_000  # 16-kHz mono PCM16: what an uncompressed stream needs on the wire
OPUS_BITRATES = (32_000, 24_000, 16_000, 12_000)  # the client's Opus rates, best first


class Hysteresis:
    """A two-state condition: ``update(True)`` while its raise condition holds, ``False``
    while its clear condition holds, ``None`` in between (a pending change is forgotten).
    A change needs its condition to hold ``raise_after_s`` / ``clear_after_s`` first."""

    def __init__(self, raise_after_s: float, clear_after_s: float) -> None:
        self.raise_after_s = raise_after_s
        self.clear_after_s = clear_after_s
        self.active = False
        self._pending_since: float | None = None

    def update(self, signal: bool | None, now: float) -> bool:
        """Returns whether the state changed."""
        if signal is None or signal == self.active:
            self._pending_since = None
            return False
        if self._pending_since is None:
            self._pending_since = now
        wait = self.raise_after_s if signal else self.clear_after_s
        if now - self._pending_since < wait:
            return False
        self.active = signal
        self._pending_since = None
        return True


@dataclass(frozen=True)
class ControlSettings:
    fallback_after_s: float = 5.0  # sustained pressure before new streams get a smaller model
    restore_after_s: float = 30.0  # pressure gone this long before they get the default again
    cpu_saturated_percent: float = 95.0  # machine CPU share counted as saturated (>100: never)
    low_memory_mb: float = 512.0  # below this, batches are capped
    memory_margin: float = 1.5  # and uncapped above low_memory_mb × this
    memory_after_s: float = 2.0  # free memory low (or back) this long before a change
    reduced_batch: int = 1  # the batch cap while memory is low
    link_margin: float = 1.25  # compress when the link carries less than PCM16 × this
    link_clear: float = 2.0  # and stop above PCM16 × this
    adapt_threads: bool = True  # serve --no-adapt-threads: off
    threads_down_after_s: float = 10.0  # contention this long before fewer threads
    threads_up_after_s: float = 30.0  # free cores this long before more threads again
    threads_band_cores: float = 0.25  # more again only with contention this much lower

    def __post_init__(self) -> None:
        if not 0 <= self.fallback_after_s <= 3600 or not 0 <= self.restore_after_s <= 3600:
            raise ValueError("the controller's fallback and restore delays must be 0..3600 s")
        if self.reduced_batch < 1:
            raise ValueError("the controller's reduced batch must be at least 1")
        if not 1.0 <= self.memory_margin <= 10.0 or not 1.0 <= self.link_margin < self.link_clear:
            raise ValueError("the controller's margins must be at least 1 (link: clear > margin)")
        if not 0 <= self.threads_down_after_s <= 3600 or not 0 <= self.threads_up_after_s <= 3600:
            raise ValueError("the controller's thread delays must be 0..3600 s")
        if not 0 <= self.threads_band_cores <= 4:
            raise ValueError("the controller's thread band must be 0..4 cores")


@dataclass(frozen=True)
class EngineChange:
    """A change the engine's own load policy made (``LoadMonitor``), at its clock time."""

    at: float
    action: str  # partial_interval, finals_reduced, finals_full, overload, overload_cleared
    reason: str


@dataclass(frozen=True)
class Measurements:
    overloaded: bool  # the default engine refuses streams: finals fall behind real time
    rtf: float  # compute seconds per audio second, recent
    queue_depth: int
    final_latency_p95_s: float
    partial_scale: float  # how far the engine stretches partial intervals now
    finals_reduced_now: bool  # the engine reduced finals within its window
    cpu_percent: float | None = None  # the machine's CPU share (None: not known)
    free_memory_mb: float | None = None
    engine_changes: tuple[EngineChange, ...] = ()  # since the previous reading
    gpu_fallbacks: Mapping[str, str] = field(default_factory=dict)  # model -> why, so far
    link_bps: Mapping[str, float] = field(default_factory=dict)  # session -> bits/s reported
    # Cores of CPU time other processes took over the reading (the machine's busy time
    # minus ours), and the cores we may use (affinity, cgroup quota); None: not known.
    others_cpu_cores: float | None = None
    usable_cores: int | None = None


@dataclass(frozen=True)
class Action:
    at: float  # clock time
    action: str
    reason: str


class ControlPolicy:
    def __init__(
        self,
        settings: ControlSettings,
        max_batch: int,
        clock: Callable[[], float] = time.monotonic,
        max_threads: int | None = None,
    ) -> None:
        self.settings = settings
        self.max_batch = max_batch
        # Intra-op threads per lane: the engines' own at start is the ceiling (None: the
        # engines cannot change theirs, or adapt_threads is off).
        self.max_threads = max_threads if settings.adapt_threads else None
        self.threads = max_threads or 1
        self._threads_side = 0  # -1/+1: contention wants fewer/more threads, since ...
        self._threads_since = 0.0
        self._threads_seen = 0  # ... and the least extreme count wanted meanwhile
        self._clock = clock
        self._pressure = Hysteresis(settings.fallback_after_s, settings.restore_after_s)
        self._memory = Hysteresis(settings.memory_after_s, settings.memory_after_s)
        self._gpu_seen: set[str] = set()
        self._caps: dict[str, int] = {}  # session -> bits/s asked of its client

    # ---- the state the server applies

    @property
    def fallback_active(self) -> bool:
        """New streams get a cheaper model."""
        return self._pressure.active

    @property
    def batch_limit(self) -> int:
        return (
            min(self.max_batch, self.settings.reduced_batch)
            if self._memory.active
            else (self.max_batch)
        )

    def bitrate_cap(self, session: str) -> int:
        """Bits per second the session's client should stay under (0: no limit)."""
        return self._caps.get(session, 0)

    def forget(self, session: str) -> None:
        self._caps.pop(session, None)

    # ---- one reading

    def update(self, m: Measurements) -> list[Action]:
        now = self._clock()
        s = self.settings
        actions = [Action(c.at, c.action, c.reason) for c in m.engine_changes]
        for model, why in m.gpu_fallbacks.items():
            if model not in self._gpu_seen:
                self._gpu_seen.add(model)
                actions.append(Action(now, "gpu_to_cpu", f"{model}: {why}"))
        cpu_saturated = m.cpu_percent is not None and m.cpu_percent >= s.cpu_saturated_percent
        pressure = m.overloaded or (cpu_saturated and m.finals_reduced_now)
        calm = not m.overloaded and not m.finals_reduced_now and not cpu_saturated
        if self._pressure.update(True if pressure else (False if calm else None), now):
            if self._pressure.active:
                why = (
                    "finals fall behind real time"
                    if m.overloaded
                    else f"machine CPU {m.cpu_percent:.0f} % with finals already reduced"
                )
                actions.append(
                    Action(
                        now,
                        "model_fallback",
                        f"{why} for {s.fallback_after_s:g} s (final p95 "
                        f"{m.final_latency_p95_s:.2f} s, queue {m.queue_depth}, rtf "
                        f"{m.rtf:.2f}): new streams get a cheaper model",
                    )
                )
            else:
                actions.append(
                    Action(
                        now,
                        "model_restored",
                        f"no overload, no reduced finals for {s.restore_after_s:g} s: new "
                        "streams get the model they ask for",
                    )
                )
        if m.free_memory_mb is not None:
            low = m.free_memory_mb < s.low_memory_mb
            high = m.free_memory_mb > s.low_memory_mb * s.memory_margin
            before = self.batch_limit
            if self._memory.update(True if low else (False if high else None), now):
                actions.append(
                    Action(
                        now,
                        "batch_size",
                        f"free memory {human_bytes(m.free_memory_mb * MIB)} "
                        + (
                            f"below {human_bytes(s.low_memory_mb * MIB)}"
                            if self._memory.active
                            else f"above {human_bytes(s.low_memory_mb * s.memory_margin * MIB)}"
                        )
                        + f": batches of at most {self.batch_limit} (was {before})",
                    )
                )
        actions += self._links(m.link_bps, now)
        actions += self._threads(m, now)
        actions.sort(key=lambda a: a.at)
        return actions

    def threads_wanted(self, others: float, usable: int, band: float = 0.0) -> int:
        """Threads per lane for ``others`` cores taken by other processes (plus ``band``)."""
        top = self.max_threads or 1
        free = max(0.0, usable - others - band) / usable
        return max(1, min(top, math.floor(top * free + 0.5)))

    def threads_failed(self, threads: int) -> None:
        """The engines could not take the new count: they keep ``threads``; the change is
        decided afresh (after its delay again)."""
        self.threads = threads
        self._threads_side = 0

    def _threads(self, m: Measurements, now: float) -> list[Action]:
        s = self.settings
        if self.max_threads is None or m.others_cpu_cores is None or not m.usable_cores:
            return []
        others = max(0.0, m.others_cpu_cores)
        down = self.threads_wanted(others, m.usable_cores)
        up = self.threads_wanted(others, m.usable_cores, s.threads_band_cores)
        side = -1 if down < self.threads else (1 if up > self.threads else 0)
        if side == 0:
            self._threads_side = 0
            return []
        wanted = down if side < 0 else up
        if side != self._threads_side:
            self._threads_side, self._threads_since, self._threads_seen = side, now, wanted
        # A lone spike does not decide the count: the mildest change wanted over the wait.
        self._threads_seen = (max if side < 0 else min)(self._threads_seen, wanted)
        wait = s.threads_down_after_s if side < 0 else s.threads_up_after_s
        if now - self._threads_since < wait:
            return []
        before, self.threads = self.threads, self._threads_seen
        self._threads_side = 0
        busy = f"other processes take {others:.1f} of our {m.usable_cores} usable cores"
        return [
            Action(
                now,
                "threads",
                f"{busy} for {wait:g} s: {self.threads} intra-op threads per lane (was "
                f"{before}, at most {self.max_threads})",
            )
        ]

    def _links(self, link_bps: Mapping[str, float], now: float) -> list[Action]:
        s = self.settings
        actions = []
        for session, bps in link_bps.items():
            cap = self._caps.get(session, 0)
            if bps < PCM16_BPS * s.link_margin:
                # Half the link for audio leaves room for acks, retries and other traffic.
                wanted = next((r for r in OPUS_BITRATES if r <= bps / 2), OPUS_BITRATES[-1])
            elif bps > PCM16_BPS * s.link_clear:
                wanted = 0
            else:
                wanted = cap  # in the band between: keep what was asked
            if wanted != cap:
                if wanted:
                    self._caps[session] = wanted
                else:
                    self._caps.pop(session, None)
                actions.append(
                    Action(
                        now,
                        "compression",
                        f"session {session}: link {bps / 1000:.0f} kbit/s: "
                        + (
                            f"asked for audio of at most {wanted // 1000} kbit/s"
                            if wanted
                            else "no limit on its audio"
                        ),
                    )
                )
        return actions
