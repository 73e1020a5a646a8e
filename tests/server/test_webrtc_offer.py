"""``POST /api/v1/webrtc/offer`` refuses bad requests with the API's JSON errors, and harms
nothing else: no session or peer is left behind, the server keeps serving. A good offer gets
an answer with Opus alone, and shutdown closes its peer. (No ICE connection is made here: the
connected cases are in test_webrtc_session.py and test_webrtc_e2e.py.)"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest

from audiototext.server.app import GrpcServer
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run
from server.ws_harness import http_get, http_server

pytest.importorskip("aiortc")

from aiortc import RTCConfiguration, RTCPeerConnection

from server.rtc_harness import SpeechTrack

PATH = "/api/v1/webrtc/offer"
MALFORMED = "v=0\r\nm=audio x\r\na=rtpmap:111 opus/48000/2\r\nm=application y\r\n"


async def _post(
    srv: GrpcServer, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    assert srv.http is not None
    request = urllib.request.Request(
        f"http://127.0.0.1:{srv.http.port}{PATH}", data=body, headers=headers or {}
    )

    def send() -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    return await asyncio.to_thread(send)


def _json_headers(**more: str) -> dict[str, str]:
    return {"Content-Type": "application/json", **more}


async def _offer(audio: bool = True, channel: bool = True) -> str:
    import numpy as np

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        if channel:
            pc.createDataChannel("events")
        if audio:
            pc.addTrack(SpeechTrack(np.zeros(1600, dtype=np.float32)))
        await pc.setLocalDescription(await pc.createOffer())
        sdp: str = pc.localDescription.sdp
        return sdp
    finally:
        await pc.close()


async def _nothing_left(srv: GrpcServer) -> None:
    assert srv.store is not None and srv.webrtc is not None
    assert srv.store.open_count() == 0
    assert len(srv.webrtc) == 0
    status, _, body = await http_get(srv, "/api/v1/health")
    assert status == 200 and json.loads(body)["status"] == "SERVING"


def _error(answer: tuple[int, Any]) -> tuple[int, str, str]:
    status, body = answer
    return status, body["error"]["code"], body["error"]["message"]


def test_bad_offers_get_clear_json_errors_and_leave_nothing_behind() -> None:
    async def main() -> dict[str, tuple[int, str, str]]:
        seen = {}
        offer = await _offer()
        no_audio = await _offer(audio=False)
        no_channel = await _offer(channel=False)
        async with http_server(FakeRecognizer()) as srv:

            def body(**fields: Any) -> bytes:
                return json.dumps({"sdp": offer, "type": "offer", **fields}).encode()

            cases: dict[str, tuple[bytes, dict[str, str]]] = {
                "not json": (b"{sdp: v=0", _json_headers()),
                "not an object": (b"[1, 2]", _json_headers()),
                "no sdp": (json.dumps({"type": "offer"}).encode(), _json_headers()),
                "an answer": (body(type="answer"), _json_headers()),
                "malformed sdp": (
                    json.dumps({"sdp": MALFORMED, "type": "offer"}).encode(),
                    _json_headers(),
                ),
                "no opus": (
                    json.dumps({"sdp": re.sub("opus", "G722", offer), "type": "offer"}).encode(),
                    _json_headers(),
                ),
                "no audio": (
                    json.dumps({"sdp": no_audio, "type": "offer"}).encode(),
                    _json_headers(),
                ),
                "no channel": (
                    json.dumps({"sdp": no_channel, "type": "offer"}).encode(),
                    _json_headers(),
                ),
                "bad config": (body(config={"interim_results": "often"}), _json_headers()),
                "unknown config": (body(config={"volume": 11}), _json_headers()),
                "wrong content type": (body(), {"Content-Type": "text/plain"}),
                "no content type": (body(), {}),
                "huge": (b'{"sdp": "' + b"a" * (1 << 20) + b'"}', _json_headers()),
                "bad origin": (body(), _json_headers(Origin="http://evil.example")),
            }
            for name, (data, headers) in cases.items():
                seen[name] = _error(await _post(srv, data, headers))
            await _nothing_left(srv)
        return seen

    seen = run(main(), 120)
    for name in ("not json", "not an object", "no sdp", "an answer", "malformed sdp"):
        assert seen[name][:2] == (400, "INVALID_ARGUMENT"), (name, seen[name])
    assert "SDP offer cannot be answered" in seen["malformed sdp"][2]
    assert seen["no opus"][:2] == (400, "INVALID_ARGUMENT") and "Opus" in seen["no opus"][2]
    assert seen["no audio"][:2] == (400, "INVALID_ARGUMENT") and "audio" in seen["no audio"][2]
    assert seen["no channel"][:2] == (400, "INVALID_ARGUMENT")
    assert "data channel" in seen["no channel"][2]
    assert seen["bad config"][:2] == (400, "INVALID_ARGUMENT")
    assert seen["unknown config"][:2] == (400, "INVALID_ARGUMENT")
    assert seen["wrong content type"][:2] == (415, "INVALID_ARGUMENT")
    assert "application/json" in seen["wrong content type"][2]
    assert seen["no content type"][0] == 415
    assert seen["huge"][:2] == (413, "RESOURCE_EXHAUSTED")
    assert seen["bad origin"][:2] == (403, "PERMISSION_DENIED")


def test_the_token_is_required_as_for_the_rest_of_the_api() -> None:
    async def main() -> list[tuple[int, str, str]]:
        offer = json.dumps({"sdp": await _offer(), "type": "offer"}).encode()
        async with http_server(FakeRecognizer(), config(http_port=0, token="s3cret")) as srv:
            seen = [
                _error(await _post(srv, offer, _json_headers())),
                _error(await _post(srv, offer, _json_headers(Authorization="Bearer nope"))),
            ]
            await _nothing_left(srv)
        return seen

    missing, wrong = run(main(), 60)
    assert missing[:2] == (401, "UNAUTHENTICATED") and "token" in missing[2]
    assert wrong[:2] == (401, "UNAUTHENTICATED")


def test_a_good_offer_gets_an_opus_only_answer_and_shutdown_closes_the_peer() -> None:
    async def main() -> tuple[int, Any, int, int]:
        offer = json.dumps({"sdp": await _offer(), "type": "offer"}).encode()
        async with http_server(FakeRecognizer(), config(http_port=0, token="s3cret")) as srv:
            assert srv.webrtc is not None and srv.store is not None
            status, answer = await _post(srv, offer, _json_headers(Authorization="Bearer s3cret"))
            opened = (len(srv.webrtc), srv.store.open_count())
            await srv.stop(2.0)
            return status, answer, opened[0] * 10 + opened[1], len(srv.webrtc)

    status, answer, opened, left = run(main(), 60)
    assert status == 200, answer
    assert answer["type"] == "answer" and answer["session_id"] and answer["resumed"] is False
    assert opened == 11  # one peer, one session
    assert left == 0
    audio = answer["sdp"].split("m=audio")[1].split("m=")[0]
    codecs = set(re.findall(r"a=rtpmap:\d+ ([^/\s]+)/", audio))
    assert codecs == {"opus"}, audio


def test_without_aiortc_the_offer_says_to_use_the_websocket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def main() -> tuple[int, str, str]:
        offer = json.dumps({"sdp": await _offer(), "type": "offer"}).encode()
        monkeypatch.setitem(sys.modules, "aiortc", None)  # import aiortc raises ImportError
        async with http_server(FakeRecognizer()) as srv:
            seen = _error(await _post(srv, offer, _json_headers()))
            await _nothing_left(srv)
        return seen

    status, code, message = run(main(), 60)
    assert (status, code) == (501, "UNIMPLEMENTED") and "/api/v1/stream" in message
