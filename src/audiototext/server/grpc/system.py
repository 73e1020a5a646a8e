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
    ) -> None:
        self.store = store
        self.devices = devices
        self.model = model
        self.alerts = alerts
        self._started = time.monotonic()

    async def GetHardware(
        self, request: system_pb2.HardwareRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> system_pb2.HardwareProfile:
        profile, precision = await asyncio.to_thread(hardware_profile)
        devices = await asyncio.to_thread(self.devices)  # probed once, then cached
        return system_pb2.HardwareProfile(
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
