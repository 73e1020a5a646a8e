"""The audio a page captured before its WebRTC track connected (``"prefix": true``): sent on
the data channel, it reaches the stream before the track's audio, once; malformed prefix
input ends that stream with an error that says what to change, and the server goes on
serving. :class:`PrefixIntake` on its own, then real aiortc peers (a network namespace: ICE
needs an address other than 127.0.0.1) against the engine test double, whose finals give
each utterance's exact length, and against the real engine (tiny.en)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from audiototext.server.http import rtc_prefix
from audiototext.server.http.rtc_prefix import MAX_PREFIX_BYTES, PrefixIntake
from audiototext.server.status import Status, StatusError
from server.fake_engine import FakeRecognizer
from server.real_engine import SENTENCES, settled, words
from server.ws_harness import http_server
from support.netns import namespace, run_inside
from support.speech import SpeechSynthesizer, with_silence

pytest.importorskip("aiortc")

from server.rtc_harness import RtcRun, post_json, stream_speech
from server.test_webrtc_offer import _offer

if TYPE_CHECKING:
    from audiototext.server.app import GrpcServer
    from audiototext.streaming import StreamingRecognizer

RATE = 16_000


def _pcm(n_samples: int, value: int = 1000) -> bytes:
    return np.full(n_samples, value, dtype="<i2").tobytes()


# ---- PrefixIntake ---------------------------------------------------------------------------


def test_the_prefix_comes_first_in_100_ms_chunks_then_the_held_track_chunks() -> None:
    intake = PrefixIntake(expected=True)
    intake.add(_pcm(2000, 1))
    intake.add(_pcm(1500, 2))
    assert intake.waiting
    assert intake.hold(_pcm(1600, 3)) and intake.hold(_pcm(1600, 4))
    chunks = intake.end({"bytes": 7000})
    assert [len(c) for c in chunks] == [3200, 3200, 600, 3200, 3200]
    joined = np.frombuffer(b"".join(chunks), dtype="<i2")
    assert list(np.unique(joined, return_index=True)[1]) == [0, 2000, 3500, 5100]
    assert not intake.waiting and not intake.hold(_pcm(1600))  # live from now on


def test_without_a_promised_prefix_the_track_is_live_and_binary_is_refused() -> None:
    intake = PrefixIntake(expected=False)
    assert not intake.waiting and not intake.hold(_pcm(1600))
    with pytest.raises(StatusError, match='"prefix": true'):
        intake.add(_pcm(10))
    with pytest.raises(StatusError, match="without a prefix"):
        intake.end({"bytes": 0})


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([("add", b"\x00\x01\x02")], "3 bytes: the prefix is PCM16"),
        ([("add", b"\x00" * (MAX_PREFIX_BYTES + 2))], "longer than 10 s"),
        ([("add", _pcm(100)), ("end", {"bytes": 100})], "says 100 bytes but 200 came"),
        ([("end", {"bytes": "200"})], "how many bytes"),
        ([("end", {"bytes": True})], "how many bytes"),
        ([("end", [])], "how many bytes"),
        ([("end", {"bytes": 0}), ("add", _pcm(10))], "prefix audio after its end"),
        ([("end", {"bytes": 0}), ("end", {"bytes": 0})], "comes once"),
        ([("finish", None)], "FINISH before the prefix's end"),
        ([("hold", _pcm(16_000 * 6))], "did not come within 5 s"),
    ],
)
def test_malformed_prefix_input_is_refused_with_what_to_change(
    steps: list[tuple[str, Any]], message: str
) -> None:
    intake = PrefixIntake(expected=True)
    with pytest.raises(StatusError) as caught:
        for step, arg in steps:
            if step == "add":
                intake.add(arg)
            elif step == "end":
                intake.end(arg)
            elif step == "hold":
                intake.hold(arg)
            else:
                intake.before_finish()
    assert caught.value.code is Status.INVALID_ARGUMENT
    assert message in caught.value.message, caught.value.message


# ---- over real WebRTC, engine test double ----------------------------------------------------


def _url(srv: GrpcServer) -> str:
    assert srv.http is not None
    return f"http://127.0.0.1:{srv.http.port}/api/v1/webrtc/offer"


def _tone(seconds: float) -> Any:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _utterance_samples(out: RtcRun) -> list[int]:
    """The length of each final's utterance (the test double's ``u<id> n<samples>``)."""
    return [int(re.search(r" n(\d+) ", f["text"] + " ").group(1)) for f in out.finals]  # type: ignore[union-attr]


def test_a_prefix_sent_on_the_data_channel_goes_before_the_track_once() -> None:
    """A 2-s tone cut in two: its first 0.8 s (and the silence before it) as the prefix, the
    rest on the track. One utterance of the whole tone; without the prefix, a shorter one."""
    audio = with_silence(_tone(2.0), 0.5, 1.5)
    split = int(1.3 * RATE)

    async def main() -> tuple[RtcRun, RtcRun, dict[str, Any]]:
        async with http_server(FakeRecognizer()) as srv:
            joined = await stream_speech(_url(srv), audio[split:], prefix=audio[:split])
            alone = await stream_speech(_url(srv), audio[split:])
            return joined, alone, joined.rtc_stats[-1]

    with namespace() as name:
        joined, alone, stats = run_inside(name, main, 120)
    assert joined.status == 200 and not joined.errors, (joined.answer, joined.errors)
    (n,) = _utterance_samples(joined)
    (n_alone,) = _utterance_samples(alone)
    print(f"\nutterance with the prefix {n / RATE:.3f} s, without {n_alone / RATE:.3f} s")
    # The whole tone, none of it twice (the test double ends an utterance after some
    # silence, and Opus smears the edges by a frame or two).
    assert abs(n - n_alone - 0.8 * RATE) <= 0.05 * RATE, (n, n_alone)
    assert 2.0 * RATE <= n <= 2.0 * RATE + 0.6 * RATE, n
    assert stats["prefix_ms"] == 1300, stats
    assert stats["held_ms"] >= 0


def test_malformed_prefix_messages_end_that_stream_and_the_server_goes_on() -> None:
    audio = with_silence(_tone(0.5), 0.3, 1.0)
    bad: list[tuple[str, dict[str, Any], list[str | bytes]]] = [
        ("binary without a prefix", {}, [_pcm(800)]),
        ("odd bytes", {"prefix": True}, [b"\x00\x01\x02"]),
        ("wrong count", {"prefix": True}, [_pcm(800), json.dumps({"prefix": {"bytes": 9}})]),
        ("bad end", {"prefix": True}, [json.dumps({"prefix": "done"})]),
        ("finish first", {"prefix": True}, [json.dumps({"control": {"action": "FINISH"}})]),
    ]

    async def main() -> tuple[list[RtcRun], RtcRun, int]:
        async with http_server(FakeRecognizer()) as srv:
            assert srv.webrtc is not None
            runs = []
            for _, extra, messages in bad:
                runs.append(
                    await stream_speech(_url(srv), audio, offer_extra=extra, send_on_open=messages)
                )
            good = await stream_speech(_url(srv), audio[8000:], prefix=audio[:8000])
            for _ in range(50):
                if not len(srv.webrtc):
                    break
                await asyncio.sleep(0.1)
            return runs, good, len(srv.webrtc)

    with namespace() as name:
        runs, good, peers_left = run_inside(name, main, 180)
    expected = ['"prefix": true', "PCM16", "says 9 bytes", "how many bytes", "FINISH before"]
    for (label, _, _), out, words_ in zip(bad, runs, expected, strict=True):
        assert out.status == 200, (label, out.answer)
        assert [e["code"] for e in out.errors] == ["INVALID_ARGUMENT"], (label, out.errors)
        assert words_ in out.errors[0]["message"], (label, out.errors)
        assert out.channel_closed, label
    assert good.finals and not good.errors, good.messages
    assert peers_left == 0


def test_a_promised_prefix_that_never_ends_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rtc_prefix, "HOLD_MAX_S", 0.5)
    audio = with_silence(_tone(0.5), 0.3, 1.0)

    async def main() -> RtcRun:
        async with http_server(FakeRecognizer()) as srv:
            return await stream_speech(_url(srv), audio, offer_extra={"prefix": True})

    with namespace() as name:
        out = run_inside(name, main, 120)
    assert [e["code"] for e in out.errors] == ["INVALID_ARGUMENT"], out.errors
    assert "did not come within 0.5 s" in out.errors[0]["message"]


def test_a_bad_prefix_offer_gets_400_with_what_to_change() -> None:
    async def main() -> tuple[int, Any]:
        sdp = await _offer()
        async with http_server(FakeRecognizer()) as srv:
            body = {"sdp": sdp, "type": "offer", "prefix": "yes"}
            return await asyncio.to_thread(post_json, _url(srv), body)

    with namespace() as name:
        a = run_inside(name, main, 60)
    assert a[0] == 400 and '"prefix" must be true' in a[1]["error"]["message"], a


# ---- the real engine ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.realtime
def test_the_first_words_said_before_the_track_connected_are_transcribed_once(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    """The sentence is cut 1.0 s into its speech: its start goes as the prefix, the rest on
    the track. The final holds its first words and none twice."""
    spoken = speech.speak(SENTENCES[1]).audio
    audio = with_silence(spoken, 0.4, 1.5)
    split = int(1.4 * RATE)

    async def main() -> RtcRun:
        async with http_server(recognizer) as srv:
            await settled(recognizer)
            return await stream_speech(_url(srv), audio[split:], prefix=audio[:split])

    with namespace() as name:
        out = run_inside(name, main, 300)
    assert out.status == 200 and not out.errors, out.errors
    text = " ".join(f["text"] for f in out.finals)
    print(f"\nfinals: {text!r}")
    got = words(text)
    assert {"please", "call"} <= got, text
    assert len(got & {"please", "call", "ask", "her", "bring", "these", "things"}) >= 6, text
    tokens = re.findall(r"[a-z']+", text.lower())
    assert len(tokens) == len(set(tokens)), f"a word twice: {text}"
