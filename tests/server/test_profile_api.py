"""The performance profile through the server: REST and gRPC give the same recommendation, a
corrupt file is named and the server serves on, and a rebuild runs at low priority."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import grpc
import pytest

from audiototext.hardware.detect import detect
from audiototext.hardware.profile import (
    Measurement,
    PerformanceProfile,
    fingerprint,
    profile_path,
    save_profile,
)
from audiototext.hardware.recommend import recommend
from audiototext.models.cache import ModelCache
from audiototext.server.perf_profile import ProfileKeeper
from audiototext.wire._proto import system_pb2, system_pb2_grpc
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run
from server.ws_harness import http_get, http_server


def _made_up_profile(cache: ModelCache) -> PerformanceProfile:
    """Figures made up, the fingerprint this machine's and this cache's: a fresh profile."""
    entries, _ = cache.scan()
    return PerformanceProfile(
        fingerprint=fingerprint(detect(), entries),
        created_at="2026-12-07T12:00:00+00:00",
        elapsed_s=9.0,
        budget_s=45.0,
        usable_cores=4,
        measurements=(
            Measurement("tiny.en", "int8", "v", 1, 4.0, 0.06, 0.03, 5, 39.0, 200),
            Measurement("tiny.en", "fp32", "v", 1, 4.0, 0.16, 0.09, 5, 39.0, 200),
            Measurement("tiny.en", "fp32", "v", 4, 4.0, 0.07, 0.04, 5, 39.0, 200),
        ),
    )


async def _grpc_hardware(port: int) -> system_pb2.HardwareProfile:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply: system_pb2.HardwareProfile = await system_pb2_grpc.SystemStub(channel).GetHardware(
            system_pb2.HardwareRequest()
        )
        return reply


def test_rest_and_grpc_give_the_same_recommendation(filled_cache: ModelCache) -> None:
    profile = _made_up_profile(filled_cache)
    save_profile(profile, profile_path(filled_cache.root))
    expected = recommend(profile)
    assert expected is not None

    async def main() -> tuple[Any, Any, system_pb2.HardwareProfile]:
        cfg = config(http_port=0, cache_root=filled_cache.root)
        async with http_server(FakeRecognizer(), cfg) as srv:
            full = json.loads((await http_get(srv, "/api/v1/system/profile"))[2])
            system = json.loads((await http_get(srv, "/api/v1/system"))[2])
            return full, system, await _grpc_hardware(srv.port)

    full, system, hw = run(main(), 120)
    rest = full["profile"]["recommendation"]
    assert rest == expected.to_json()
    assert system["profile"]["recommendation"] == rest and system["profile"]["state"] == "fresh"
    assert hw.profile_state == "fresh" and hw.HasField("recommendation")
    g = hw.recommendation
    assert (g.model, g.precision, g.threads, g.streams, g.partial_interval_ms, g.realtime) == (
        rest["model"],
        rest["precision"],
        rest["threads"],
        rest["streams"],
        rest["partial_interval_ms"],
        rest["realtime"],
    )
    assert dict(g.reasons) == rest["reasons"]
    assert json.loads(hw.profile_json)["measurements"] == full["profile"]["profile"]["measurements"]
    # the rest of the document: the machine now, and the hardware with its container limits
    assert full["now"]["disk_free_mb"] > 0 and full["now"]["cache_dir"] == str(filled_cache.root)
    assert "reason" in full["now"]["nvidia"]
    assert full["hardware"]["cgroup"]["cgroup_version"] in (0, 1, 2)
    assert full["hardware"]["usable_cores"] >= 1


def test_a_corrupt_profile_is_named_and_the_server_serves_on(
    filled_cache: ModelCache, caplog: pytest.LogCaptureFixture
) -> None:
    path = profile_path(filled_cache.root)
    path.write_bytes(b"\x00\x01 not a profile")

    async def main() -> tuple[Any, int, system_pb2.HardwareProfile]:
        cfg = config(http_port=0, cache_root=filled_cache.root)
        async with http_server(FakeRecognizer(), cfg) as srv:
            full = json.loads((await http_get(srv, "/api/v1/system/profile"))[2])
            health = (await http_get(srv, "/api/v1/health"))[0]
            return full, health, await _grpc_hardware(srv.port)

    with caplog.at_level(logging.WARNING):
        full, health, hw = run(main(), 120)
    assert health == 200
    assert full["profile"]["state"] == "corrupt" and full["profile"]["recommendation"] is None
    assert str(path) in full["profile"]["message"]
    assert hw.profile_state == "corrupt" and not hw.HasField("recommendation")
    assert any(str(path) in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def _nice_of(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[16])  # field 19 of stat, counted after the command name


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_stale_profile_is_rebuilt_in_a_low_priority_child(filled_cache: ModelCache) -> None:
    """The real benchmark of tiny.en, in ``doctor --benchmark --low-priority`` started by the
    server's profile keeper: the child runs at nice 19 and the keeper reads its result."""
    profile = _made_up_profile(filled_cache)
    stale = PerformanceProfile(
        {**profile.fingerprint, "onnxruntime": "0.0.1"},
        profile.created_at,
        1.0,
        1.0,
        1,
        profile.measurements,
    )
    save_profile(stale, profile_path(filled_cache.root))

    async def main() -> tuple[str, list[int | None], Any]:
        keeper = ProfileKeeper(filled_cache.root, rebuild=True, budget_s=3)
        await keeper.start()
        first = keeper.report().state
        nices: list[int | None] = []
        while keeper.child is None:
            await asyncio.sleep(0.01)
        while keeper.child.returncode is None:
            nices.append(_nice_of(keeper.child.pid))
            await asyncio.sleep(0.2)
        await keeper.wait_rebuilt()
        report = keeper.report()
        await keeper.stop()
        return first, nices, report

    first, nices, report = run(main(), 240)
    assert first == "stale"
    assert 19 in nices  # once the child has reniced itself, before the timing starts
    assert report.state == "fresh" and report.recommendation is not None and not report.rebuilding
    assert report.profile is not None and report.profile["fingerprint"] == fingerprint(
        detect(), filled_cache.scan()[0]
    )
