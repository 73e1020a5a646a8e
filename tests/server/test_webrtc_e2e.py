"""WebRTC end to end: an aiortc peer streams espeak-ng speech as an Opus track to
``POST /api/v1/webrtc/offer`` of a server with the real engine (tiny.en int8), and reads the
finals from the data channel. Both sit in a network namespace of their own (ICE needs an
address other than 127.0.0.1). Lost RTP packets are filled with silence; a reader that falls
behind drops audio instead of lagging, and says how much."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from server.real_engine import SENTENCES, settled, words
from server.ws_harness import http_server
from support.netns import namespace, run_inside
from support.speech import SpeechSynthesizer, with_silence

pytest.importorskip("aiortc")

from server.rtc_harness import RtcRun, stream_speech

if TYPE_CHECKING:
    from audiototext.streaming import StreamingRecognizer

# Real-time streams into the real engine: they must not share the CPU with another worker.
pytestmark = [pytest.mark.slow, pytest.mark.realtime]

# A sentence tiny.en hears well in espeak's voice, over the WebSocket and over Opus alike
# ("Stella" comes out as "stellar"); the fox sentence loses "brown fox jumps" either way.
EXPECTED = {"please", "call", "ask", "her", "bring", "these", "things"}
LEAD_S, TAIL_S = 0.5, 1.5


def _speech(speech: SpeechSynthesizer) -> tuple[Any, float]:
    """A sentence with silence around it; (audio, where the speech ends in s)."""
    spoken = speech.speak(SENTENCES[1]).audio
    return with_silence(spoken, LEAD_S, TAIL_S), LEAD_S + spoken.shape[0] / 16_000


def _stream(recognizer: StreamingRecognizer, audio: Any, **kwargs: Any) -> tuple[RtcRun, int]:
    async def main() -> tuple[RtcRun, int]:
        async with http_server(recognizer) as srv:
            assert srv.http is not None and srv.webrtc is not None
            await settled(recognizer)
            url = f"http://127.0.0.1:{srv.http.port}/api/v1/webrtc/offer"
            out = await stream_speech(url, audio, **kwargs)
            for _ in range(50):  # the server closes its side after the last event
                if not len(srv.webrtc):
                    break
                await asyncio.sleep(0.1)
            return out, len(srv.webrtc)

    with namespace() as name:
        return run_inside(name, main, 300)


def _total_ms(audio: Any) -> int:
    return round(1000 * int(audio.shape[0]) / 16_000)


def test_speech_over_webrtc_gives_partials_then_a_final_with_the_expected_words(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    audio, speech_end_s = _speech(speech)
    out, peers_left = _stream(recognizer, audio)
    assert out.status == 200, out.answer
    assert out.answer["type"] == "answer" and out.answer["session_id"]
    assert not out.errors, out.errors
    assert out.channel_closed and peers_left == 0
    assert out.partials, "no partial result arrived"
    assert out.kinds.index("partial") < out.kinds.index("final")
    assert len(out.finals) == 1
    got = words(out.finals[0]["text"])
    assert len(got & EXPECTED) >= 6, out.finals
    started = [m["started"] for m in out.messages if "started" in m]
    assert started and started[0]["session_id"] == out.answer["session_id"]
    assert any("ack" in m for m in out.messages) and any("metrics" in m for m in out.messages)
    stats = out.rtc_stats[-1]
    assert stats["dropped_frames"] == 0 and stats["late_frames"] == 0
    # Every 20-ms frame was passed on, but the last few the jitter buffer holds back.
    assert 0 <= _total_ms(audio) - stats["audio_ms"] <= 120, stats
    assert stats["lost_ms"] == 0, stats
    assert out.audio_t0 is not None
    latency_ms = 1000 * (out.final_at[0] - (out.audio_t0 + speech_end_s))
    print(f"\nWebRTC: end of speech -> final {latency_ms:.0f} ms")


def test_lost_packets_are_filled_with_silence_and_the_speech_still_transcribes(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    audio, _ = _speech(speech)
    # One packet (20 ms) in 40 never arrives. aiortc's audio jitter buffer then also gives up
    # the few packets it held before the hole, so more than 20 ms goes missing each time;
    # whatever is missing comes back as silence of its length.
    out, _ = _stream(recognizer, audio, keep_packet=lambda n: n % 40 != 20)
    assert out.status == 200 and not out.errors, (out.answer, out.errors)
    assert out.rtp_dropped >= 4
    stats = out.rtc_stats[-1]
    assert stats["lost_ms"] >= 20 * (out.rtp_dropped - 1), stats  # the last may be held
    # The timeline is kept: what was passed on (fills included) spans what was sent, but for
    # the packets the jitter buffer still held when the audio ended (at most its 16).
    assert 0 <= _total_ms(audio) - stats["audio_ms"] <= 20 * 16 + 40, stats
    assert out.finals
    got = words(" ".join(f["text"] for f in out.finals))
    assert len(got & EXPECTED) >= 4, out.finals


def test_a_reader_that_falls_behind_drops_the_backlog_and_counts_it(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For 100 frames the server's reader takes 40 ms per 20-ms frame (as if the event loop
    were busy elsewhere): aiortc's queue grows past the bound, the oldest frames are dropped
    and counted, and the rest of the audio is read live again."""
    from audiototext.server.http import rtc_peer

    audio, _ = _speech(speech)
    recv = rtc_peer._Timed.recv
    calls = {"n": 0}

    async def slow_recv(self: Any) -> Any:
        frame = await recv(self)
        calls["n"] += 1
        if 50 <= calls["n"] < 150:
            await asyncio.sleep(0.04)
        return frame

    monkeypatch.setattr(rtc_peer._Timed, "recv", slow_recv)
    out, peers_left = _stream(recognizer, audio)
    assert out.status == 200 and not out.errors, (out.answer, out.errors)
    stats = out.rtc_stats[-1]
    assert stats["dropped_frames"] > 0, stats
    assert stats["dropped_ms"] == 20 * stats["dropped_frames"], stats
    # Everything sent is accounted for: passed on, or dropped on purpose (no silence for it).
    assert stats["lost_ms"] == 0, stats
    assert 0 <= _total_ms(audio) - (stats["audio_ms"] + stats["dropped_ms"]) <= 120, stats
    assert out.finals and out.channel_closed and peers_left == 0
