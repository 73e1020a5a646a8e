"""Alerts with hysteresis (server/alerts.py), on a fake clock and fake probes."""

from __future__ import annotations

import logging

import pytest

from audiototext.errors import ConfigError
from audiototext.server.alerts import AlertMonitor, AlertProbes, AlertSettings
from audiototext.units import human_bytes

MB = 1 << 20


class Machine:
    """Fake probes and clock: tests set the values and move time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.overloaded = False
        self.memory = 8000.0 * MB
        self.disk: float | None = 50_000.0 * MB

    def monitor(self, **settings: float) -> AlertMonitor:
        defaults: dict[str, float] = {
            "min_free_memory_mb": 256,
            "min_free_disk_mb": 1024,
            "raise_after_s": 5,
            "clear_after_s": 30,
        }
        return AlertMonitor(
            AlertSettings(**{**defaults, **settings}),
            AlertProbes(
                overloaded=lambda: self.overloaded,
                free_memory_bytes=lambda: self.memory,
                free_disk_bytes=lambda: self.disk,
            ),
            clock=lambda: self.now,
            wall_clock=lambda: 1.7e9 + self.now,
        )

    def run(self, monitor: AlertMonitor, seconds: float, step: float = 1.0) -> list[bool]:
        """Check every ``step`` for ``seconds``; engine_overloaded's state after each check."""
        states = []
        for _ in range(round(seconds / step)):
            self.now += step
            monitor.check()
            states.append(monitor.states()["engine_overloaded"])
        return states


def test_an_alert_is_raised_only_after_its_condition_held_for_raise_after_s() -> None:
    m = Machine()
    alerts = m.monitor()
    m.overloaded = True
    states = m.run(alerts, 10)
    # Pending from the first check (t=1), raised once 5 s have passed (t=6).
    assert states == [False] * 5 + [True] * 5
    assert [a.name for a in alerts.active()] == ["engine_overloaded"]


def test_a_short_burst_raises_nothing_and_a_short_dip_clears_nothing() -> None:
    m = Machine()
    alerts = m.monitor()
    m.overloaded = True
    assert not any(m.run(alerts, 4))  # 4 s of overload: under raise_after_s
    m.overloaded = False
    assert not any(m.run(alerts, 2))
    m.overloaded = True
    assert not any(m.run(alerts, 4))  # the pending time started again after the dip
    assert m.run(alerts, 2)[-1]
    m.overloaded = False
    assert all(m.run(alerts, 20))  # 20 s of calm: still raised (clear_after_s is 30)
    m.overloaded = True
    m.run(alerts, 1)
    m.overloaded = False
    states = m.run(alerts, 31)
    assert states[-2] and not states[-1]  # cleared 30 s after the calm began again


def test_resource_alerts_clear_only_above_the_threshold_times_the_margin() -> None:
    m = Machine()
    alerts = m.monitor(raise_after_s=0, clear_after_s=0)
    m.memory = 200 * MB
    alerts.check()
    assert alerts.states()["memory_low"]
    (active,) = alerts.active()
    assert active.message == "free memory 200.0 MiB is below 256.0 MiB (--alert-min-free-memory-mb)"
    m.memory = 300 * MB  # above 256, below 256 × 1.25 = 320: the band keeps it raised
    alerts.check()
    assert alerts.states()["memory_low"]
    m.memory = 330 * MB
    alerts.check()
    assert not alerts.states()["memory_low"]


def test_disk_low_and_an_unreadable_cache_folder() -> None:
    m = Machine()
    alerts = m.monitor(raise_after_s=0, clear_after_s=0)
    m.disk = 100 * MB
    alerts.check()
    assert alerts.states()["disk_low"]
    m.disk = None  # unreadable: no news, the state stays
    alerts.check()
    assert alerts.states()["disk_low"]
    m.disk = 2000 * MB
    alerts.check()
    assert not alerts.states()["disk_low"]


def test_a_threshold_of_zero_turns_a_resource_alert_off() -> None:
    m = Machine()
    alerts = m.monitor(min_free_memory_mb=0, raise_after_s=0)
    m.memory = 0.0
    alerts.check()
    assert not alerts.states()["memory_low"]


def test_model_load_failed_is_raised_at_the_next_check_and_cleared_by_a_good_load() -> None:
    m = Machine()
    alerts = m.monitor()
    alerts.model_load("base", "the cache is not writable")
    alerts.check()
    assert alerts.states()["model_load_failed"]
    assert "base failed to load: the cache is not writable" in alerts.active()[0].message
    alerts.model_load("tiny.en", None)  # another model: base still failed
    alerts.check()
    assert alerts.states()["model_load_failed"]
    alerts.model_load("base", None)
    alerts.check()
    assert not alerts.states()["model_load_failed"]


def test_raising_and_clearing_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    m = Machine()
    alerts = m.monitor(raise_after_s=0, clear_after_s=0)
    with caplog.at_level(logging.INFO, logger="audiototext.server.alerts"):
        m.overloaded = True
        alerts.check()
        alerts.check()  # still raised: logged once
        m.overloaded = False
        alerts.check()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines[0][0] == "WARNING" and lines[0][1].startswith("alert raised: engine_overloaded")
    assert lines[1:] == [("INFO", "alert cleared: engine_overloaded")]


def test_since_is_the_wall_time_of_raising() -> None:
    m = Machine()
    alerts = m.monitor(raise_after_s=0)
    m.overloaded = True
    m.now = 1234.0
    alerts.check()
    assert alerts.active()[0].since == 1.7e9 + 1234.0


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"min_free_memory_mb": -1}, "--alert-min-free-memory-mb"),
        ({"min_free_disk_mb": -5}, "--alert-min-free-disk-mb"),
        ({"raise_after_s": -1}, "raise/clear"),
        ({"clear_margin": 0.5}, "clear margin"),
    ],
)
def test_absurd_settings_are_refused_with_the_setting_named(
    settings: dict[str, float], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        AlertSettings(**settings)


def test_large_thresholds_read_as_a_person_writes_them() -> None:
    """The largest threshold the flags take (2^30 MB) used to read "1.07374e+09 MB"."""
    m = Machine()
    alerts = m.monitor(raise_after_s=0, clear_after_s=0, min_free_disk_mb=float(1 << 30))
    m.disk = 3 * 1024 * MB
    alerts.check()
    (active,) = alerts.active()
    assert active.message == (
        "free disk in the model cache 3.0 GiB is below 1.0 PiB (--alert-min-free-disk-mb)"
    )
    with pytest.raises(ConfigError, match="1073741825 must be"):
        AlertSettings(min_free_memory_mb=float((1 << 30) + 1))


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1536, "1.5 KiB"),
        (256 * MB, "256.0 MiB"),
        (1 << 30, "1.0 GiB"),
        (1.5 * (1 << 40), "1.5 TiB"),
        (float(1 << 70), "1048576.0 PiB"),
    ],
)
def test_human_bytes(n: float, text: str) -> None:
    assert human_bytes(n) == text
