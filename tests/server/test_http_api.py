"""The HTTP listener's REST API and page over a real socket, with the engine test double."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc

from audiototext.models.cache import ModelCache
from audiototext.wire._proto import models_pb2, models_pb2_grpc, system_pb2, system_pb2_grpc
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run
from server.ws_harness import http_get, http_server


def _json(body: bytes) -> Any:
    return json.loads(body)


def test_health_reports_serving_model_and_version_without_a_token() -> None:
    async def main() -> tuple[int, Any]:
        async with http_server(FakeRecognizer(), config(http_port=0, token="s3cret")) as srv:
            status, _, body = await http_get(srv, "/api/v1/health")
            return status, _json(body)

    status, body = run(main(), 60)
    assert status == 200
    assert body["status"] == "SERVING"
    assert body["model"] == "tiny.en"
    assert body["version"]


def test_health_says_not_serving_once_shutdown_begins() -> None:
    async def main() -> list[str]:
        seen = []
        async with http_server(FakeRecognizer()) as srv:
            seen.append(_json((await http_get(srv, "/api/v1/health"))[2])["status"])
            srv.serving = False  # what stop() sets first, before finalising streams
            seen.append(_json((await http_get(srv, "/api/v1/health"))[2])["status"])
        return seen

    assert run(main(), 60) == ["SERVING", "NOT_SERVING"]


def test_models_lists_the_cache_like_grpc_models_list(built_cache: Path) -> None:
    async def main() -> tuple[int, Any, models_pb2.ListModelsResponse]:
        cfg = config(http_port=0, cache_root=built_cache)
        async with http_server(FakeRecognizer(), cfg) as srv:
            status, _, body = await http_get(srv, "/api/v1/models")
            async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
                listed = await models_pb2_grpc.ModelsStub(channel).List(
                    models_pb2.ListModelsRequest()
                )
            return status, _json(body), listed

    status, body, listed = run(main(), 60)
    assert status == 200
    assert body["current"] == "tiny.en"
    cached = [m for m in body["models"] if m["cached"]]
    assert {(m["name"], m["precision"]) for m in cached} == {
        (c.name, c.precision) for c in listed.cached
    }
    int8 = next(m for m in cached if m["precision"] == "int8")
    assert int8["name"] == "tiny.en" and int8["current"]
    assert int8["languages"] == ["en"] and not int8["multilingual"]
    assert int8["size_mb"] > 10 and int8["ram_mb"] > 0
    uncached = {m["name"] for m in body["models"] if not m["cached"]}
    assert uncached == {k.name for k in listed.known if not k.cached}
    assert body["cache_dir"] == listed.cache_dir


def test_models_marks_only_the_precision_that_runs_as_current(built_cache: Path) -> None:
    engine = FakeRecognizer()
    engine.model = SimpleNamespace(path=ModelCache(built_cache).find("tiny.en", "int8").path)

    async def main() -> Any:
        async with http_server(engine, config(http_port=0, cache_root=built_cache)) as srv:
            return _json((await http_get(srv, "/api/v1/models"))[2])

    body = run(main(), 60)
    current = {(m["name"], m["precision"]) for m in body["models"] if m["current"]}
    assert current == {("tiny.en", "int8")}


def test_system_has_the_hardware_and_live_stats_of_grpc_system() -> None:
    async def main() -> tuple[int, Any, system_pb2.HardwareProfile, system_pb2.ServerStats]:
        async with http_server(FakeRecognizer()) as srv:
            status, _, body = await http_get(srv, "/api/v1/system")
            async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
                stub = system_pb2_grpc.SystemStub(channel)
                hw = await stub.GetHardware(system_pb2.HardwareRequest())
                stats = await stub.GetStats(system_pb2.StatsRequest())
            return status, _json(body), hw, stats

    status, body, hw, stats = run(main(), 60)
    assert status == 200
    hardware = body["hardware"]
    assert hardware["logical_cores"] == os.cpu_count() == hw.logical_cores
    assert hardware["providers"] == list(hw.providers)
    assert hardware["recommended_precision"] == hw.recommended_precision
    assert hardware["cpu_model"] and hardware["memory_total_mb"] > 0
    live = body["stats"]
    assert live["active_streams"] == stats.active_streams == 0
    assert live["model"] == stats.model == "tiny.en"
    assert {"rtf", "final_latency_ms_p95", "detached_streams", "queue_depth"} <= set(live)


def test_token_guards_the_api_by_header_or_query() -> None:
    async def main() -> dict[str, tuple[int, Any]]:
        out = {}
        async with http_server(FakeRecognizer(), config(http_port=0, token="s3cret")) as srv:
            for name, path, headers in (
                ("none", "/api/v1/models", {}),
                ("wrong", "/api/v1/system", {"Authorization": "Bearer nope"}),
                ("header", "/api/v1/system", {"Authorization": "Bearer s3cret"}),
                ("query", "/api/v1/system?token=s3cret", {}),
            ):
                status, _, body = await http_get(srv, path, headers)
                out[name] = (status, _json(body))
        return out

    out = run(main(), 60)
    assert out["none"][0] == 401
    assert out["none"][1]["error"]["code"] == "UNAUTHENTICATED"
    assert "Authorization: Bearer" in out["none"][1]["error"]["message"]
    assert out["wrong"][0] == 401
    assert "not valid" in out["wrong"][1]["error"]["message"]
    assert out["header"][0] == 200 and out["query"][0] == 200


def test_page_served_from_the_web_folder(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>audiototext</title>")
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "app.js").write_text("export const x = 1;\n")

    async def main() -> dict[str, tuple[int, dict[str, str], bytes]]:
        async with http_server(FakeRecognizer(), config(http_port=0, web_dir=tmp_path)) as srv:
            return {p: await http_get(srv, p) for p in ("/", "/js/app.js", "/static/js/app.js")}

    out = run(main(), 60)
    status, headers, body = out["/"]
    assert status == 200 and b"<title>audiototext</title>" in body
    assert headers["content-type"].startswith("text/html")
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["cross-origin-embedder-policy"] == "require-corp"
    for path in ("/js/app.js", "/static/js/app.js"):
        assert out[path][0] == 200 and out[path][2] == b"export const x = 1;\n"


def test_no_page_is_a_clear_404_and_the_api_still_works(tmp_path: Path) -> None:
    async def main() -> dict[str, tuple[int, Any]]:
        async with http_server(FakeRecognizer(), config(http_port=0, web_dir=tmp_path)) as srv:
            return {
                p: ((r := await http_get(srv, p))[0], _json(r[2]))
                for p in ("/", "/nothing/here", "/api/v1/health")
            }

    out = run(main(), 60)
    status, body = out["/"]
    assert status == 404
    assert body["error"]["code"] == "NOT_FOUND"
    assert "web page is not installed" in body["error"]["message"]
    assert str(tmp_path) in body["error"]["message"]
    assert out["/nothing/here"][0] == 404
    assert "/api/v1" in out["/nothing/here"][1]["error"]["message"]
    assert out["/api/v1/health"][0] == 200


def test_state_changing_requests_from_another_origin_are_refused() -> None:
    async def main() -> dict[str, tuple[int, Any]]:
        async with http_server(FakeRecognizer()) as srv:
            assert srv.http is not None
            own = f"http://127.0.0.1:{srv.http.port}"
            out = {}
            for name, method, origin in (
                ("foreign post", "POST", "http://evil.example"),
                ("foreign delete", "DELETE", "http://127.0.0.1:1"),
                ("own post", "POST", own),
                ("foreign get", "GET", "http://evil.example"),
            ):
                status, _, body = await http_get(
                    srv, "/api/v1/health", {"Origin": origin}, method=method
                )
                out[name] = (status, _json(body))
            return out

    out = run(main(), 60)
    for name in ("foreign post", "foreign delete"):
        status, body = out[name]
        assert status == 403, name
        assert body["error"]["code"] == "PERMISSION_DENIED"
        assert "refused" in body["error"]["message"]
    # The server's own page passes the check (and meets the route's method rule).
    assert out["own post"][0] == 405
    assert out["own post"][1]["error"]["code"] == "UNIMPLEMENTED"
    assert out["foreign get"][0] == 200  # reads are guarded by the browser's CORS rules


def test_openapi_document_describes_the_api() -> None:
    async def main() -> Any:
        async with http_server(FakeRecognizer()) as srv:
            status, _, body = await http_get(srv, "/openapi.json")
            assert status == 200
            return _json(body)

    doc = run(main(), 60)
    assert {"/api/v1/health", "/api/v1/models", "/api/v1/system"} <= set(doc["paths"])
    assert (
        "WebSocket" in doc["info"]["description"] or "/api/v1/stream" in doc["info"]["description"]
    )


def test_http_port_in_use_is_a_clear_error() -> None:
    import socket

    from audiototext.errors import ConfigError
    from audiototext.server.app import GrpcServer

    async def main() -> str:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            server = GrpcServer(config(http_port=port), recognizer=FakeRecognizer())
            try:
                await server.start()
            except ConfigError as exc:
                return str(exc)
            await server.stop(1)
            return "started"

    message = run(main(), 60)
    assert "--http-port" in message and "cannot listen" in message


def test_tls_files_serve_https(tmp_path: Path) -> None:
    import ssl
    import urllib.request

    from server.grpc_harness import self_signed_cert

    cert, key = self_signed_cert(tmp_path)

    async def main() -> tuple[str, Any]:
        cfg = config(http_port=0, http_host="127.0.0.1", tls_cert=cert, tls_key=key)
        async with http_server(FakeRecognizer(), cfg) as srv:
            assert srv.http is not None
            url = f"https://localhost:{srv.http.port}/api/v1/health"
            context = ssl.create_default_context(cafile=str(cert))

            def fetch() -> bytes:
                with urllib.request.urlopen(url, context=context, timeout=30) as r:
                    body: bytes = r.read()
                    return body

            return srv.http.url, _json(await asyncio.to_thread(fetch))

    url, body = run(main(), 60)
    assert url.startswith("https://")
    assert body["status"] == "SERVING"
