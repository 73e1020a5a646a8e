"""The network measurement endpoints and the clients' reports, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from audiototext.server.app import GrpcServer
from audiototext.server.network import DOWNLOAD_MAX_BYTES, NetworkReports, parse_report
from server.fake_engine import FakeRecognizer
from server.grpc_harness import run
from server.ws_harness import http_get, http_server


async def _post(
    srv: GrpcServer, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    assert srv.http is not None
    request = urllib.request.Request(
        f"http://127.0.0.1:{srv.http.port}{path}",
        data=body,
        headers={"Content-Type": "application/octet-stream", **(headers or {})},
        method="POST",
    )

    def fetch() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    return await asyncio.to_thread(fetch)


def test_ping_download_upload_report() -> None:
    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with http_server(FakeRecognizer()) as srv:
            status, headers, body = await http_get(srv, "/api/v1/network/ping")
            out["ping"] = (status, headers.get("cache-control"), json.loads(body))
            status, _, body = await http_get(srv, "/api/v1/network/download?bytes=300000")
            out["download"] = (status, len(body))
            out["download_default"] = len((await http_get(srv, "/api/v1/network/download"))[2])
            out["too_big"] = await http_get(
                srv, f"/api/v1/network/download?bytes={DOWNLOAD_MAX_BYTES + 1}"
            )
            out["upload"] = await _post(srv, "/api/v1/network/upload", b"x" * 500_000)
            report = {
                "client_id": "page-1",
                "session_id": "abc123",
                "rtt_ms": 3.5,
                "download_mbps": 800.0,
                "upload_mbps": 420.5,
            }
            out["report"] = await _post(srv, "/api/v1/network/report", json.dumps(report).encode())
            out["bad"] = await _post(
                srv, "/api/v1/network/report", json.dumps({**report, "rtt_ms": -1}).encode()
            )
            out["not_json"] = await _post(srv, "/api/v1/network/report", b"{rtt")
            out["list"] = json.loads((await http_get(srv, "/api/v1/network"))[2])
            out["profile"] = json.loads((await http_get(srv, "/api/v1/system/profile"))[2])
            out["for_session"] = srv.network.for_session("abc123")
            out["health"] = (await http_get(srv, "/api/v1/health"))[0]
        return out

    out = run(main(), 60)
    status, cache_control, ping = out["ping"]
    assert status == 200 and cache_control == "no-store" and ping["server_time"] > 0
    assert out["download"] == (200, 300_000) and out["download_default"] == 1 << 20
    assert out["too_big"][0] == 400 and b"bytes must be between 1 and" in out["too_big"][2]
    assert out["upload"][0] == 200 and json.loads(out["upload"][1]) == {"bytes": 500_000}
    assert out["report"][0] == 200
    stored = json.loads(out["report"][1])
    assert stored["peer"] == "127.0.0.1" and stored["rtt_ms"] == 3.5
    assert out["bad"][0] == 400 and b"rtt_ms must be between 0" in out["bad"][1]
    assert out["not_json"][0] == 400 and b"not JSON" in out["not_json"][1]
    assert [r["client_id"] for r in out["list"]["reports"]] == ["page-1"]
    assert out["profile"]["network"][0]["download_mbps"] == 800.0
    assert out["for_session"].upload_mbps == 420.5  # what the controller reads
    assert out["health"] == 200  # refusals did not hurt the server


def test_an_upload_over_the_body_limit_is_refused() -> None:
    async def main() -> tuple[int, bytes]:
        async with http_server(FakeRecognizer()) as srv:
            # 8 MiB: more than the socket buffers hold, so urllib is still sending when the
            # server answers (it must read the body first or urllib sees a broken pipe).
            return await _post(srv, "/api/v1/network/upload", b"x" * (8 << 20))

    status, body = run(main(), 60)
    assert status == 413 and b"RESOURCE_EXHAUSTED" in body


def test_the_token_guards_the_measurements() -> None:
    async def main() -> tuple[int, int]:
        async with http_server(FakeRecognizer(), token="s3cret") as srv:
            refused = (await http_get(srv, "/api/v1/network/ping"))[0]
            ok = (await http_get(srv, "/api/v1/network/ping", {"Authorization": "Bearer s3cret"}))[
                0
            ]
            return refused, ok

    assert run(main(), 60) == (401, 200)


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ([], "JSON object"),
        ({"rtt_ms": 1}, "client_id"),
        ({"client_id": "a b", "rtt_ms": 1}, "client_id"),
        ({"client_id": "a", "rtt_ms": "fast"}, "rtt_ms must be a number"),
        ({"client_id": "a", "rtt_ms": float("nan")}, "rtt_ms must be a number"),
        ({"client_id": "a", "rtt_ms": 1, "download_mbps": True}, "download_mbps"),
        ({"client_id": "a", "rtt_ms": 1, "upload_mbps": 1e9}, "upload_mbps must be between"),
        ({"client_id": "a", "rtt_ms": 1, "speed": 3}, "unknown field(s): speed"),
        ({"client_id": "a", "rtt_ms": 1, "session_id": "x/y"}, "session_id"),
    ],
)
def test_malformed_reports_say_which_field(doc: Any, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_report(doc)


def test_reports_keep_the_latest_per_client_and_are_bounded() -> None:
    reports = NetworkReports(capacity=2)
    for i, (client, session) in enumerate([("a", "s1"), ("b", ""), ("a", "s2"), ("c", "s3")]):
        reports.add(parse_report({"client_id": client, "session_id": session, "rtt_ms": i}))
    assert [r.client_id for r in reports.recent()] == ["c", "a"]  # b pushed out
    assert reports.for_session("s1") is None  # a's newer report replaced it
    assert reports.for_session("s2") is not None and reports.for_session("") is None
