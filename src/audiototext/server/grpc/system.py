"""The ``System`` service: the machine's hardware profile and the server's live statistics."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from audiototext.server.alerts import ActiveAlert
from audiototext.server.devices import DeviceProbe, real_probe
from audiototext.server.perf_profile import ProfileKeeper
from audiototext.server.sessions import SessionStore
from audiototext.server.stats import hardware_profile, live_stats
from audiototext.wire._proto import system_pb2, system_pb2_grpc, transcription_pb2

__all__ = ["SystemService"]


class SystemService(system_pb2_grpc.SystemServicer):
    def __init__(
        self,
        store: SessionStore,
        model: str,
        alerts: Callable[[], Sequence[ActiveAlert]] = tuple,
        devices: DeviceProbe = real_probe,
        profile: ProfileKeeper | None = None,
    ) -> None:
        self.store = store
        self.profile = profile
        self.devices = devices
        self.model = model
        self.alerts = alerts
        self._started = time.monotonic()

    async def GetHardware(
        self, request: system_pb2.HardwareRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> system_pb2.HardwareProfile:
        profile, precision = await asyncio.to_thread(hardware_profile)
        devices = await asyncio.to_thread(self.devices)  # probed once, then cached
        report = self.profile.report() if self.profile is not None else None
        rec = report.recommendation if report is not None else None
        return system_pb2.HardwareProfile(
            profile_state=report.state if report else "unread",
            profile_message=report.message if report else "",
            profile_json=json.dumps(report.profile) if report and report.profile else "",
            recommendation=(
                system_pb2.Recommendation(
                    model=rec.model,
                    precision=rec.precision,
                    threads=rec.threads,
                    streams=rec.streams,
                    partial_interval_ms=rec.partial_interval_ms,
                    realtime=rec.realtime,
                    reasons=rec.reasons,
                    profile_created_at=rec.profile_created_at,
                )
                if rec is not None
                else None
            ),
            json=json.dumps(profile.to_json()),
            recommended_precision=precision,
            physical_cores=profile.physical_cores,
            logical_cores=profile.logical_cores,
            providers=list(profile.providers),
            devices=[
                system_pb2.Device(
                    name=d.name,
                    available=d.available,
                    reason=d.reason,
                    providers=list(d.providers),
                )
                for d in devices
            ],
        )

    async def GetStats(
        self, request: system_pb2.StatsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> system_pb2.ServerStats:
        s = live_stats(self.store, self.model, self._started)
        return system_pb2.ServerStats(
            active_streams=s.active_streams,
            detached_streams=s.detached_streams,
            queue_depth=s.queue_depth,
            rtf=s.rtf,
            final_latency_ms_p50=s.final_latency_ms_p50,
            final_latency_ms_p95=s.final_latency_ms_p95,
            overloaded=s.overloaded,
            model=s.model,
            version=s.version,
            uptime_s=s.uptime_s,
            streams_total=s.streams_total,
            alerts=[
                transcription_pb2.Alert(name=a.name, message=a.message, since=a.since)
                for a in self.alerts()
            ],
        )
