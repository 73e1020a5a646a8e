"""Recommendations from made-up profiles, table-driven."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from audiototext.hardware.profile import Measurement, PerformanceProfile
from audiototext.hardware.recommend import SAFETY_MARGIN, recommend, streams_held


def _m(
    model: str,
    precision: str,
    threads: int,
    final_s: float,
    partial_s: float,
    params: float,
) -> Measurement:
    return Measurement(model, precision, "v", threads, 4.0, final_s, partial_s, 3, params)


def _profile(cores: int, *rows: Measurement) -> PerformanceProfile:
    return PerformanceProfile({}, "2026-12-07T12:00:00+00:00", 10.0, 45.0, cores, rows)


@dataclass(frozen=True)
class Case:
    name: str
    profile: PerformanceProfile
    model: str
    precision: str
    threads: int
    interval_ms: int
    streams: int
    realtime: bool = True


TINY_INT8 = _m("tiny.en", "int8", 1, 0.06, 0.03, 39)
TINY_FP32 = _m("tiny.en", "fp32", 1, 0.16, 0.09, 39)
SMALL_INT8 = _m("small.en", "int8", 1, 1.2, 0.6, 244)
SMALL_INT8_4T = _m("small.en", "int8", 4, 0.5, 0.25, 244)
LARGE_INT8 = _m("large-v3", "int8", 1, 9.0, 5.0, 1550)

CASES = [
    # fp32 beats int8 of the same model when both keep up
    Case("precision", _profile(2, TINY_INT8, TINY_FP32), "tiny.en", "fp32", 1, 500, 4),
    # the bigger model wins while it keeps up; large-v3 does not (9 s for 4 s of audio);
    # partials every 500 ms halve its 2 streams (the most the interval rule allows)
    Case("size", _profile(4, TINY_INT8, SMALL_INT8, LARGE_INT8), "small.en", "int8", 1, 500, 1),
    # one thread per job holds more streams than four threads on four cores
    Case("threads", _profile(4, SMALL_INT8, SMALL_INT8_4T), "small.en", "int8", 1, 500, 1),
    # nothing keeps up: the fastest, flagged
    Case("behind", _profile(1, LARGE_INT8), "large-v3", "int8", 1, 2000, 0, realtime=False),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_recommendation(case: Case) -> None:
    rec = recommend(case.profile)
    assert rec is not None
    got = (rec.model, rec.precision, rec.threads, rec.partial_interval_ms, rec.streams)
    assert got == (case.model, case.precision, case.threads, case.interval_ms, case.streams)
    assert rec.realtime is case.realtime
    assert set(rec.reasons) == {"model", "threads", "streams", "partial_interval_ms"}
    assert all(len(why) > 20 for why in rec.reasons.values())


def test_streams_follow_the_formula() -> None:
    # 2 slots of 1 thread; per stream 0.015 + 0.03 / 0.5 = 0.075, twice with the margin
    assert SAFETY_MARGIN == 2.0
    assert streams_held(TINY_INT8, 2, 500) == int(2 / ((0.06 / 4 + 0.03 / 0.5) * 2))


def test_threads_tie_goes_to_the_faster_final() -> None:
    one = _m("tiny.en", "int8", 1, 0.2, 0.0, 39)
    two = _m("tiny.en", "int8", 2, 0.1, 0.0, 39)  # half the time on twice the threads
    rec = recommend(_profile(2, one, two))
    assert rec is not None and streams_held(one, 2, 1000) == streams_held(two, 2, 1000)
    assert rec.threads == 2


def test_an_empty_profile_gives_none() -> None:
    assert recommend(_profile(2)) is None
