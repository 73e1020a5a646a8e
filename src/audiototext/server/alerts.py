"""Alerts the server raises and clears about itself, with hysteresis.

Five alerts: the engine falls behind real time (``engine_overloaded``), free memory is low
(``memory_low``), free disk in the model cache is low (``disk_low``), a model failed to load
(``model_load_failed``), the shared session store cannot be reached (``session_store_down``:
streams go on, resumable on this server only). A condition must hold for ``raise_after_s``
before its alert is raised and be gone for ``clear_after_s`` before it is cleared; the
resource alerts also clear only above their threshold times ``clear_margin``. Without both,
a value hovering at the threshold (memory near the limit, an engine at the edge of real
time) would raise and clear an alert every few seconds and the log, the dashboards and the
streams' clients would flap.

Raising and clearing are logged (WARNING / INFO). The state is read by the metrics
(``audiototext_alert{name}``), REST ``/api/v1/system`` and the streams' Metrics messages.
No threads and no I/O here: the probes and the clock are passed in, and tests call
:meth:`AlertMonitor.check` directly.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from audiototext.errors import ConfigError

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
    "session_store_down",
)
_MB = 1 << 20


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
                f"--alert-min-free-memory-mb {self.min_free_memory_mb:g} must be between 0 "
                "(off) and 2^30"
            )
        if not 0 <= self.min_free_disk_mb <= 1 << 30:
            raise ConfigError(
                f"--alert-min-free-disk-mb {self.min_free_disk_mb:g} must be between 0 "
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


class _Hysteresis:
    """One alert's state: ``update(True)`` while its raise condition holds, ``False`` while
    its clear condition holds, ``None`` in between (a pending change is forgotten)."""

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
            name: _Hysteresis(settings.raise_after_s, settings.clear_after_s)
            for name in ALERT_NAMES
        }
        self._messages: dict[str, str] = {}
        self._since: dict[str, float] = {}
        self._failed_models: dict[str, str] = {}  # model -> why its last load failed
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
            _below(memory, s.min_free_memory_mb * _MB, s.clear_margin),
            f"free memory {memory / _MB:.0f} MB is below {s.min_free_memory_mb:g} MB "
            "(--alert-min-free-memory-mb)",
            now,
        )
        disk = self._probes.free_disk_bytes()
        self._update(
            "disk_low",
            None if disk is None else _below(disk, s.min_free_disk_mb * _MB, s.clear_margin),
            f"free disk in the model cache {(disk or 0) / _MB:.0f} MB is below "
            f"{s.min_free_disk_mb:g} MB (--alert-min-free-disk-mb)",
            now,
        )
        # A failed load is an event, not a level: raised at once, cleared once every model
        # that failed has loaded since (the delays would only hide it).
        failed = bool(self._failed_models)
        state = self._states["model_load_failed"]
        if failed != state.active:
            state.active = failed
            self._changed("model_load_failed", failed, self._load_message())
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


def free_disk_bytes(folder: Path) -> float | None:
    """Free bytes on the file system of ``folder`` (or of its nearest existing parent)."""
    path = folder
    while not path.exists() and path.parent != path:
        path = path.parent
    try:
        return float(shutil.disk_usage(path).free)
    except OSError:
        return None
