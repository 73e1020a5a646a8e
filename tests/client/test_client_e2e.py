"""The client library end to end (real engine): resume through cuts, adaptive compression."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from audiototext.client import AsyncClient, Stream, StreamSettings, TranscriptUpdate
from server.grpc_harness import TcpProxy, run, running_server, stream_audio
from server.real_engine import (
    SENTENCES,
    long_speech,
    settled,
    words,
)
from support.speech import SpeechSynthesizer

if TYPE_CHECKING:
    from audiototext.streaming import StreamingRecognizer

# Real-time streams into the real engine: they must not share the CPU with another worker.
pytestmark = [pytest.mark.slow, pytest.mark.realtime]


def test_resume_through_five_cuts_gives_the_uninterrupted_transcript(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    """The final transcript after 5 cuts equals the uninterrupted one, word for word.

    Finals are decoded from the utterance's audio alone, so they cannot depend on when the
    audio arrived: the reference is even sent as fast as credit allows, while the cut stream
    runs at real time. (Until the engine's c989dbd a final began with the words partials had
    committed, and partials are decoded wherever the engine has read to when its worker
    runs; after a reconnect the backlog arrives in a burst and the partials in between are
    skipped, so 2 of 14 finals differed by a word - the cut ones - with identical segment
    times. This test keeps that from coming back.)
    """
    audio = long_speech(speech, 60.0)
    assert audio.shape[0] >= 59 * 16_000
    settings = StreamSettings(compression="pcm16")  # interim results on, as by default

    async def main() -> tuple[list[TranscriptUpdate], list[TranscriptUpdate], Stream, int]:
        async with running_server(recognizer) as srv:
            await settled(recognizer)
            async with AsyncClient(f"127.0.0.1:{srv.port}") as client:
                _, reference, _ = await stream_audio(client, audio, settings, speed=None)
            proxy = TcpProxy(srv.port)
            await proxy.start()
            await settled(recognizer)
            try:
                async with AsyncClient(proxy.target) as client:
                    hooks = [(t, proxy.cut) for t in (7.0, 18.0, 29.5, 41.0, 52.5)]
                    partials, finals, stream = await stream_audio(
                        client, audio, settings, speed=1.0, during=hooks
                    )
            finally:
                await proxy.stop()
        assert partials
        return finals, reference, stream, proxy.cuts

    finals, reference, stream, cuts = run(main(), 900)
    assert cuts == 5
    assert stream.stats.reconnects >= 5
    assert len(reference) >= 10
    assert all(f.text for f in reference)
    # Every utterance once, in order, over the same stretch of stream time (one lost or
    # doubled chunk would shift every later segment by its length), with the same text.
    assert [(f.utterance_id, f.start_s, f.end_s) for f in finals] == [
        (f.utterance_id, f.start_s, f.end_s) for f in reference
    ]
    assert [f.text for f in finals] == [f.text for f in reference]
    assert " ".join(f.text for f in finals) == " ".join(f.text for f in reference)


def test_adaptive_compression_switches_under_a_bandwidth_limit(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    audio = long_speech(speech, 20.0)

    async def main() -> tuple[Stream, list[str]]:
        async with running_server(recognizer) as srv:
            proxy = TcpProxy(srv.port, rate_bytes_s=10_000)  # 80 kbit/s; PCM16 needs 256
            await proxy.start()
            await settled(recognizer)
            try:
                async with AsyncClient(proxy.target) as client:
                    _, finals, stream = await stream_audio(client, audio, speed=1.0)
            finally:
                await proxy.stop()
        return stream, [f.text for f in finals]

    stream, finals = run(main(), 600)
    stats = stream.stats
    assert stats.switches and stats.switches[0].startswith("OPUS")
    assert any(k.startswith("OPUS") for k in stats.encodings)
    text = words(" ".join(finals))
    hits = sum(len(words(s) & text) >= len(words(s)) // 2 for s in SENTENCES)
    assert hits >= 3, finals
