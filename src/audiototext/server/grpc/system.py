"""The ``System`` service: the machine's hardware profile and the server's live statistics."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from audiototext._version import __version__
from audiototext.server.sessions import SessionStore
from audiototext.wire._proto import system_pb2, system_pb2_grpc

__all__ = ["SystemService"]


class SystemService(system_pb2_grpc.SystemServicer):
    def __init__(self, store: SessionStore, model: str) -> None:
        self.store = store
        self.model = model
        self._started = time.monotonic()

    async def GetHardware(
        self, request: system_pb2.HardwareRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> system_pb2.HardwareProfile:
        import json

        from audiototext.hardware import detect, pick_precision

        profile = await asyncio.to_thread(detect)
        return system_pb2.HardwareProfile(
            json=json.dumps(profile.to_json()),
            recommended_precision=pick_precision(profile),
            physical_cores=profile.physical_cores,
            logical_cores=profile.logical_cores,
            providers=list(profile.providers),
        )

    async def GetStats(
        self, request: system_pb2.StatsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> system_pb2.ServerStats:
        stats = self.store.recognizer.stats()
        return system_pb2.ServerStats(
            active_streams=self.store.open_count(),
            detached_streams=self.store.detached_count(),
            queue_depth=stats.queue_depth,
            rtf=stats.rtf,
            final_latency_ms_p50=stats.final_latency_ms_p50,
            final_latency_ms_p95=stats.final_latency_ms_p95,
            overloaded=stats.overloaded,
            model=self.model,
            version=__version__,
            uptime_s=time.monotonic() - self._started,
            streams_total=self.store.streams_total,
        )
