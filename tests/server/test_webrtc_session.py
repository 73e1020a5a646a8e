"""A WebRTC stream's life with the engine test double: resume after a dropped connection,
graceful shutdown mid-stream, and a peer whose ICE never connects. The peers meet in a
network namespace (ICE needs an address other than 127.0.0.1)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from audiototext.server.app import GrpcServer
from server.fake_engine import FakeRecognizer
from server.grpc_harness import run
from server.ws_harness import http_server
from support.netns import namespace, run_inside
from support.speech import SpeechSynthesizer, with_silence

pytest.importorskip("aiortc")

from server.rtc_harness import RtcRun, post_json, stream_speech
from server.test_webrtc_offer import _offer


def _url(srv: GrpcServer) -> str:
    assert srv.http is not None
    return f"http://127.0.0.1:{srv.http.port}/api/v1/webrtc/offer"


async def _until(check: Any, limit_s: float = 10.0) -> None:
    for _ in range(int(limit_s / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)


def _event_seqs(out: RtcRun) -> list[int]:
    return [int(m["event_seq"]) for m in out.messages if int(m.get("event_seq", 0))]


def test_a_new_offer_with_the_session_id_resumes_the_session(speech: SpeechSynthesizer) -> None:
    first = with_silence(speech.speak("We will meet at noon.").audio, 0.3, 1.0)
    second = with_silence(speech.speak("Bring these things.").audio, 0.3, 1.0)

    async def main() -> tuple[RtcRun, RtcRun, int]:
        async with http_server(FakeRecognizer()) as srv:
            assert srv.store is not None
            cut_after = first.shape[0] / 16_000 + 0.5
            a = await stream_speech(_url(srv), first, cut_after_s=cut_after)
            await _until(lambda: srv.store is not None and srv.store.detached_count() == 1)
            last = max(_event_seqs(a), default=0)
            config = {"session_id": a.answer["session_id"], "resume_from_event": last + 1}
            b = await stream_speech(_url(srv), second, config=config)
            return a, b, srv.store.streams_total

    with namespace() as name:
        a, b, streams_total = run_inside(name, main, 120)
    assert a.status == 200 and b.status == 200, (a.answer, b.answer)
    assert a.finals, "the first connection's utterance was not finalised before the cut"
    assert b.answer["session_id"] == a.answer["session_id"] and b.answer["resumed"] is True
    started = [m["started"] for m in b.messages if "started" in m]
    assert started[0]["resumed"] is True
    assert streams_total == 1  # one server session across both connections
    # The events go on where the first connection's stopped: none twice, none missing.
    seqs = _event_seqs(a) + _event_seqs(b)
    assert seqs == list(range(1, len(seqs) + 1))
    assert b.finals and b.channel_closed and not b.errors


def test_a_bad_data_channel_message_ends_the_stream_with_an_error(
    speech: SpeechSynthesizer,
) -> None:
    audio = with_silence(speech.speak("We will meet at noon.").audio, 0.3, 1.0)

    async def main() -> tuple[RtcRun, int, int]:
        async with http_server(FakeRecognizer()) as srv:
            assert srv.webrtc is not None and srv.store is not None
            out = await stream_speech(_url(srv), audio, send_on_open="hello")
            await _until(lambda: srv.webrtc is not None and len(srv.webrtc) == 0)
            return out, len(srv.webrtc), srv.store.open_count()

    with namespace() as name:
        out, peers, sessions = run_inside(name, main, 120)
    assert out.status == 200
    assert [e["code"] for e in out.errors] == ["INVALID_ARGUMENT"], out.errors
    assert "FINISH" in out.errors[0]["message"]
    assert out.channel_closed and peers == 0 and sessions == 0


def test_shutdown_mid_stream_delivers_the_finals_and_closes_the_peer(
    speech: SpeechSynthesizer,
) -> None:
    audio = with_silence(speech.speak("Please call Stella.").audio, 0.3, 3.0)

    async def main() -> tuple[RtcRun, int]:
        async with http_server(FakeRecognizer()) as srv:
            assert srv.webrtc is not None
            stopping: list[asyncio.Task[None]] = []

            def stop_soon(out: RtcRun) -> None:
                loop = asyncio.get_running_loop()
                loop.call_later(2.5, lambda: stopping.append(loop.create_task(srv.stop(5.0))))

            out = await stream_speech(_url(srv), audio, during=stop_soon)
            await asyncio.gather(*stopping)
            return out, len(srv.webrtc)

    with namespace() as name:
        out, left = run_inside(name, main, 120)
    assert out.status == 200 and not out.errors, (out.answer, out.errors)
    assert out.finals, "shutdown did not finalise the utterance"
    assert out.channel_closed and left == 0


def test_a_peer_whose_ice_never_connects_is_closed_and_its_new_session_freed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No connection within the deadline: the peer is closed, and the session it opened (no
    audio, no events any client knows of) is dropped at once instead of waiting for a resume."""
    from audiototext.server.http import rtc_peer

    monkeypatch.setattr(rtc_peer, "CONNECT_TIMEOUT_S", 0.5)

    async def main() -> tuple[int, int, int, int]:
        offer = {"sdp": await _offer(), "type": "offer"}
        async with http_server(FakeRecognizer()) as srv:
            assert srv.webrtc is not None and srv.store is not None
            status, _ = await asyncio.to_thread(post_json, _url(srv), offer)
            opened = len(srv.webrtc) * 10 + srv.store.open_count()
            await _until(lambda: srv.webrtc is not None and len(srv.webrtc) == 0)
            await _until(lambda: srv.store is not None and srv.store.open_count() == 0)
            return status, opened, len(srv.webrtc), srv.store.open_count()

    status, opened, peers, sessions = run(main(), 60)
    assert status == 200 and opened == 11
    assert peers == 0 and sessions == 0
