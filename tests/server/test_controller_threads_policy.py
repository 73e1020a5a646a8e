"""The controller's thread decisions (``ControlPolicy`` threads), one reading at a time with
a fake clock: contention lowers the intra-op threads after its delay, free cores restore
them after theirs, the count stays in [1, the engines' own], and readings in the band or a
lone spike change nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from audiototext.server.control_policy import ControlPolicy, ControlSettings, Measurements

FREE = Measurements(
    overloaded=False,
    rtf=0.3,
    queue_depth=0,
    final_latency_p95_s=0.2,
    partial_scale=1.0,
    finals_reduced_now=False,
    cpu_percent=50.0,
    free_memory_mb=4000.0,
    others_cpu_cores=0.05,
    usable_cores=4,
)
SETTINGS = ControlSettings(threads_down_after_s=5.0, threads_up_after_s=10.0)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def busy(others: float) -> Measurements:
    return replace(FREE, others_cpu_cores=others)


def feed(
    policy: ControlPolicy, clock: Clock, steps: list[tuple[float, Measurements]]
) -> list[tuple[float, int]]:
    """(seconds since start, reading) in order; returns (time, threads after) per change."""
    start = clock.t
    out = []
    for at, m in steps:
        clock.t = start + at
        for a in policy.update(m):
            assert a.action == "threads"
            out.append((at, policy.threads))
    return out


def every(m: Measurements, start: int, stop: int) -> list[tuple[float, Measurements]]:
    return [(float(t), m) for t in range(start, stop + 1)]


def test_contention_lowers_threads_after_its_delay_and_free_cores_restore_them() -> None:
    clock = Clock()
    policy = ControlPolicy(SETTINGS, max_batch=8, clock=clock, max_threads=4)
    # A hog takes 2 of our 4 cores: half of them free, so half the threads, after 5 s.
    changes = feed(policy, clock, every(busy(2.0), 0, 8))
    assert changes == [(5.0, 2)]
    # It ends: back to 4 after 10 s of free cores (not before).
    changes = feed(policy, clock, every(FREE, 9, 25))
    assert changes == [(19.0, 4)]
    assert policy.threads == 4


def test_the_count_stays_between_one_and_the_engines_own() -> None:
    clock = Clock()
    policy = ControlPolicy(SETTINGS, max_batch=8, clock=clock, max_threads=2)
    # Every core taken by others (and more: readings overshoot): one thread, never zero.
    assert feed(policy, clock, every(busy(9.0), 0, 6)) == [(5.0, 1)]
    assert feed(policy, clock, every(busy(4.0), 7, 30)) == []
    # Idle machine: never above the engines' own (serve --threads), however long.
    assert feed(policy, clock, every(busy(0.0), 31, 90)) == [(41.0, 2)]
    assert policy.threads == 2


def test_readings_in_the_band_and_lone_spikes_change_nothing() -> None:
    clock = Clock()
    policy = ControlPolicy(SETTINGS, max_batch=8, clock=clock, max_threads=2)
    usable = replace(FREE, usable_cores=2)
    # Others at 0.4 of 2 cores: 2 × 1.6/2 = 1.6 rounds to 2; no change.
    steps = every(replace(usable, others_cpu_cores=0.4), 0, 20)
    # A spike of 1.5 cores for 3 s (shorter than the 5-s delay), then calm: nothing.
    steps += every(replace(usable, others_cpu_cores=1.5), 21, 23)
    steps += every(replace(usable, others_cpu_cores=0.4), 24, 40)
    assert feed(policy, clock, steps) == []
    # Lowered at 1 core of contention ...
    assert feed(policy, clock, every(replace(usable, others_cpu_cores=1.0), 41, 46)) == [(46.0, 1)]
    # ... not raised again at 0.4 (below where it went down, but inside the 0.25-core band):
    assert feed(policy, clock, every(replace(usable, others_cpu_cores=0.4), 47, 120)) == []
    # ... raised once contention is below 0.25 cores.
    steps = every(replace(usable, others_cpu_cores=0.2), 121, 140)
    assert feed(policy, clock, steps) == [(131.0, 2)]


def test_alternating_readings_never_flap() -> None:
    clock = Clock()
    policy = ControlPolicy(SETTINGS, max_batch=8, clock=clock, max_threads=4)
    # Contention on and off every 2 s for a minute: neither side holds its delay.
    steps = [(float(t), busy(3.0) if (t // 2) % 2 else FREE) for t in range(60)]
    assert feed(policy, clock, steps) == []
    assert policy.threads == 4


def test_a_spike_inside_the_wait_does_not_set_the_count() -> None:
    clock = Clock()
    policy = ControlPolicy(SETTINGS, max_batch=8, clock=clock, max_threads=4)
    # 2 cores taken for 6 s, one of those readings 3.5: the mildest wanted (2) is taken.
    steps = [*every(busy(2.0), 0, 2), (3.0, busy(3.5)), *every(busy(2.0), 4, 6)]
    assert feed(policy, clock, steps) == [(5.0, 2)]


def test_reason_names_the_contention_and_the_counts() -> None:
    clock = Clock()
    policy = ControlPolicy(SETTINGS, max_batch=8, clock=clock, max_threads=4)
    actions = []
    for t in range(7):
        clock.t = 100.0 + t
        actions += policy.update(busy(3.0))
    assert len(actions) == 1
    reason = actions[0].reason
    assert "3.0 of our 4 usable cores" in reason and "1 intra-op threads" in reason
    assert "was 4" in reason and "at most 4" in reason


def test_off_unknown_or_not_adjustable_means_no_thread_actions() -> None:
    clock = Clock()
    off = ControlPolicy(
        replace(SETTINGS, adapt_threads=False), max_batch=8, clock=clock, max_threads=4
    )
    fixed = ControlPolicy(SETTINGS, max_batch=8, clock=clock, max_threads=None)
    unknown = ControlPolicy(SETTINGS, max_batch=8, clock=clock, max_threads=4)
    for t in range(60):
        clock.t = 100.0 + t
        assert off.update(busy(3.9)) == []
        assert fixed.update(busy(3.9)) == []
        assert unknown.update(replace(FREE, others_cpu_cores=None)) == []
    assert off.max_threads is None and off.threads == 4


def test_a_failed_rebuild_restores_the_count_and_decides_afresh() -> None:
    clock = Clock()
    policy = ControlPolicy(SETTINGS, max_batch=8, clock=clock, max_threads=4)
    assert feed(policy, clock, every(busy(2.0), 0, 5)) == [(5.0, 2)]
    policy.threads_failed(4)  # the engines kept their 4
    assert policy.threads == 4
    # Still contended: decided again after a full delay, not at once.
    assert feed(policy, clock, every(busy(2.0), 6, 11)) == [(11.0, 2)]


def test_absurd_thread_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="thread delays"):
        ControlSettings(threads_down_after_s=-1)
    with pytest.raises(ValueError, match="thread band"):
        ControlSettings(threads_band_cores=-0.5)
