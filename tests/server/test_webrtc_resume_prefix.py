"""A resumed WebRTC session gets the audio captured while its connection was down: the new
offer says ``"prefix": true`` with the ``session_id``, and once ``session_started`` says the
session's ``next_seq`` S the client sends its audio from (S - 1) x 100 ms of the stream up to
the new track's start, ending with ``{"prefix": {"bytes": N, "next_seq": S}}``. The stream's
audio is then the uninterrupted run's: one utterance of the same length (engine test double),
the same words once (tiny.en). A prefix cut from the wrong point, or one that does not say
where it starts, is refused with what to change, and the server goes on serving. Real aiortc
peers in a network namespace (ICE needs an address other than 127.0.0.1)."""

from __future__ import annotations

import asyncio
import collections
import json
import re
from typing import TYPE_CHECKING

import numpy as np
import pytest

from server.fake_engine import FakeRecognizer
from server.real_engine import SENTENCES, settled
from server.ws_harness import http_server
from support.netns import namespace, run_inside
from support.speech import SpeechSynthesizer, with_silence

pytest.importorskip("aiortc")

from server.rtc_harness import RtcRun, stream_speech

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from audiototext.server.app import GrpcServer
    from audiototext.streaming import StreamingRecognizer

RATE = 16_000
CUT_AFTER_S = 1.5  # the first connection is closed this long after its answer (~1.2 s of audio)


def _url(srv: GrpcServer) -> str:
    assert srv.http is not None
    return f"http://127.0.0.1:{srv.http.port}/api/v1/webrtc/offer"


def _tone(seconds: float) -> NDArray[np.float32]:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _utterance_samples(out: RtcRun) -> list[int]:
    """The length of each final's utterance (the test double's ``u<id> n<samples>``)."""
    found = [re.search(r" n(\d+) ", f["text"] + " ") for f in out.finals]
    return [int(m.group(1)) for m in found if m]


def _event_seqs(*runs: RtcRun) -> list[int]:
    return [int(m["event_seq"]) for r in runs for m in r.messages if int(m.get("event_seq", 0))]


async def _detached(srv: GrpcServer) -> None:
    """Until the cut connection's session waits for its resume."""
    for _ in range(200):
        if srv.store is not None and srv.store.detached_count() == 1:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the cut session was not detached")


async def _cut_and_resume(
    srv: GrpcServer, audio: NDArray[np.float32], resume_at_s: float, *, prefix: bool
) -> tuple[RtcRun, RtcRun]:
    """Stream ``audio``, close the peer mid-way, resume with a new peer whose track starts at
    ``resume_at_s`` of the audio; the audio between the server's last chunk and that point is
    the resume's prefix (or, ``prefix=False``, is lost as before)."""
    split = int(resume_at_s * RATE)
    a = await stream_speech(_url(srv), audio, cut_after_s=CUT_AFTER_S)
    await _detached(srv)
    last = max(_event_seqs(a), default=0)
    config = {"session_id": a.answer["session_id"], "resume_from_event": last + 1}
    b = await stream_speech(
        _url(srv), audio[split:], config=config, resume_prefix=audio[:split] if prefix else None
    )
    return a, b


def test_a_resume_with_the_missed_audio_as_prefix_gives_the_uninterrupted_utterance() -> None:
    """A 3-s tone; the connection drops ~0.7 s into it and comes back at 2.5 s. With the
    prefix the session hears one utterance as long as the uninterrupted run's; without, one
    shorter by what was missed."""
    audio = with_silence(_tone(3.0), 0.5, 1.5)

    async def main() -> tuple[RtcRun, RtcRun, RtcRun, RtcRun, int]:
        async with http_server(FakeRecognizer()) as srv:
            whole = await stream_speech(_url(srv), audio)
            a, b = await _cut_and_resume(srv, audio, 2.5, prefix=True)
            _, lossy = await _cut_and_resume(srv, audio, 2.5, prefix=False)
            assert srv.store is not None
            return whole, a, b, lossy, srv.store.streams_total

    with namespace() as name:
        whole, a, b, lossy, streams_total = run_inside(name, main, 180)
    assert b.status == 200 and b.answer["resumed"] is True, b.answer
    assert not a.errors and not b.errors, (a.errors, b.errors)
    assert streams_total == 3  # the uninterrupted run and one session for each cut run
    (n_whole,) = _utterance_samples(whole)
    (n,) = _utterance_samples(a) + _utterance_samples(b)
    (n_lossy,) = _utterance_samples(lossy)
    prefix_ms = b.rtc_stats[-1]["prefix_ms"]
    print(
        f"\nutterance: uninterrupted {n_whole / RATE:.3f} s, resumed with the prefix "
        f"{n / RATE:.3f} s ({prefix_ms} ms of prefix), without {n_lossy / RATE:.3f} s"
    )
    # Opus smears each connection's edges by a frame or two.
    assert abs(n - n_whole) <= 0.06 * RATE, (n, n_whole)
    assert n_whole - n_lossy >= 0.8 * RATE, (n_whole, n_lossy)  # the drop, lost before
    assert 1000 <= prefix_ms <= 1600, prefix_ms
    assert _event_seqs(a, b) == list(range(1, len(_event_seqs(a, b)) + 1))


def test_a_resume_prefix_from_the_wrong_point_is_refused_and_the_server_goes_on() -> None:
    audio = with_silence(_tone(3.0), 0.5, 1.5)
    pcm = np.full(3200, 100, dtype="<i2").tobytes()
    ends = [
        {"bytes": len(pcm)},  # where it starts, unsaid
        {"bytes": len(pcm), "next_seq": 1},  # from the stream's start: heard twice
        {"bytes": len(pcm), "next_seq": "12"},
    ]

    async def main() -> tuple[list[RtcRun], RtcRun]:
        async with http_server(FakeRecognizer()) as srv:
            runs = []
            for end in ends:
                a = await stream_speech(_url(srv), audio, cut_after_s=CUT_AFTER_S)
                await _detached(srv)
                config = {"session_id": a.answer["session_id"], "resume_from_event": 1}
                runs.append(
                    await stream_speech(
                        _url(srv),
                        audio[40_000:],
                        config=config,
                        offer_extra={"prefix": True},
                        send_on_open=[pcm, json.dumps({"prefix": end})],
                    )
                )
            good = await stream_speech(_url(srv), audio)
            return runs, good

    with namespace() as name:
        runs, good = run_inside(name, main, 240)
    expected = ["which chunk it starts at", "the session's next chunk is", "a chunk number"]
    for out, words_ in zip(runs, expected, strict=True):
        assert out.status == 200 and out.answer["resumed"] is True, out.answer
        assert [e["code"] for e in out.errors] == ["INVALID_ARGUMENT"], out.errors
        assert words_ in out.errors[0]["message"], out.errors
        assert out.channel_closed
    assert good.finals and not good.errors, good.messages


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


@pytest.mark.slow
@pytest.mark.realtime
def test_a_sentence_cut_mid_way_and_resumed_with_the_prefix_is_transcribed_whole_once(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    """Two sentences; the connection drops during the first (~1 s into its speech) and comes
    back 1.5 s of speech later. The finals hold the uninterrupted run's words, each once."""
    spoken = [speech.speak(s).audio for s in SENTENCES[1:3]]
    gap = np.zeros(int(1.2 * RATE), dtype=np.float32)
    audio = with_silence(np.concatenate([spoken[0], gap, spoken[1]]), 0.3, 1.5)

    async def main() -> tuple[RtcRun, RtcRun, RtcRun]:
        async with http_server(recognizer) as srv:
            await settled(recognizer)
            whole = await stream_speech(_url(srv), audio)
            await settled(recognizer)
            a, b = await _cut_and_resume(srv, audio, 2.7, prefix=True)
            return whole, a, b

    with namespace() as name:
        whole, a, b = run_inside(name, main, 300)
    assert not a.errors and not b.errors and b.answer["resumed"] is True, (a.errors, b.errors)
    text_whole = " ".join(f["text"] for f in whole.finals)
    text = " ".join(f["text"] for f in a.finals + b.finals)
    print(f"\nuninterrupted: {text_whole!r}\nresumed with the prefix: {text!r}")
    counts = collections.Counter(_tokens(text))
    expected = [w for w in _tokens(text_whole) if len(w) >= 4]
    assert expected, text_whole
    assert [w for w in expected if counts[w] != 1] == [], (text, text_whole)
