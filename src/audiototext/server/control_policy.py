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
audio (``bitrate_cap``). ONNX Runtime fixes a session's thread count when it is created, so
threads are not changed at run time (a reload would be a new model load).
"""

from __future__ import annotations

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

    def __post_init__(self) -> None:
        if not 0 <= self.fallback_after_s <= 3600 or not 0 <= self.restore_after_s <= 3600:
            raise ValueError("the controller's fallback and restore delays must be 0..3600 s")
        if self.reduced_batch < 1:
            raise ValueError("the controller's reduced batch must be at least 1")
        if not 1.0 <= self.memory_margin <= 10.0 or not 1.0 <= self.link_margin < self.link_clear:
            raise ValueError("the controller's margins must be at least 1 (link: clear > margin)")


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
    ) -> None:
        self.settings = settings
        self.max_batch = max_batch
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
        actions.sort(key=lambda a: a.at)
        return actions

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
