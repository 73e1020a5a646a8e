"""``Transcription.Transcribe`` (whole files) over a real server with tiny.en int8.

One file transcriber (the model) is shared by the module; each test starts its own server
around it. The streaming side runs on the engine double: it is not used here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from audiototext.client import AsyncClient, ClientError
from audiototext.inference import TranscribeOptions, Transcriber
from audiototext.server.app import ServerConfig
from audiototext.server.files import FileTranscriber
from audiototext.wire._proto import transcription_pb2 as pb
from audiototext.wire._proto import transcription_pb2_grpc
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run, running_server
from server.real_engine import SENTENCES, words
from support.speech import (
    SAMPLE_RATE_HZ,
    SpeechSynthesizer,
    encode_audio,
    join_with_gaps,
    resample,
    with_silence,
    write_wav,
)

pytestmark = pytest.mark.slow

EXPECTED = [words(s) for s in SENTENCES[:2]]


@pytest.fixture(scope="module")
def transcriber(built_cache: Path) -> Iterator[FileTranscriber]:
    yield FileTranscriber("tiny.en", "int8", built_cache)


@pytest.fixture(scope="module")
def two_sentences(speech: SpeechSynthesizer) -> np.ndarray:
    audio, _ = join_with_gaps([speech.speak(s).audio for s in SENTENCES[:2]], 1.0)
    return with_silence(audio, 0.5, 0.5)


@pytest.fixture(scope="module")
def one_sentence(speech: SpeechSynthesizer) -> np.ndarray:
    return with_silence(speech.speak(SENTENCES[1]).audio, 0.3, 0.3)


def _hits(text: str) -> list[int]:
    got = words(text)
    return [len(got & want) for want in EXPECTED]


def _good(text: str) -> bool:
    """Both sentences heard (tiny.en mishears espeak-ng's "brown fox jumps ... dog"; greedy
    search even "over")."""
    first, second = _hits(text)
    return first >= 3 and second >= 6


def _transcribe(
    transcriber: FileTranscriber,
    data: bytes,
    server_config: ServerConfig | None = None,
    **kwargs: Any,
) -> pb.TranscribeResponse:
    async def main() -> pb.TranscribeResponse:
        async with (
            running_server(
                FakeRecognizer(),
                server_config,
                transcribe_file=transcriber,
            ) as srv,
            AsyncClient(f"127.0.0.1:{srv.port}") as client,
        ):
            return await client.transcribe(data, **kwargs)

    return run(main())


@pytest.mark.parametrize(
    ("name", "codec", "rate_hz"),
    [
        ("speech.wav", "", 16_000),
        ("speech.flac", "flac", 44_100),
        ("speech.mp3", "libmp3lame", 44_100),
        ("speech.ogg", "libopus", 48_000),
    ],
)
def test_transcribes_files_of_each_format(
    transcriber: FileTranscriber,
    two_sentences: np.ndarray,
    tmp_path: Path,
    name: str,
    codec: str,
    rate_hz: int,
) -> None:
    native = resample(two_sentences, SAMPLE_RATE_HZ, rate_hz)
    path = (
        write_wav(tmp_path / name, native, rate_hz)
        if not codec
        else encode_audio(tmp_path / name, native, rate_hz, codec)
    )
    # Beam search: greedy search turns one misheard word of the first sentence into a made-up
    # rest on some codecs ("stump saw vermule in the yard", mp3 at 44.1 kHz, int8).
    reply = _transcribe(transcriber, path.read_bytes(), beam_size=5)
    assert _good(reply.text), reply.text
    assert reply.language == "en"
    assert reply.duration_s == pytest.approx(two_sentences.shape[0] / SAMPLE_RATE_HZ, abs=0.1)
    assert reply.segments and reply.segments[0].start_s < reply.segments[-1].end_s
    assert " ".join(s.text for s in reply.segments) == reply.text
    assert not reply.words  # not asked for


def test_word_timestamps_greedy_search_and_language(
    transcriber: FileTranscriber,
    two_sentences: np.ndarray,
    speech: SpeechSynthesizer,
    tmp_path: Path,
    built_cache: Path,
) -> None:
    data = write_wav(tmp_path / "s.wav", two_sentences, SAMPLE_RATE_HZ).read_bytes()
    timed = _transcribe(transcriber, data, word_timestamps=True, language="en")
    assert timed.words
    starts = [w.start_s for w in timed.words]
    assert starts == sorted(starts)
    assert all(w.start_s <= w.end_s <= timed.duration_s + 0.01 for w in timed.words)
    assert words(" ".join(w.text for w in timed.words)) == words(timed.text)
    # The 1-s gap between the sentences is the widest between two words and lies where the
    # gap is (found by time, not by word index: a recogniser error such as "canoe" -> "can
    # be" shifts the index).
    gap_start = 0.5 + 1.0 + speech.speak(SENTENCES[0]).audio.size / SAMPLE_RATE_HZ
    pauses = [
        (b.start_s - a.end_s, a, b) for a, b in zip(timed.words, timed.words[1:], strict=False)
    ]
    width, last, first = max(pauses, key=lambda p: p[0])
    assert width >= 0.5
    assert last.end_s < gap_start + 1.0 and first.start_s > gap_start
    # The options reach the decoder: each reply is what the transcriber gives in-process.
    greedy = _transcribe(transcriber, data, beam_size=1)
    beam = _transcribe(transcriber, data)
    direct = Transcriber.load("tiny.en", precision="int8", cache_root=built_cache)
    for reply, size in ((greedy, 1), (beam, 5)):
        options = TranscribeOptions(beam_size=size, best_of=size, vad=True)
        segments = list(direct.transcribe(data, options))
        assert reply.text == " ".join(seg.text.strip() for seg in segments)
    assert _good(greedy.text) and _good(beam.text), (greedy.text, beam.text)


@pytest.mark.parametrize(
    ("case", "kwargs", "code", "text"),
    [
        ("empty", {"data": b""}, grpc.StatusCode.INVALID_ARGUMENT, "audio is empty"),
        (
            "garbage bytes",
            {"data": np.random.default_rng(0).bytes(50_000)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "",
        ),
        ("beam too wide", {"beam_size": 17}, grpc.StatusCode.INVALID_ARGUMENT, "beam_size"),
        ("language", {"language": "fr"}, grpc.StatusCode.INVALID_ARGUMENT, "English-only"),
        (
            "too large",
            {"data": b"\0" * (3 << 20), "server": {"max_message_bytes": 2 << 20}},
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "larger than max",
        ),
    ],
)
def test_bad_requests_get_clear_status_and_the_server_keeps_serving(
    transcriber: FileTranscriber,
    two_sentences: np.ndarray,
    one_sentence: np.ndarray,
    tmp_path: Path,
    case: str,
    kwargs: dict[str, Any],
    code: grpc.StatusCode,
    text: str,
) -> None:
    good = write_wav(tmp_path / "s.wav", two_sentences, SAMPLE_RATE_HZ).read_bytes()
    short = write_wav(tmp_path / "one.wav", one_sentence, SAMPLE_RATE_HZ).read_bytes()
    options = dict(kwargs)
    data = options.pop("data", good)
    server = options.pop("server", {})
    cfg = config(max_chunk_bytes=1 << 20, **server)

    async def main() -> tuple[ClientError, pb.TranscribeResponse]:
        async with (
            running_server(FakeRecognizer(), cfg, transcribe_file=transcriber) as srv,
            AsyncClient(f"127.0.0.1:{srv.port}") as client,
        ):
            with pytest.raises(ClientError) as err:
                await client.transcribe(data, **options)
            return err.value, await client.transcribe(short, beam_size=1)

    error, after = run(main())
    assert error.code == code, str(error)
    assert text in str(error)
    assert str(error).strip()
    assert len(words(after.text) & EXPECTED[1]) >= 6, after.text  # still serving


@pytest.mark.parametrize(
    ("model", "code", "text"),
    [
        ("base.en", grpc.StatusCode.FAILED_PRECONDITION, "audiototext serve --model base.en"),
        ("tiny.enn", grpc.StatusCode.NOT_FOUND, "Did you mean tiny.en"),
    ],
)
def test_another_model_is_refused(
    transcriber: FileTranscriber, model: str, code: grpc.StatusCode, text: str
) -> None:
    async def main() -> tuple[grpc.StatusCode, str]:
        async with (
            running_server(FakeRecognizer(), transcribe_file=transcriber) as srv,
            grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel,
        ):
            stub = transcription_pb2_grpc.TranscriptionStub(channel)
            try:
                await stub.Transcribe(pb.TranscribeRequest(audio=b"x", model=model))
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details() or ""
        return grpc.StatusCode.OK, ""

    got, details = run(main())
    assert got == code and text in details, details
