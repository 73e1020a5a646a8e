"""HTTPS and ``--self-signed``: the certificate (names, reuse, renewal), and one server whose
page, REST API, WebSocket and gRPC all run over TLS with it, checked against it as the CA."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import websockets
from cryptography import x509

from audiototext.server import tls
from audiototext.server.addresses import machine_addresses, openable_hosts
from audiototext.server.app import GrpcServer
from audiototext.wire._proto import system_pb2, system_pb2_grpc
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run, speech_like
from server.upload_harness import DecodingTranscriber, multipart, upload_server
from server.ws_harness import PCM16_CONFIG, pcm16_frames
from support.speech import SAMPLE_RATE_HZ, write_wav


def _sans(cert_path: Path) -> tuple[set[str], set[str]]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(san.get_values_for_type(x509.DNSName))
    ips = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    return dns, ips


def test_the_certificate_names_this_machine_and_is_reused_while_it_fits(tmp_path: Path) -> None:
    hosts = tls.certificate_hosts("0.0.0.0", "192.0.2.7")
    first = tls.ensure_self_signed(hosts, tmp_path)
    dns, ips = _sans(first.cert)
    assert "localhost" in dns
    assert {"127.0.0.1", "::1", "192.0.2.7", *machine_addresses()} == ips
    assert "0.0.0.0" not in ips
    assert not first.reused and len(first.fingerprint.split(":")) == 32
    assert first.key.stat().st_mode & 0o077 == 0  # the key is the user's alone
    stamp = first.cert.stat().st_mtime_ns

    again = tls.ensure_self_signed(hosts, tmp_path)
    assert again.reused and again.fingerprint == first.fingerprint
    assert first.cert.stat().st_mtime_ns == stamp

    # Another address: a new certificate that names it.
    moved = tls.ensure_self_signed([*hosts, "198.51.100.9"], tmp_path)
    assert not moved.reused and moved.fingerprint != first.fingerprint
    assert "198.51.100.9" in _sans(moved.cert)[1]

    # A week before it expires, it is renewed.
    late = dt.datetime.now(dt.UTC) + dt.timedelta(days=tls.VALID_DAYS - 3)
    renewed = tls.ensure_self_signed([*hosts, "198.51.100.9"], tmp_path, now=late)
    assert not renewed.reused

    # A damaged file is replaced, not an error.
    renewed.cert.write_text("not a certificate")
    assert not tls.ensure_self_signed(hosts, tmp_path).reused


def test_page_urls_are_ones_a_person_can_open() -> None:
    assert openable_hosts("127.0.0.1") == ["127.0.0.1"]
    wild = openable_hosts("0.0.0.0")
    assert wild[0] == "localhost" and "0.0.0.0" not in wild
    assert all(ipaddress.ip_address(h).version == 4 for h in wild[1:])
    assert set(wild[1:]) == {a for a in machine_addresses() if ":" not in a}


def _context(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def _fetch(
    url: str, cert: Path, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(request, context=_context(cert), timeout=30) as r:
        return r.status, r.read()


def test_self_signed_serves_https_wss_and_grpcs_and_the_second_start_reuses_it(
    tmp_path: Path,
) -> None:
    wav = write_wav(tmp_path / "t.wav", speech_like(2.0, seed=5), SAMPLE_RATE_HZ).read_bytes()
    cfg = config(http_port=0, self_signed=True, cache_root=tmp_path / "cache")

    async def session(srv: GrpcServer) -> dict[str, Any]:
        assert srv.http is not None and srv.tls is not None
        cert = srv.tls.cert
        out: dict[str, Any] = {"url": srv.http.url, "urls": srv.http.urls, "tls": srv.tls}
        base = f"https://localhost:{srv.http.port}"
        out["page"] = await asyncio.to_thread(_fetch, f"{base}/", cert)
        out["health"] = await asyncio.to_thread(_fetch, f"{base}/api/v1/health", cert)
        out["by_ip"] = await asyncio.to_thread(
            _fetch, f"https://127.0.0.1:{srv.http.port}/api/v1/health", cert
        )
        body, content_type = multipart({}, [("file", "t.wav", wav)])
        out["upload"] = await asyncio.to_thread(
            _fetch, f"{base}/api/v1/transcriptions", cert, body, {"Content-Type": content_type}
        )
        async with websockets.connect(
            f"wss://localhost:{srv.http.port}/api/v1/stream", ssl=_context(cert)
        ) as ws:
            await ws.send(json.dumps({"config": PCM16_CONFIG}))
            for frame in pcm16_frames(speech_like(1.0)):
                await ws.send(frame)
            await ws.send(json.dumps({"control": {"action": "FINISH"}}))
            out["ws_first"] = json.loads(await ws.recv())
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        async with grpc.aio.secure_channel(f"localhost:{srv.port}", creds) as channel:
            stats = await system_pb2_grpc.SystemStub(channel).GetStats(system_pb2.StatsRequest())
            out["grpc_model"] = stats.model
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as plain:
            try:
                await asyncio.wait_for(
                    system_pb2_grpc.SystemStub(plain).GetStats(system_pb2.StatsRequest()), 10
                )
                out["plaintext"] = "answered"
            except (grpc.aio.AioRpcError, TimeoutError):
                out["plaintext"] = "refused"
        return out

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        async with upload_server(FakeRecognizer(), DecodingTranscriber(), cfg) as srv:
            first = await session(srv)
        async with upload_server(FakeRecognizer(), DecodingTranscriber(), cfg) as srv:
            assert srv.tls is not None
            second = {"tls": srv.tls}
        return first, second

    first, second = run(main(), 120)
    assert first["url"].startswith("https://127.0.0.1:")
    assert all(u.startswith("https://") for u in first["urls"])
    assert first["page"][0] == 200 and b"audiototext" in first["page"][1]
    assert first["health"][0] == 200 and json.loads(first["health"][1])["status"] == "SERVING"
    assert first["by_ip"][0] == 200
    assert first["upload"][0] == 200 and json.loads(first["upload"][1])["text"]
    assert "started" in first["ws_first"]
    assert first["grpc_model"] == "tiny.en"
    assert first["plaintext"] == "refused"
    assert not first["tls"].reused
    assert second["tls"].reused and second["tls"].fingerprint == first["tls"].fingerprint
    dns, ips = _sans(first["tls"].cert)
    assert "localhost" in dns and {"127.0.0.1", "::1"} <= ips


def test_startup_lines_print_https_urls_and_the_fingerprint(tmp_path: Path) -> None:
    from audiototext.cli_serve import startup_lines

    cfg = config(http_port=0, http_host="0.0.0.0", self_signed=True, cache_root=tmp_path)

    async def main() -> tuple[list[str], str, int]:
        server = GrpcServer(cfg, recognizer=FakeRecognizer())
        await server.start()
        try:
            assert server.tls is not None and server.http is not None
            return startup_lines(server), server.tls.fingerprint, server.http.port
        finally:
            await server.stop(1)

    lines, fingerprint, port = run(main(), 60)
    text = "\n".join(lines)
    assert "0.0.0.0" not in text
    assert lines[0].startswith("listening on grpcs://")
    assert f"web page: https://localhost:{port}/" in text
    for address in machine_addresses():
        if ":" not in address:
            assert f"https://{address}:{port}/" in text
    assert fingerprint in text and "self-signed certificate (new)" in text


def test_self_signed_and_own_files_together_are_refused(tmp_path: Path) -> None:
    import pytest

    from audiototext.errors import ConfigError

    with pytest.raises(ConfigError, match="either --self-signed"):
        config(self_signed=True, tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem")


def test_cross_origin_isolation_only_where_browsers_honour_it() -> None:
    """COOP/COEP on https and loopback pages; not on plain http from another address, where
    browsers ignore them with an error in the console."""
    from server.upload_harness import raw_request

    async def main() -> dict[str, dict[str, str]]:
        async with upload_server(FakeRecognizer(), DecodingTranscriber()) as srv:
            assert srv.http is not None
            out = {}
            for host in ("127.0.0.1", "localhost", "192.0.2.9", "box.example"):
                _, headers, _ = await raw_request(
                    srv.http.port, "GET", "/", headers={"Host": f"{host}:{srv.http.port}"}
                )
                out[host] = headers
            return out

    out = run(main(), 60)
    for host in ("127.0.0.1", "localhost"):
        assert out[host]["cross-origin-opener-policy"] == "same-origin", host
    for host in ("192.0.2.9", "box.example"):
        assert "cross-origin-opener-policy" not in out[host], host
        assert "cross-origin-embedder-policy" not in out[host], host
