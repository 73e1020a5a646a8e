"""``GET /metrics`` with the engine test double: names, types, and the plumbing behind them
(streams over the WebSocket, gRPC and HTTP requests, errors, model loads, alerts, token)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import grpc
import pytest
import websockets

from audiototext.errors import ConfigError
from audiototext.server.alerts import AlertSettings
from audiototext.server.app import GrpcServer
from audiototext.server.metrics import _Arrivals
from audiototext.wire._proto import system_pb2, system_pb2_grpc
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run
from server.metrics_harness import Scrape, scrape, tones
from server.ws_harness import PCM16_CONFIG, WsStreamer, exchange, http_get, http_server, ws_url

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "audiototext.json"

# Every metric the server exports, with its type (as prometheus_client's parser names it).
EXPECTED = {
    "audiototext_build_info": "gauge",
    "audiototext_streams_active": "gauge",
    "audiototext_streams_detached": "gauge",
    "audiototext_streams_started": "counter",
    "audiototext_audio_received_seconds": "counter",
    "audiototext_audio_processed_seconds": "counter",
    "audiototext_realtime_factor": "gauge",
    "audiototext_queue_depth": "gauge",
    "audiototext_engine_overloaded": "gauge",
    "audiototext_partial_interval_scale": "gauge",
    "audiototext_partials_dropped": "counter",
    "audiototext_finals": "counter",
    "audiototext_first_partial_seconds": "histogram",
    "audiototext_final_latency_seconds": "histogram",
    "audiototext_model_loads": "counter",
    "audiototext_model_load_seconds": "histogram",
    "audiototext_errors": "counter",
    "audiototext_http_requests": "counter",
    "audiototext_http_request_duration_seconds": "histogram",
    "audiototext_grpc_requests": "counter",
    "audiototext_alert": "gauge",
    "audiototext_memory_available_bytes": "gauge",
    "audiototext_cache_disk_free_bytes": "gauge",
    "audiototext_gpu_memory_used_bytes": "gauge",  # samples only with nvidia-smi
    "audiototext_gpu_memory_total_bytes": "gauge",
    "audiototext_gpu_utilization_ratio": "gauge",
    "process_cpu_seconds": "counter",
    "process_resident_memory_bytes": "gauge",
}


async def get_stats(srv: GrpcServer, token: str | None = None) -> grpc.StatusCode:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
        stub: Any = system_pb2_grpc.SystemStub(channel)
        try:
            await stub.GetStats(system_pb2.StatsRequest(), metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            code: grpc.StatusCode = exc.code()
            return code
    return grpc.StatusCode.OK


def test_every_metric_has_its_name_and_type_and_no_per_session_label() -> None:
    async def main() -> Scrape:
        async with http_server(FakeRecognizer(), config(http_port=0)) as srv:
            await WsStreamer(ws_url(srv)).run(tones(1), speed=None)
            await get_stats(srv)
            return await scrape(srv)

    got = run(main(), 120)
    types = {name: f.type for name, f in got.families.items()}
    for name, kind in EXPECTED.items():
        assert types.get(name) == kind, (name, types.get(name))
    for name in types:
        assert name.startswith(("audiototext_", "process_")), name
    labels = {k for f in got.families.values() for s in f.samples for k in s.labels}
    assert not {k for k in labels if "session" in k or k in ("id", "stream")}, labels
    # Counters carry _total on the wire, and durations are in seconds.
    assert "audiototext_audio_received_seconds_total" in got.sample_names()
    assert "audiototext_grpc_requests_total" in got.sample_names()
    assert (
        got.value(
            "audiototext_build_info",
            version=got.families["audiototext_build_info"].samples[0].labels["version"],
            model="tiny.en",
        )
        == 1
    )


def test_a_stream_is_counted_audio_latencies_requests_and_calls() -> None:
    audio = tones(2)

    async def main() -> tuple[Scrape, Scrape]:
        async with http_server(FakeRecognizer(), config(http_port=0)) as srv:
            before = await scrape(srv)
            out = await WsStreamer(ws_url(srv)).run(audio, speed=None)
            assert len(out.finals) == 2 and out.partials
            assert await http_get(srv, "/api/v1/health") is not None
            assert await get_stats(srv) == grpc.StatusCode.OK
            # The session leaves the store after its grace period: the counters stay.
            srv.store.remove(srv.store.sessions()[0])  # type: ignore[union-attr]
            return before, await scrape(srv)

    before, after = run(main(), 120)
    duration = audio.shape[0] / 16000
    assert before.value("audiototext_audio_received_seconds_total") == 0
    assert after.value("audiototext_audio_received_seconds_total") == pytest.approx(duration)
    assert after.value("audiototext_audio_processed_seconds_total") == pytest.approx(duration)
    assert after.value("audiototext_streams_started_total") == 1
    assert after.value("audiototext_streams_active") == 0
    assert after.value("audiototext_final_latency_seconds_count") == 2
    assert after.value("audiototext_first_partial_seconds_count") == 2
    assert after.value("audiototext_final_latency_seconds_sum") >= 0
    assert (
        after.value(
            "audiototext_http_requests_total", method="GET", route="/api/v1/health", status="200"
        )
        == 1
    )
    assert after.value("audiototext_http_requests_total", method="GET", route="/metrics",
                       status="200") == 1  # fmt: skip
    assert (
        after.value(
            "audiototext_grpc_requests_total",
            method="/audiototext.v1.System/GetStats",
            code="OK",
        )
        == 1
    )


def test_refused_streams_and_calls_are_counted_by_code() -> None:
    async def main() -> Scrape:
        async with http_server(FakeRecognizer(), config(http_port=0)) as srv:
            _, close, _ = await exchange(ws_url(srv), [b"\x00\x00"])  # audio before config
            assert close == 1008
            await http_get(srv, "/api/v1/nothing-here")
            return await scrape(srv)

    got = run(main(), 60)
    assert got.value("audiototext_errors_total", kind="stream", code="INVALID_ARGUMENT") == 1
    assert got.value("audiototext_http_requests_total", method="GET", route="other",
                     status="404") == 1  # fmt: skip


def test_with_a_token_metrics_needs_it_and_refused_calls_count() -> None:
    async def main() -> tuple[int, int, int, Scrape]:
        async with http_server(FakeRecognizer(), config(http_port=0, token="t0k")) as srv:
            without, _, _ = await http_get(srv, "/metrics")
            wrong, _, _ = await http_get(srv, "/metrics", {"Authorization": "Bearer nope"})
            query, _, _ = await http_get(srv, "/metrics?token=t0k")
            assert await get_stats(srv) == grpc.StatusCode.UNAUTHENTICATED
            assert await get_stats(srv, "t0k") == grpc.StatusCode.OK
            return without, wrong, query, await scrape(srv, {"Authorization": "Bearer t0k"})

    without, wrong, query, got = run(main(), 60)
    assert (without, wrong, query) == (401, 401, 200)
    method = "/audiototext.v1.System/GetStats"
    assert got.value("audiototext_grpc_requests_total", method=method, code="UNAUTHENTICATED") == 1
    assert got.value("audiototext_grpc_requests_total", method=method, code="OK") == 1


def test_no_metrics_means_no_endpoint() -> None:
    async def main() -> int:
        async with http_server(FakeRecognizer(), config(http_port=0, metrics=False)) as srv:
            await WsStreamer(ws_url(srv)).run(tones(1), speed=None)
            status, _, _ = await http_get(srv, "/metrics")
            return status

    assert run(main(), 60) == 404


def test_two_servers_in_one_process_keep_their_own_registries() -> None:
    async def main() -> tuple[Scrape, Scrape]:
        async with (
            http_server(FakeRecognizer(), config(http_port=0)) as one,
            http_server(FakeRecognizer(), config(http_port=0)) as two,
        ):
            await WsStreamer(ws_url(one)).run(tones(1), speed=None)
            return await scrape(one), await scrape(two)

    one, two = run(main(), 60)
    assert one.value("audiototext_streams_started_total") == 1
    assert two.value("audiototext_streams_started_total") == 0


def test_a_failed_model_load_is_counted_and_raises_its_alert() -> None:
    def broken(_: Any) -> Any:
        raise OSError("the model cache is not readable")

    async def main() -> GrpcServer:
        srv = GrpcServer(config(http_port=0), recognizer_factory=broken)
        with pytest.raises(OSError, match="not readable"):
            await srv.start()
        return srv

    srv = run(main(), 60)
    assert srv.metrics is not None and srv.alerts is not None
    got = Scrape(srv.metrics.exposition())
    assert got.value("audiototext_model_loads_total", model="tiny.en", result="error") == 1
    assert got.value("audiototext_model_load_seconds_count", model="tiny.en") == 1
    assert got.value("audiototext_errors_total", kind="model_load", code="INTERNAL") == 1
    srv.alerts.check()
    (alert,) = srv.alerts.active()
    assert alert.name == "model_load_failed" and "not readable" in alert.message


def test_alerts_reach_the_metric_rest_system_and_the_streams() -> None:
    """Free memory is always under 2^30 MB: memory_low is raised at the first check."""
    settings = AlertSettings(min_free_memory_mb=1 << 30, raise_after_s=0)

    async def first_metrics(url: str) -> dict[str, Any]:
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"config": PCM16_CONFIG}))
            await ws.send(b"\x00" * 3200)
            async with asyncio.timeout(30):
                async for raw in ws:
                    message = json.loads(raw)
                    if "metrics" in message:
                        metrics: dict[str, Any] = message["metrics"]
                        return metrics
        raise AssertionError("the stream closed before a Metrics message")

    async def main() -> tuple[Scrape, Any, dict[str, Any], Any]:
        async with http_server(FakeRecognizer(), config(http_port=0, alerts=settings)) as srv:
            for _ in range(100):  # the first check runs as the server starts
                _, _, body = await http_get(srv, "/api/v1/system")
                if json.loads(body)["alerts"]:
                    break
                await asyncio.sleep(0.05)
            metrics = await first_metrics(ws_url(srv))
            async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
                stub: Any = system_pb2_grpc.SystemStub(channel)
                stats = await stub.GetStats(system_pb2.StatsRequest())
            return await scrape(srv), json.loads(body), metrics, stats

    got, system, metrics, stats = run(main(), 60)
    assert got.value("audiototext_alert", name="memory_low") == 1
    assert got.value("audiototext_alert", name="engine_overloaded") == 0
    (alert,) = system["alerts"]
    assert alert["name"] == "memory_low" and "--alert-min-free-memory-mb" in alert["message"]
    assert alert["since"] > 1.6e9
    assert [a["name"] for a in metrics["alerts"]] == ["memory_low"]
    assert "--alert-min-free-memory-mb" in metrics["alerts"][0]["message"]
    assert [(a.name, a.since) for a in stats.alerts] == [("memory_low", alert["since"])]


def test_absurd_metrics_interval_is_refused_naming_the_setting() -> None:
    for bad in (0.0, -1.0, 1e9):
        with pytest.raises(ConfigError, match="--metrics-interval"):
            config(metrics_interval_s=bad)


def test_arrivals_find_the_chunk_that_held_a_moment_of_audio() -> None:
    arrivals = _Arrivals()
    for i in range(1, 11):  # chunk i holds (i-1)/10 .. i/10 s, arrived at t = 100 + i
        arrivals.note(i / 10, 100.0 + i)
    assert arrivals.arrival(0.0) == 101.0
    assert arrivals.arrival(0.25) == 103.0
    assert arrivals.arrival(0.3) == 103.0
    assert arrivals.arrival(5.0) == 110.0  # beyond the last: the last chunk
    for i in range(11, 4000):  # 400 s more: old arrivals are dropped in bulk
        arrivals.note(i / 10, 100.0 + i)
    assert len(arrivals.ends) < 2500
    assert arrivals.arrival(0.1) is None
    assert arrivals.arrival(399.95) == 100.0 + 3999


_METRIC = re.compile(r"\b((?:audiototext|process)_[a-z0-9_]+)\b")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_info")


def dashboard_metrics() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"]]
    assert len(exprs) > 15
    return {m for e in exprs for m in _METRIC.findall(e)}


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    async def main() -> Scrape:
        async with http_server(FakeRecognizer(), config(http_port=0)) as srv:
            await WsStreamer(ws_url(srv)).run(tones(1), speed=None)
            return await scrape(srv)

    got = run(main(), 60)
    names = got.sample_names()
    families = set(got.families)
    for metric in sorted(dashboard_metrics()):
        base = next((metric[: -len(s)] for s in _SUFFIXES if metric.endswith(s)), metric)
        # A labelled family with no sample yet (no model load with an injected engine) still
        # has its TYPE line: it exists, and samples come with the first event.
        assert metric in names or base in families or metric in families, metric
