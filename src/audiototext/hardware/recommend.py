"""Recommendations from a performance profile: model, precision, threads, streams, partials.

Pure functions of a :class:`~audiototext.hardware.profile.PerformanceProfile`, each choice
with its reason in words. The rules:

* A variant *runs in real time* when one stream, partials every :data:`LONGEST_INTERVAL_MS`
  included, needs at most ``1 / SAFETY_MARGIN`` of the cores its threads take. The margin
  covers what the benchmark leaves out: real finals use beam search and earlier speech as
  context, and the VAD, features and the server take their share.
* The model is the most accurate variant that runs in real time: more parameters first, then
  the wider precision (fp32, fp16, int8). When none does, the fastest, said so.
* Threads: the count at which that variant holds the most streams (cores ÷ threads run side by
  side); on a tie the one that decodes sooner.
* The partial interval: the shortest of :data:`INTERVALS_MS` at which partials take at most
  half the capacity, i.e. the machine still holds half the streams it holds with partials
  every :data:`LONGEST_INTERVAL_MS` (and at least one); the stream count is given at that
  interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from audiototext.hardware.profile import Measurement, PerformanceProfile

__all__ = [
    "INTERVALS_MS",
    "SAFETY_MARGIN",
    "Recommendation",
    "recommend",
    "streams_held",
]

SAFETY_MARGIN = 2.0
INTERVALS_MS = (300, 500, 750, 1000, 1500, 2000)
LONGEST_INTERVAL_MS = 1000  # partials rarer than this stop being "live"
_PRECISION_RANK = {"fp32": 3, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class Recommendation:
    model: str
    precision: str
    threads: int
    streams: int  # concurrent streams the machine holds with these settings
    partial_interval_ms: int
    realtime: bool  # False: nothing measured keeps up; this is the fastest
    reasons: dict[str, str]  # model, threads, streams, partial_interval_ms → why
    profile_created_at: str

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "precision": self.precision,
            "threads": self.threads,
            "streams": self.streams,
            "partial_interval_ms": self.partial_interval_ms,
            "realtime": self.realtime,
            "reasons": dict(self.reasons),
            "profile_created_at": self.profile_created_at,
        }


def streams_held(m: Measurement, usable_cores: int, interval_ms: int) -> int:
    """Streams ``m`` keeps in real time (with the margin) at ``interval_ms`` partials."""
    slots = max(1, usable_cores // m.threads)
    need = m.stream_rtf(interval_ms / 1000) * SAFETY_MARGIN
    return math.floor(slots / need) if need > 0 else 0


def _accuracy(m: Measurement) -> tuple[float, int]:
    return (m.params_millions, _PRECISION_RANK.get(m.precision, 0))


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.01 else f"{100 * x:.1f}%"


def recommend(profile: PerformanceProfile) -> Recommendation | None:
    """The settings the profile supports (None when it holds no measurement)."""
    rows = profile.measurements
    if not rows:
        return None
    cores = profile.usable_cores

    def held(m: Measurement, interval_ms: int) -> int:
        return streams_held(m, cores, interval_ms)

    fits = [m for m in rows if held(m, LONGEST_INTERVAL_MS) >= 1]
    if fits:
        best = max(fits, key=_accuracy)
        variant = [m for m in fits if (m.model, m.precision) == (best.model, best.precision)]
        others = sorted(
            {f"{m.model} {m.precision}" for m in rows} - {f"{best.model} {best.precision}"}
        )
        model_reason = (
            f"the most accurate variant measured that runs in real time here with a "
            f"{SAFETY_MARGIN:g}x margin ({best.params_millions:g} M parameters, {best.precision})"
        )
        if others:
            model_reason += f"; also measured: {', '.join(others)}"
    else:
        best = min(rows, key=lambda m: m.stream_rtf(LONGEST_INTERVAL_MS / 1000))
        variant = [m for m in rows if (m.model, m.precision) == (best.model, best.precision)]
        model_reason = (
            f"no variant measured runs in real time here with a {SAFETY_MARGIN:g}x margin; "
            f"{best.model} {best.precision} is the fastest (one stream needs "
            f"{best.stream_rtf(LONGEST_INTERVAL_MS / 1000):.2f} s of compute per second of "
            "audio before the margin): expect results to fall behind"
        )

    def capacity_key(m: Measurement) -> tuple[int, float]:
        return held(m, LONGEST_INTERVAL_MS), -m.final_rtf

    chosen = max(variant, key=capacity_key)
    if len(variant) > 1:
        alternatives = ", ".join(
            f"{m.threads} thread(s): {held(m, LONGEST_INTERVAL_MS)} streams, a final in "
            f"{1000 * m.final_s:.0f} ms"
            for m in sorted(variant, key=lambda m: -m.threads)
        )
        threads_reason = (
            f"{chosen.threads} thread(s) per decoding job hold the most streams on "
            f"{cores} usable core(s) ({alternatives}; {1000 * chosen.utterance_s:.0f}-ms "
            "utterance)"
        )
    else:
        threads_reason = f"the only thread count measured ({chosen.threads})"

    most = held(chosen, LONGEST_INTERVAL_MS)
    interval = next(
        (ms for ms in INTERVALS_MS if held(chosen, ms) >= max(1, most / 2)), INTERVALS_MS[-1]
    )
    partial_share = chosen.partial_s / (interval / 1000)
    interval_reason = (
        f"the shortest interval at which partials take at most half the capacity "
        f"({held(chosen, interval)} streams, against {most} with partials every "
        f"{LONGEST_INTERVAL_MS} ms): a partial costs {1000 * chosen.partial_s:.0f} ms of "
        f"compute, {_pct(partial_share)} of one {chosen.threads}-thread decoding slot"
    )
    if not fits:
        interval_reason = (
            f"the longest interval offered ({interval} ms): partials cost "
            f"{1000 * chosen.partial_s:.0f} ms each and the machine is already behind"
        )
    streams = held(chosen, interval)
    slots = max(1, cores // chosen.threads)
    streams_reason = (
        f"one stream needs {_pct(chosen.stream_rtf(interval / 1000))} of a decoding slot "
        f"(finals {_pct(chosen.final_rtf)}, partials {_pct(partial_share)}); "
        f"{slots} slot(s) of {chosen.threads} thread(s), with the {SAFETY_MARGIN:g}x margin, "
        f"hold {streams}"
    )
    if interval < LONGEST_INTERVAL_MS:
        streams_reason += (
            f" ({held(chosen, LONGEST_INTERVAL_MS)} with partials every {LONGEST_INTERVAL_MS} ms)"
        )
    return Recommendation(
        model=chosen.model,
        precision=chosen.precision,
        threads=chosen.threads,
        streams=streams,
        partial_interval_ms=interval,
        realtime=bool(fits),
        reasons={
            "model": model_reason,
            "threads": threads_reason,
            "streams": streams_reason,
            "partial_interval_ms": interval_reason,
        },
        profile_created_at=profile.created_at,
    )
