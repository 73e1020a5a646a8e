"""``WS /api/v1/stream`` end to end: the real engine (tiny.en int8), espeak-ng speech sent in
100-ms PCM16 chunks at 16 kHz by a real WebSocket client, as the page does."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from server.grpc_harness import run
from server.real_engine import SENTENCES, long_speech, settled, words
from server.ws_harness import WsRun, WsStreamer, http_server, ws_url
from support.speech import SpeechSynthesizer, with_silence

if TYPE_CHECKING:
    from audiototext.streaming import StreamingRecognizer

# Real-time streams into the real engine: they must not share the CPU with another worker.
pytestmark = [pytest.mark.slow, pytest.mark.realtime]


def test_partials_then_a_final_with_the_expected_words(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    audio = with_silence(speech.speak(SENTENCES[0]).audio, 0.5, 1.5)

    async def main() -> WsRun:
        async with http_server(recognizer) as srv:
            await settled(recognizer)
            return await WsStreamer(ws_url(srv)).run(audio, speed=1.0)

    out = run(main())
    assert out.partials, "no partial result arrived"
    assert out.kinds.index("partial") < out.kinds.index("final")
    assert out.finals and out.close_codes == [1000]
    assert len(out.finals) == 1
    final = out.finals[0]
    assert out.partials[0]["utterance_id"] == final["utterance_id"]
    # The same bar as the gRPC path's test (tiny.en hears espeak's "fox jumps" imperfectly).
    got = words(final["text"])
    assert len(got & {"quick", "fox", "jumps", "jump", "over", "lazy", "dog"}) >= 4, final
    assert final["words"] and final["segments"][0]["end_s"] > final["segments"][0]["start_s"]


def test_resume_after_a_dropped_socket_gives_the_uninterrupted_transcript(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    """Finals depend on the audio alone, so the reference may be sent as fast as credit
    allows while the interrupted run goes at real time with two cuts mid-utterance."""
    audio = long_speech(speech, 20.0)

    async def main() -> tuple[WsRun, WsRun]:
        async with http_server(recognizer) as srv:
            await settled(recognizer)
            reference = await WsStreamer(ws_url(srv)).run(audio, speed=None)
            await settled(recognizer)
            cut = await WsStreamer(ws_url(srv)).run(audio, speed=1.0, cut_at_s=(4.0, 12.5))
            return reference, cut

    reference, cut = run(main(), 600)
    assert [s["resumed"] for s in cut.started] == [False, True, True]
    assert len(reference.finals) >= 3
    assert [(f["utterance_id"], f["text"]) for f in cut.finals] == [
        (f["utterance_id"], f["text"]) for f in reference.finals
    ]
    assert cut.events_seen == list(range(1, len(cut.events_seen) + 1))
    assert cut.close_codes[-1] == 1000
