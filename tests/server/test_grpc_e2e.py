"""End to end over a real grpc.aio server on 127.0.0.1 with the real engine and tiny.en."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import numpy as np
import pytest

from audiototext.client import AsyncClient, Stream, StreamSettings, TranscriptUpdate
from audiototext.wire._proto import models_pb2, models_pb2_grpc, system_pb2
from audiototext.wire._proto import transcription_pb2 as pb
from audiototext.wire.codec import encode_pcm16
from server.grpc_harness import config, raw_stream, run, running_server, stream_audio
from server.real_engine import (
    SENTENCES,
    long_speech,
    settled,
    words,
)
from support.speech import SpeechSynthesizer, join_with_gaps, with_silence

if TYPE_CHECKING:
    from audiototext.streaming import StreamingRecognizer

# Real-time streams into the real engine: they must not share the CPU with another worker.
pytestmark = [pytest.mark.slow, pytest.mark.realtime]


def test_partial_then_final_with_expected_words(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    sentence = speech.speak(SENTENCES[0])
    audio = with_silence(sentence.audio, 0.5, 1.5)

    async def main() -> tuple[
        list[TranscriptUpdate], list[TranscriptUpdate], list[system_pb2.ServerStats]
    ]:
        async with (
            running_server(recognizer) as srv,
            AsyncClient(f"127.0.0.1:{srv.port}") as client,
        ):
            stats: list[system_pb2.ServerStats] = []

            async def watch() -> None:  # System.GetStats while the stream runs
                while True:
                    stats.append(await client.stats())
                    await asyncio.sleep(0.25)

            watcher = asyncio.create_task(watch())
            partials, finals, _ = await stream_audio(client, audio, speed=1.0)
            watcher.cancel()
            stats.append(await client.stats())
        return partials, finals, stats

    partials, finals, stats = run(main())
    during = [s for s in stats[:-1] if s.active_streams == 1]
    assert during, "GetStats never saw the stream open"
    assert max(s.rtf for s in during) > 0
    assert stats[-1].active_streams == 0 and stats[-1].streams_total == 1
    assert stats[-1].model == "tiny.en"
    assert partials, "no partial result"
    assert len(finals) == 1
    final = finals[0]
    assert partials[0].utterance_id == final.utterance_id
    got = words(final.text)
    assert len(got & {"quick", "fox", "jumps", "jump", "over", "lazy", "dog"}) >= 4, final.text
    assert 0.2 <= final.start_s <= 1.0 and final.end_s > final.start_s


def test_sixteen_concurrent_streams(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    """16 real-time streams at once are each transcribed as well as the same audio alone."""
    alone = [with_silence(speech.speak(s).audio, 0.3, 1.5) for s in SENTENCES]
    audios = [alone[i % len(SENTENCES)] for i in range(16)]

    async def main() -> tuple[list[list[TranscriptUpdate]], list[list[TranscriptUpdate]]]:
        async with running_server(recognizer, config(max_sessions=16)) as srv:
            await settled(recognizer)
            async with AsyncClient(f"127.0.0.1:{srv.port}") as client:
                reference = [(await stream_audio(client, a, speed=None))[1] for a in alone]
                await settled(recognizer)
                results = await asyncio.gather(
                    *(stream_audio(client, a, speed=1.0) for a in audios)
                )
        return [finals for _, finals, _ in results], reference

    all_finals, reference = run(main(), 600)
    ref_words = [words(" ".join(f.text for f in finals)) for finals in reference]
    # The sentences alone are heard (tiny.en mishears espeak-ng a lot: half the words).
    heard = [
        len(w & words(s)) >= len(words(s)) // 2 for w, s in zip(ref_words, SENTENCES, strict=True)
    ]
    assert sum(heard) >= 3, ref_words
    # Concurrency costs at most one correct word per sentence (batched decoding and a busy
    # worker change the misheard ones, e.g. "round-fuck" vs "roundfire" for "brown fox").
    for i, finals in enumerate(all_finals):
        got = words(" ".join(f.text for f in finals))
        expected = words(SENTENCES[i % len(SENTENCES)])
        alone_hits = len(ref_words[i % len(SENTENCES)] & expected)
        assert len(got & expected) >= alone_hits - 1, (i, got, ref_words[i % len(SENTENCES)])


@pytest.mark.parametrize(
    ("name", "requests", "code", "text"),
    [
        (
            "odd-length PCM16",
            [pb.AudioChunk(seq=1, data=b"\0" * 3201)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "PCM16",
        ),
        (
            "garbage as FLOAT32",
            [pb.AudioChunk(seq=1, data=bytes(range(256)) * 100)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "FLOAT32",
        ),
        (
            "10-MB chunk",
            [pb.AudioChunk(seq=1, data=b"\0" * (10 << 20))],
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "over the limit",
        ),
    ],
)
def test_bad_stream_does_not_disturb_a_good_one(
    recognizer: StreamingRecognizer,
    speech: SpeechSynthesizer,
    name: str,
    requests: list[pb.AudioChunk],
    code: grpc.StatusCode,
    text: str,
) -> None:
    audio = with_silence(speech.speak(SENTENCES[1]).audio, 0.3, 1.5)
    encoding = pb.FLOAT32 if "FLOAT32" in name else pb.PCM16

    async def main() -> list[TranscriptUpdate]:
        async with (
            running_server(recognizer) as srv,
            AsyncClient(f"127.0.0.1:{srv.port}") as client,
        ):
            await settled(recognizer)  # an earlier test's load must not refuse the good stream
            good = asyncio.create_task(stream_audio(client, audio, speed=2.0))
            reqs = [
                pb.StreamingRequest(config=pb.StreamConfig(encoding=encoding, sample_rate_hz=16000))
            ]
            reqs += [pb.StreamingRequest(audio=r) for r in requests]
            got_code, details, _ = await raw_stream(srv.port, reqs)
            assert got_code == code and text in details, details
            _, finals, _ = await good
        return finals

    finals = run(main())
    assert len(words(" ".join(f.text for f in finals)) & words(SENTENCES[1])) >= 4


def test_garbage_pcm16_yields_no_crash(recognizer: StreamingRecognizer) -> None:
    data = np.random.default_rng(0).bytes(64000)

    async def main() -> tuple[grpc.StatusCode, str]:
        async with running_server(recognizer) as srv:
            reqs = [
                pb.StreamingRequest(
                    config=pb.StreamConfig(encoding=pb.PCM16, sample_rate_hz=16000)
                ),
                pb.StreamingRequest(audio=pb.AudioChunk(seq=1, data=data)),
                pb.StreamingRequest(audio=pb.AudioChunk(seq=2, data=encode_pcm16(np.zeros(16000)))),
                pb.StreamingRequest(control=pb.Control(action=pb.Control.FINISH)),
            ]
            code, details, _ = await raw_stream(srv.port, reqs)
            return code, details

    code, details = run(main())
    assert code == grpc.StatusCode.OK, details


def test_graceful_shutdown_delivers_the_final_of_unfinished_speech(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    # Speech with no silence after it: the utterance is still open when the server stops.
    audio = with_silence(speech.speak(SENTENCES[3]).audio, 0.3, 0.0)

    async def main() -> tuple[list[TranscriptUpdate], bool]:
        srv_cm = running_server(recognizer)
        srv = await srv_cm.__aenter__()
        async with AsyncClient(f"127.0.0.1:{srv.port}") as client:
            # A long endpoint: the short silence espeak-ng leaves after the words must not
            # end the utterance; only the shutdown may.
            stream = await client.stream(StreamSettings(endpoint_silence_ms=5000))
            finals: list[TranscriptUpdate] = []
            ended = False

            async def collect() -> None:
                nonlocal ended
                async for ev in stream.results():
                    if isinstance(ev, TranscriptUpdate) and ev.is_final:
                        finals.append(ev)
                ended = True  # results() ends only after the server ended the stream

            collector = asyncio.create_task(collect())
            await stream.send(audio)
            n_chunks = -(-audio.shape[0] // 1600)
            for _ in range(600):
                if stream._acked >= n_chunks:
                    break
                await asyncio.sleep(0.05)
            assert not finals
            await srv.stop(30.0)
            await asyncio.wait_for(collector, 60)
            await stream.close()
        await srv_cm.__aexit__(None, None, None)
        return finals, ended

    finals, ended = run(main())
    assert ended and len(finals) == 1
    got = words(finals[0].text)
    assert len(got & words(SENTENCES[3])) >= 6, finals[0].text


def test_language_the_model_cannot_do_is_invalid_argument(recognizer: StreamingRecognizer) -> None:
    async def main() -> tuple[grpc.StatusCode, str]:
        async with running_server(recognizer) as srv:
            reqs = [
                pb.StreamingRequest(
                    config=pb.StreamConfig(encoding=pb.PCM16, sample_rate_hz=16000, language="fr")
                )
            ]
            code, details, _ = await raw_stream(srv.port, reqs)
            return code, details

    code, details = run(main())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "English-only" in details, details


def test_removing_the_model_the_server_runs_is_refused(
    recognizer: StreamingRecognizer, built_cache: Path
) -> None:
    async def main() -> tuple[grpc.StatusCode, str, int]:
        cfg = config(cache_root=built_cache)
        async with (
            running_server(recognizer, cfg) as srv,
            grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel,
        ):
            models = models_pb2_grpc.ModelsStub(channel)
            try:
                await models.Remove(models_pb2.RemoveModelRequest(name="tiny.en", precision="int8"))
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
            else:
                code, details = grpc.StatusCode.OK, ""
            info = await models.Info(models_pb2.ModelInfoRequest(name="tiny.en"))
            return code, details, sum(m.precision == "int8" for m in info.cached)

    code, details, int8_entries = run(main())
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "in use" in details, details
    assert int8_entries == 1


def test_an_utterance_longer_than_the_credit_does_not_stall_the_stream(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    # 7+ s of speech without a pause, interim results off, 2 s of credit: the engine has read
    # the whole utterance but finalises it only after the silence that follows, so the credit
    # must not wait for the utterance to be "processed" (it did, and the stream stalled).
    audio, _ = join_with_gaps([speech.speak(s).audio for s in SENTENCES[:3]], 0.05)
    audio = with_silence(audio, 0.3, 1.5)
    assert audio.shape[0] > 7 * 16_000

    async def main() -> tuple[list[TranscriptUpdate], Stream]:
        async with (
            running_server(recognizer, config(max_buffered_s=4.0)) as srv,
            AsyncClient(f"127.0.0.1:{srv.port}") as client,
        ):
            await settled(recognizer)
            settings = StreamSettings(interim_results=False, compression="pcm16")
            _, finals, stream = await stream_audio(client, audio, settings, speed=None)
        return finals, stream

    finals, stream = run(main(), 300)
    text = words(" ".join(f.text for f in finals))
    assert len(text & words(SENTENCES[1])) >= 5, text
    assert stream.stats.max_inflight_ms <= 2000 + 100


# Last in the module: it leaves the engine behind real time for a while, and the engine
# refuses new streams (RESOURCE_EXHAUSTED) until it has caught up.
def test_sending_10x_real_time_is_paced_and_loses_nothing(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    audio = long_speech(speech, 30.0)

    async def main() -> tuple[list[TranscriptUpdate], Stream]:
        cfg = config(max_buffered_s=4.0)
        async with (
            running_server(recognizer, cfg) as srv,
            AsyncClient(f"127.0.0.1:{srv.port}") as client,
        ):
            _, finals, stream = await stream_audio(client, audio, speed=10.0)
        return finals, stream

    finals, stream = run(main(), 600)
    text = words(" ".join(f.text for f in finals))
    for sentence in SENTENCES:
        assert len(words(sentence) & text) >= len(words(sentence)) // 2, (sentence, text)
    stats = stream.stats
    assert stats.max_inflight_ms <= 2000 + 100
