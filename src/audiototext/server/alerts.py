"""Alerts the server raises and clears about itself, with hysteresis.

Five alerts: the engine falls behind real time (``engine_overloaded``), free memory is low
(``memory_low``), free disk in the model cache is low (``disk_low``), a model failed to load
(``model_load_failed``), a model meant for the GPU runs on the CPU because its GPU session
failed or ran out of memory (``gpu_fallback``, reported by the controller), the history file
asked for could not be used or stopped working (``history_unavailable``: transcripts are kept
in memory only until a restart), the shared session store cannot be reached
(``session_store_down``: streams go on, resumable on this server only). A condition must hold
for ``raise_after_s`` before its alert is raised and be gone for ``clear_after_s`` before it
is cleared; the resource alerts also clear only above their threshold times
``clear_margin``. Without both, a value hovering at the threshold (memory near the limit, an
engine at the edge of real time) would raise and clear an alert every few seconds and the
log, the dashboards and the streams' clients would flap.

Raising and clearing are logged (WARNING / INFO). The state is read by the metrics
(``audiototext_alert{name}``), REST ``/api/v1/system`` and the streams' Metrics messages.
No threads and no I/O here: the probes and the clock are passed in, and tests call
:meth:`AlertMonitor.check` directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from audiototext.errors import ConfigError
from audiototext.hardware.detect import free_disk_bytes
from audiototext.server.control_policy import Hysteresis
from audiototext.units import MIB, human_bytes

__all__ = [
    "ALERT_NAMES",
    "ActiveAlert",
    "AlertMonitor",
    "AlertProbes",
    "AlertSettings",
    "free_disk_bytes",
    "free_memory_bytes",
]

log = logging.getLogger(__name__)

ALERT_NAMES = (
    "engine_overloaded",
    "memory_low",
    "disk_low",
    "model_load_failed",
    "gpu_fallback",
    "history_unavailable",
    "session_store_down",
)


@dataclass(frozen=True)
class AlertSettings:
    min_free_memory_mb: float = 256.0  # serve --alert-min-free-memory-mb
    min_free_disk_mb: float = 1024.0  # serve --alert-min-free-disk-mb
    raise_after_s: float = 5.0  # a condition holds this long before its alert is raised
    clear_after_s: float = 30.0  # and is gone this long before the alert is cleared
    clear_margin: float = 1.25  # resource alerts clear above threshold × this

    def __post_init__(self) -> None:
        if not 0 <= self.min_free_memory_mb <= 1 << 30:
            raise ConfigError(
                f"--alert-min-free-memory-mb {self.min_free_memory_mb:.15g} must be between 0 "
                "(off) and 2^30"
            )
        if not 0 <= self.min_free_disk_mb <= 1 << 30:
            raise ConfigError(
                f"--alert-min-free-disk-mb {self.min_free_disk_mb:.15g} must be between 0 "
                "(off) and 2^30"
            )
        if not 0 <= self.raise_after_s <= 3600 or not 0 <= self.clear_after_s <= 3600:
            raise ConfigError("alert raise/clear delays must be between 0 and 3600 s")
        if not 1.0 <= self.clear_margin <= 10.0:
            raise ConfigError("the alerts' clear margin must be between 1 and 10")


@dataclass(frozen=True)
class AlertProbes:
    """How the monitor reads the machine (tests pass fakes)."""

    overloaded: Callable[[], bool]
    free_memory_bytes: Callable[[], float]
    free_disk_bytes: Callable[[], float | None]  # None: the cache folder cannot be read


@dataclass(frozen=True)
class ActiveAlert:
    name: str
    message: str
    since: float  # Unix time it was raised


class AlertMonitor:
    def __init__(
        self,
        settings: AlertSettings,
        probes: AlertProbes,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._probes = probes
        self._clock = clock
        self._wall = wall_clock
        self._states = {
            name: Hysteresis(settings.raise_after_s, settings.clear_after_s) for name in ALERT_NAMES
        }
        self._messages: dict[str, str] = {}
        self._since: dict[str, float] = {}
        self._failed_models: dict[str, str] = {}  # model -> why its last load failed
        self._gpu_fallbacks: dict[str, str] = {}  # loaded model -> why it left the GPU
        self._history_problem: str | None = None  # why the history file is not in use
        self._store_error: str | None = None  # why the session store cannot be reached

    # ---- reading

    def states(self) -> dict[str, bool]:
        return {name: state.active for name, state in self._states.items()}

    def active(self) -> list[ActiveAlert]:
        return [
            ActiveAlert(name, self._messages.get(name, ""), self._since.get(name, 0.0))
            for name, state in self._states.items()
            if state.active
        ]

    # ---- evaluation

    def check(self) -> None:
        """Read the probes and update every alert (the server calls it about once a second)."""
        s = self.settings
        now = self._clock()
        self._update(
            "engine_overloaded",
            self._probes.overloaded(),
            "the engine cannot keep up with real time: finals fall behind and new streams "
            "are refused",
            now,
        )
        memory = self._probes.free_memory_bytes()
        self._update(
            "memory_low",
            _below(memory, s.min_free_memory_mb * MIB, s.clear_margin),
            f"free memory {human_bytes(memory)} is below "
            f"{human_bytes(s.min_free_memory_mb * MIB)} (--alert-min-free-memory-mb)",
            now,
        )
        disk = self._probes.free_disk_bytes()
        self._update(
            "disk_low",
            None if disk is None else _below(disk, s.min_free_disk_mb * MIB, s.clear_margin),
            f"free disk in the model cache {human_bytes(disk or 0)} is below "
            f"{human_bytes(s.min_free_disk_mb * MIB)} (--alert-min-free-disk-mb)",
            now,
        )
        # A failed load is an event, not a level: raised at once, cleared once every model
        # that failed has loaded since (the delays would only hide it).
        failed = bool(self._failed_models)
        state = self._states["model_load_failed"]
        if failed != state.active:
            state.active = failed
            self._changed("model_load_failed", failed, self._load_message())
        # Also an event: raised at once, cleared when no loaded model runs on the fallback.
        fell_back = dict(self._gpu_fallbacks)
        state = self._states["gpu_fallback"]
        if bool(fell_back) != state.active:
            state.active = bool(fell_back)
            self._changed(
                "gpu_fallback",
                state.active,
                "; ".join(f"{m} runs on the CPU: {why}" for m, why in fell_back.items()),
            )
        problem = self._history_problem  # one read: the recorder may set it meanwhile
        state = self._states["history_unavailable"]
        if (problem is not None) != state.active:
            state.active = problem is not None
            self._changed("history_unavailable", state.active, problem or "")

        store_error = self._store_error
        state = self._states["session_store_down"]
        if (store_error is not None) != state.active:
            state.active = store_error is not None
            self._changed(
                "session_store_down",
                state.active,
                f"the session store cannot be reached ({store_error}): streams go on, but "
                "only this server can resume them",
            )

    def gpu_fallbacks(self, reasons: dict[str, str]) -> None:
        """The loaded models that fell back from the GPU to the CPU, and why (the controller
        reports them; the next :meth:`check` raises or clears the alert)."""
        self._gpu_fallbacks = dict(reasons)

    def session_store(self, error: str | None) -> None:
        """The session store's health (any thread): why it cannot be reached, or None.
        Raised and cleared at the next :meth:`check`, at once, as ``model_load_failed``."""
        self._store_error = error

    def model_load(self, model: str, error: str | None) -> None:
        """A model load finished: ``error`` is why it failed, None when it succeeded.

        Any thread may call it (loads run in worker threads); the next :meth:`check`, on
        the server's loop, raises or clears the alert, so only that loop logs and changes it.
        """
        if error is None:
            self._failed_models.pop(model, None)
        else:
            self._failed_models[model] = error

    def history_unavailable(self, why: str | None) -> None:
        """The history file stopped being used (``why``), or is in use again (None); raised
        or cleared by the next :meth:`check`, like a failed model load."""
        self._history_problem = why

    async def run(self, interval_s: float) -> None:
        """Check every ``interval_s`` until cancelled (a task of the server)."""
        while True:
            try:
                self.check()
            except Exception:  # a probe failing must not end the checks for good
                log.exception("checking the alerts failed")
            await asyncio.sleep(interval_s)

    def _load_message(self) -> str:
        failed = list(self._failed_models.items())  # a copy: loads may change it meanwhile
        return "; ".join(f"model {m} failed to load: {why}" for m, why in failed)

    def _update(self, name: str, signal: bool | None, message: str, now: float) -> None:
        if self._states[name].update(signal, now):
            self._changed(name, self._states[name].active, message)

    def _changed(self, name: str, active: bool, message: str) -> None:
        if active:
            self._messages[name] = message
            self._since[name] = self._wall()
            log.warning("alert raised: %s: %s", name, message, extra={"alert": name})
        else:
            self._messages.pop(name, None)
            self._since.pop(name, None)
            log.info("alert cleared: %s", name, extra={"alert": name})


def _below(value: float, threshold: float, margin: float) -> bool | None:
    """True under the threshold, False above threshold × margin, None in the band between
    (and False when the threshold is 0: the alert is off)."""
    if threshold <= 0:
        return False
    if value < threshold:
        return True
    return False if value > threshold * margin else None


def free_memory_bytes() -> float:
    """Memory available to programs (psutil: without swapping, page cache counted free)."""
    import psutil

    return float(psutil.virtual_memory().available)
