"""The controller inside a real server: the cheaper model it picks from the real cache, the
bit-rate cap that reaches the real client through Acks, the GPU fallback alert, its REST
timeline and metric, and background pulls at a low OS priority."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audiototext.client import AsyncClient, StreamSettings
from audiototext.server.alerts import AlertMonitor, AlertProbes, AlertSettings
from audiototext.server.background import BACKGROUND_NICE, run_in_background
from audiototext.server.control_policy import ControlSettings
from audiototext.server.controller import Controller
from audiototext.server.pool import ModelPool, cache_resolver
from audiototext.streaming.types import EngineStats
from server.fake_engine import FakeRecognizer
from server.grpc_harness import run
from server.ws_harness import http_get, http_server


class Clock:
    def __init__(self) -> None:
        self.t = 500.0

    def __call__(self) -> float:
        return self.t


class OverloadedEngine(FakeRecognizer):
    """The fake engine reporting overload (the real one's figures are tested elsewhere)."""

    overloaded = False

    def stats(self) -> EngineStats:
        return replace(super().stats(), overloaded=self.overloaded)


def test_new_streams_get_the_cached_int8_while_fp32_is_overloaded(built_cache: Path) -> None:
    clock = Clock()
    default = cache_resolver(built_cache, "fp32")("tiny.en")
    assert default.key.precision == "fp32"
    engine = OverloadedEngine()

    async def main() -> list[Any]:
        pool = ModelPool(
            default=default,
            resolver=cache_resolver(built_cache, "fp32"),
            loader=lambda c: FakeRecognizer(),
            budget_mb=10_000,
        )
        pool.add(default, engine, pinned=True, owned=False)
        settings = ControlSettings(fallback_after_s=3.0, restore_after_s=5.0)
        controller = Controller(pool, settings, max_batch=8, cache_root=built_cache, clock=clock)
        picks = []
        engine.overloaded = True
        for _ in range(5):  # 0..4 s: the fallback rises at 3 s
            picks.append((await controller.substitute(default, None, "transcribe")).key)
            controller.tick()
            clock.t += 1.0
        picks.append((await controller.substitute(default, None, "transcribe")).key)
        # Another model than the default keeps its own: only the default's load is measured.
        other = replace(default, key=replace(default.key, name="base.en"))
        picks.append((await controller.substitute(other, None, "transcribe")).key)
        engine.overloaded = False
        for _ in range(7):
            controller.tick()
            clock.t += 1.0
        picks.append((await controller.substitute(default, None, "transcribe")).key)
        return [picks, controller.status()]

    picks, status = run(main(), 60)
    assert all(p.name == "tiny.en" for p in picks[:6])
    precisions = [k.precision for k in picks]
    assert precisions[:4] == ["fp32"] * 4  # until overload held 3 s: the default
    assert precisions[4:6] == ["int8", "int8"]  # then moved to the cached int8 entry
    assert picks[6].name == "base.en"  # only streams on the default model are moved
    assert precisions[7] == "fp32"  # restored
    actions = [e["action"] for e in status["timeline"]]
    assert actions == ["model_fallback", "model_restored"], status
    assert status["actions_total"] == {"model_fallback": 1, "model_restored": 1}
    assert status["state"]["threads_adjustable"] is False


def test_a_slow_link_makes_the_client_compress_through_acks() -> None:
    engine = FakeRecognizer(speed=50.0)
    audio = (0.1 * np.sin(np.arange(16_000 * 6) / 9.0)).astype(np.float32)

    async def main() -> tuple[list[str], dict[str, int], list[int]]:
        async with http_server(engine) as server:
            controller = server.controller
            assert controller is not None
            async with AsyncClient(f"127.0.0.1:{server.port}") as client:
                stream = await client.stream(StreamSettings(compression="auto"))
                caps = []
                for i in range(0, audio.shape[0], 1600):
                    if i == 16_000:  # after a second: the link is measured at 100 kbit/s
                        controller.report_link(stream.session_id, 100_000)
                        controller.tick()
                        caps.append(controller.bitrate_cap(stream.session_id))
                    await stream.send(audio[i : i + 1600])
                    await asyncio.sleep(0.02)
                await stream.finish()
                async for _ in stream.results():
                    pass
                await stream.close()
                timeline = [e.action for e in controller.timeline]
                assert "compression" in timeline
                return list(stream.stats.switches), dict(stream.stats.encodings), caps

    switches, encodings, caps = run(main(), 60)
    assert caps == [32_000]
    assert switches and switches[0] == "OPUS@32k", switches
    assert encodings.get("PCM16", 0) > 0 and encodings.get("OPUS@32k", 0) > 0, encodings


def test_gpu_fallback_raises_the_alert_and_is_recorded(built_cache: Path) -> None:
    clock = Clock()
    default = cache_resolver(built_cache, "int8")("tiny.en")
    gpu_choice = replace(default, key=replace(default.key, device="gpu"))
    engine = FakeRecognizer()
    fell_back = FakeRecognizer()
    part = type(
        "Session",
        (),
        {"fallback_reason": "running on CUDAExecutionProvider failed: CUDA out of memory"},
    )()
    fell_back.model = type("Model", (), {"encoder": part, "decoder": part})()
    alerts = AlertMonitor(
        AlertSettings(min_free_memory_mb=0, min_free_disk_mb=0),
        AlertProbes(lambda: False, lambda: 1e12, lambda: 1e12),
        clock=clock,
    )

    async def main() -> Controller:
        pool = ModelPool(
            default=default,
            resolver=cache_resolver(built_cache, "int8"),
            loader=lambda c: FakeRecognizer(),
            budget_mb=10_000,
        )
        pool.add(default, engine, pinned=True, owned=False)
        pool.add(gpu_choice, fell_back, pinned=False, owned=False)
        controller = Controller(pool, ControlSettings(), max_batch=8, alerts=alerts, clock=clock)
        controller.tick()
        controller.tick()  # reported once, not per tick
        return controller

    controller = run(main(), 30)
    assert [e.action for e in controller.timeline] == ["gpu_to_cpu"]
    assert "CUDA out of memory" in controller.timeline[0].reason
    alerts.check()
    (alert,) = alerts.active()
    assert alert.name == "gpu_fallback" and "tiny.en (int8) runs on the CPU" in alert.message


def test_rest_timeline_metric_and_no_controller() -> None:
    engine = FakeRecognizer()

    async def main() -> tuple[dict[str, Any], str, int, str]:
        async with http_server(engine) as server:
            assert server.controller is not None
            server.controller.report_link("some-session", 50_000)
            server.controller.tick()
            status, _, body = await http_get(server, "/api/v1/system/controller")
            assert status == 200, body
            _, _, metrics = await http_get(server, "/metrics")
        async with http_server(engine, controller=False) as server:
            off, _, off_body = await http_get(server, "/api/v1/system/controller")
        return json.loads(body), metrics.decode(), off, off_body.decode()

    body, metrics, off, off_body = run(main(), 60)
    (entry,) = body["timeline"]
    assert entry["action"] == "compression" and "50 kbit/s" in entry["reason"]
    assert body["state"]["compressed_streams"] == 1
    assert body["state"]["batch_limit"] == 8 and body["state"]["fallback_active"] is False
    assert 'audiototext_controller_actions_total{action="compression"} 1.0' in metrics
    assert off == 501 and "--no-controller" in off_body


def test_a_page_network_report_with_a_session_reaches_the_controller() -> None:
    """POST /api/v1/network/report naming a stream: its upload speed is the stream's link."""
    import urllib.request

    engine = FakeRecognizer()

    def post(port: int, doc: dict[str, Any]) -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/network/report",
            data=json.dumps(doc).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            return int(r.status)

    async def main() -> tuple[int, int, int]:
        async with http_server(engine) as server:
            controller = server.controller
            assert controller is not None and server.http is not None
            port = server.http.port
            slow = {"client_id": "page-a", "session_id": "s-slow", "rtt_ms": 30, "upload_mbps": 0.1}
            fast = {"client_id": "page-b", "session_id": "s-fast", "rtt_ms": 3, "upload_mbps": 50}
            for doc in (slow, fast, {"client_id": "page-c", "rtt_ms": 5, "upload_mbps": 0.1}):
                assert await asyncio.to_thread(post, port, doc) == 200
            controller.tick()
            return (
                controller.bitrate_cap("s-slow"),
                controller.bitrate_cap("s-fast"),
                len(controller.timeline),
            )

    slow_cap, fast_cap, actions = run(main(), 60)
    assert slow_cap == 32_000 and fast_cap == 0 and actions == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_background_jobs_run_at_a_lower_priority_and_so_do_their_threads() -> None:
    def nice_of_this_thread() -> tuple[int, int]:
        own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        child: list[int] = []
        t = threading.Thread(
            target=lambda: child.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        )
        t.start()
        t.join()
        return own, child[0]

    def fails() -> None:
        raise ValueError("the conversion failed")

    async def main() -> tuple[tuple[int, int], int]:
        got = await run_in_background("test", nice_of_this_thread)
        with pytest.raises(ValueError, match="conversion failed"):
            await run_in_background("test", fails)
        # The loop's own threads are untouched.
        here = await asyncio.to_thread(
            lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        )
        return got, here

    (own, child), here = run(main(), 30)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert own == min(19, base + BACKGROUND_NICE) and child == own
    assert here == base
