"""The controller's decisions (``server/control_policy.py``), one reading at a time, with a
fake clock: rises after its delay, holds, falls after its own, never flaps in the band."""

from __future__ import annotations

from dataclasses import replace

import pytest

from audiototext.server.control_policy import (
    PCM16_BPS,
    ControlPolicy,
    ControlSettings,
    EngineChange,
    Hysteresis,
    Measurements,
)

CALM = Measurements(
    overloaded=False,
    rtf=0.3,
    queue_depth=0,
    final_latency_p95_s=0.2,
    partial_scale=1.0,
    finals_reduced_now=False,
    cpu_percent=40.0,
    free_memory_mb=4000.0,
)
OVERLOADED = replace(CALM, overloaded=True, rtf=1.4, queue_depth=9, final_latency_p95_s=2.5)
SATURATED_REDUCED = replace(CALM, cpu_percent=99.0, finals_reduced_now=True)
SATURATED_ONLY = replace(CALM, cpu_percent=99.0)  # busy machine, finals still full: in the band
REDUCED_ONLY = replace(CALM, finals_reduced_now=True)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def run(
    policy: ControlPolicy, clock: Clock, steps: list[tuple[float, Measurements]]
) -> list[tuple[float, str, bool]]:
    """Feed (seconds since start, reading) in order; returns (time, action, fallback after)."""
    start = clock.t
    out = []
    for at, m in steps:
        clock.t = start + at
        for a in policy.update(m):
            out.append((round(a.at - start, 2), a.action, policy.fallback_active))
    return out


def every(
    m: Measurements, start: float, stop: float, step: float = 1.0
) -> list[tuple[float, Measurements]]:
    n = round((stop - start) / step)
    return [(start + i * step, m) for i in range(n + 1)]


SETTINGS = ControlSettings(fallback_after_s=5.0, restore_after_s=10.0)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # Rises once the overload held fallback_after_s, not before.
        (every(OVERLOADED, 0, 4), []),
        (every(OVERLOADED, 0, 6), [(5.0, "model_fallback", True)]),
        # A saturated machine with finals already reduced is pressure too.
        (every(SATURATED_REDUCED, 0, 6), [(5.0, "model_fallback", True)]),
        # A busy machine alone is not (finals are full): nothing happens.
        (every(SATURATED_ONLY, 0, 20), []),
        # Holds while pressure lasts; falls restore_after_s after it went.
        (
            every(OVERLOADED, 0, 30) + every(CALM, 31, 40),
            [(5.0, "model_fallback", True)],
        ),
        (
            every(OVERLOADED, 0, 10) + every(CALM, 11, 25),
            [(5.0, "model_fallback", True), (21.0, "model_restored", False)],
        ),
        # In the band (finals reduced, no overload) it neither rises nor falls.
        (every(REDUCED_ONLY, 0, 30), []),
        (
            every(OVERLOADED, 0, 10) + every(REDUCED_ONLY, 11, 60),
            [(5.0, "model_fallback", True)],
        ),
        # Overload that comes and goes faster than the delays: no flapping at all.
        (
            [(t, OVERLOADED if int(t) % 6 < 3 else CALM) for t in range(0, 60)],
            [],
        ),
        # Calm interrupted before restore_after_s: the restore waits for a full calm period.
        (
            every(OVERLOADED, 0, 10)
            + every(CALM, 11, 18)
            + every(OVERLOADED, 19, 19)
            + every(CALM, 20, 31),
            [(5.0, "model_fallback", True), (30.0, "model_restored", False)],
        ),
    ],
)
def test_model_fallback_rises_holds_falls_without_flapping(
    steps: list[tuple[float, Measurements]], expected: list[tuple[float, str, bool]]
) -> None:
    clock = Clock()
    policy = ControlPolicy(SETTINGS, max_batch=8, clock=clock)
    assert run(policy, clock, steps) == expected


def test_fallback_reason_names_the_figures() -> None:
    clock = Clock()
    policy = ControlPolicy(SETTINGS, max_batch=8, clock=clock)
    actions = []
    for t in range(7):
        clock.t = 1000.0 + t
        actions += policy.update(OVERLOADED)
    (a,) = actions
    assert "finals fall behind real time" in a.reason
    assert "queue 9" in a.reason and "rtf 1.40" in a.reason and "p95 2.50 s" in a.reason


@pytest.mark.parametrize(
    ("memory", "expected_limits", "actions"),
    [
        ([4000] * 5, [8] * 5, 0),
        # Low for memory_after_s (2 s): capped at the third reading, then held.
        ([300] * 6, [8, 8, 1, 1, 1, 1], 1),
        # Back above the margin (512 × 1.5 = 768) for 2 s: uncapped.
        ([300] * 3 + [900] * 4, [8, 8, 1, 1, 1, 8, 8], 2),
        # Between 512 and 768: stays capped (the band), no flapping.
        ([300] * 3 + [600, 700, 650, 600, 700] * 2, [8, 8] + [1] * 11, 1),
        # Dips shorter than the delay change nothing.
        ([300, 4000] * 6, [8] * 12, 0),
    ],
)
def test_batch_cap_follows_free_memory_with_hysteresis(
    memory: list[float], expected_limits: list[int], actions: int
) -> None:
    clock = Clock()
    policy = ControlPolicy(ControlSettings(low_memory_mb=512.0), max_batch=8, clock=clock)
    limits = []
    taken = []
    for i, mb in enumerate(memory):
        clock.t = 1000.0 + i
        taken += policy.update(replace(CALM, free_memory_mb=mb))
        limits.append(policy.batch_limit)
    assert limits == expected_limits
    assert len(taken) == actions and all(a.action == "batch_size" for a in taken)
    if taken:
        assert "free memory 300.0 MiB below 512.0 MiB" in taken[0].reason


@pytest.mark.parametrize(
    ("links", "caps"),
    [
        ([1_000_000, 900_000], [0, 0]),  # fast links: PCM16 is fine
        ([200_000], [32_000]),  # under PCM16 × 1.25 = 320k: Opus, half the link at most
        ([60_000], [24_000]),
        ([20_000], [12_000]),  # slower than every rate: the lowest
        ([200_000, 400_000, 500_000, 600_000], [32_000, 32_000, 32_000, 0]),  # clears > 512k
        ([200_000, 40_000], [32_000, 16_000]),  # follows the link down
    ],
)
def test_client_bit_rate_cap_from_the_reported_link(links: list[float], caps: list[int]) -> None:
    clock = Clock()
    policy = ControlPolicy(ControlSettings(), max_batch=8, clock=clock)
    got = []
    for i, bps in enumerate(links):
        clock.t = 1000.0 + i
        policy.update(replace(CALM, link_bps={"s1": bps}))
        got.append(policy.bitrate_cap("s1"))
    assert got == caps
    assert policy.bitrate_cap("other") == 0
    policy.forget("s1")
    assert policy.bitrate_cap("s1") == 0
    assert PCM16_BPS == 16_000 * 16


def test_engine_changes_and_gpu_fallbacks_come_out_in_time_order_once() -> None:
    clock = Clock()
    policy = ControlPolicy(ControlSettings(), max_batch=8, clock=clock)
    changes = (
        EngineChange(998.0, "finals_reduced", "3 finals due, 2 decoder(s) idle"),
        EngineChange(997.5, "partial_interval", "×1.00 → ×1.50: finals queue"),
    )
    gpu = {"small (fp16)": "running on CUDAExecutionProvider failed: out of memory"}
    first = policy.update(replace(CALM, engine_changes=changes, gpu_fallbacks=gpu))
    assert [a.action for a in first] == ["partial_interval", "finals_reduced", "gpu_to_cpu"]
    assert "out of memory" in first[2].reason
    # The same fallback reported again is not a new action.
    assert policy.update(replace(CALM, gpu_fallbacks=gpu)) == []


def test_hysteresis_needs_its_condition_to_hold() -> None:
    h = Hysteresis(raise_after_s=2.0, clear_after_s=3.0)
    seq = [(0, True), (1, True), (2, True), (3, None), (4, False), (5, False), (7, False)]
    changes = [t for t, signal in seq if h.update(signal, float(t))]
    assert changes == [2, 7] and not h.active


def test_absurd_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="fallback and restore"):
        ControlSettings(fallback_after_s=-1)
    with pytest.raises(ValueError, match="reduced batch"):
        ControlSettings(reduced_batch=0)
    with pytest.raises(ValueError, match="margins"):
        ControlSettings(link_margin=3.0, link_clear=2.0)
