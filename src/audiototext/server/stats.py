"""What the server says about itself: live statistics and the machine's hardware profile.

Shared by the gRPC ``System`` service and the REST ``/api/v1/system``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from audiototext._version import __version__
from audiototext.server.sessions import SessionStore

if TYPE_CHECKING:
    from audiototext.hardware import HardwareProfile

__all__ = ["LiveStats", "hardware_profile", "live_stats"]


@dataclass(frozen=True)
class LiveStats:
    active_streams: int
    detached_streams: int  # waiting for their client to resume
    queue_depth: int
    rtf: float  # compute seconds per audio second, recent
    final_latency_ms_p50: float
    final_latency_ms_p95: float
    overloaded: bool
    model: str
    version: str
    uptime_s: float
    streams_total: int


def live_stats(store: SessionStore, model: str, started_at: float) -> LiveStats:
    """``started_at``: the server's start on the ``time.monotonic`` clock."""
    stats = store.recognizer.stats()
    return LiveStats(
        active_streams=store.open_count(),
        detached_streams=store.detached_count(),
        queue_depth=stats.queue_depth,
        rtf=stats.rtf,
        final_latency_ms_p50=stats.final_latency_ms_p50,
        final_latency_ms_p95=stats.final_latency_ms_p95,
        overloaded=stats.overloaded,
        model=model,
        version=__version__,
        uptime_s=time.monotonic() - started_at,
        streams_total=store.streams_total,
    )


def hardware_profile() -> tuple[HardwareProfile, str]:
    """This machine's profile and the precision recommended for it (blocking: a thread)."""
    from audiototext.hardware import detect, pick_precision

    profile = detect()
    return profile, pick_precision(profile)
