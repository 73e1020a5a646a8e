"""OpenAI's file speech-to-text API (``/v1/audio/...``, ``/v1/models``) driven by the official
``openai`` client against a real server: uvicorn on a socket, the real file transcriber with
tiny.en int8, espeak-ng speech. Every response format, timestamps, streaming, the prompt,
and refusals in OpenAI's error shape each followed by a request that still works.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest

from audiototext.server.files import FileTranscriber
from server.openai_harness import openai_error_of, threaded_server
from server.real_engine import SENTENCES, words
from support.speech import (
    SAMPLE_RATE_HZ,
    SpeechSynthesizer,
    join_with_gaps,
    with_silence,
    write_wav,
)

pytestmark = pytest.mark.slow

TOKEN = "open-sesame"
EXPECTED = [words(s) for s in SENTENCES[:2]]


@pytest.fixture(scope="module")
def wav(speech: SpeechSynthesizer, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Two sentences with a pause between them (two segments)."""
    audio, _ = join_with_gaps([speech.speak(s).audio for s in SENTENCES[:2]], 1.0)
    path = tmp_path_factory.mktemp("openai") / "two.wav"
    return write_wav(path, with_silence(audio, 0.5, 0.5), SAMPLE_RATE_HZ).read_bytes()


@pytest.fixture(scope="module")
def base_url(built_cache: Path) -> Iterator[str]:
    transcriber = FileTranscriber("tiny.en", "int8", built_cache)
    with threaded_server(transcriber, token=TOKEN, cache_root=built_cache) as (_, url):
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[openai.OpenAI]:
    # No retries: a refusal must reach the test as it was sent.
    with openai.OpenAI(base_url=base_url, api_key=TOKEN, max_retries=0, timeout=300) as c:
        yield c


def _heard(text: str) -> bool:
    """Both sentences heard (tiny.en mishears some of espeak-ng's first sentence)."""
    got = words(text)
    return len(got & EXPECTED[0]) >= 3 and len(got & EXPECTED[1]) >= 6


def _file(data: bytes, name: str = "two.wav") -> tuple[str, io.BytesIO]:
    return name, io.BytesIO(data)


def test_json_and_text_for_every_model_name(client: openai.OpenAI, wav: bytes) -> None:
    """whisper-1 (OpenAI's name) is the server's model; so are its own name and ``""``."""
    json_doc = client.audio.transcriptions.create(model="whisper-1", file=_file(wav))
    assert _heard(json_doc.text), json_doc.text
    assert json_doc.usage is not None and json_doc.usage.type == "duration"
    assert json_doc.usage.seconds == pytest.approx(len(wav[44:]) / 2 / SAMPLE_RATE_HZ, abs=0.01)
    text = client.audio.transcriptions.create(
        model="tiny.en", file=_file(wav), response_format="text"
    )
    assert isinstance(text, str) and _heard(text)
    # The same file and options: the same transcript whatever the model is called.
    assert " ".join(text.split()) == json_doc.text


def _cue_times(document: str, separator: str) -> list[tuple[float, float]]:
    clock = rf"(\d\d):(\d\d):(\d\d){re.escape(separator)}(\d\d\d)"
    times = []
    for match in re.finditer(clock + " --> " + clock, document):
        h1, m1, s1, f1, h2, m2, s2, f2 = (int(g) for g in match.groups())
        times.append((h1 * 3600 + m1 * 60 + s1 + f1 / 1000, h2 * 3600 + m2 * 60 + s2 + f2 / 1000))
    return times


@pytest.mark.parametrize(("fmt", "separator"), [("srt", ","), ("vtt", ".")])
def test_subtitles_parse_with_increasing_times(
    client: openai.OpenAI, wav: bytes, fmt: Any, separator: str
) -> None:
    document = client.audio.transcriptions.create(
        model="whisper-1", file=_file(wav), response_format=fmt
    )
    assert isinstance(document, str)
    if fmt == "vtt":
        assert document.startswith("WEBVTT\n\n")
    else:
        assert document.startswith("1\n")
    times = _cue_times(document, separator)
    assert len(times) >= 2, document
    flat = [t for pair in times for t in pair]
    assert flat == sorted(flat) and all(a < b for a, b in times), times
    assert _heard(document), document


def test_verbose_json_with_segment_and_word_timestamps(client: openai.OpenAI, wav: bytes) -> None:
    doc = client.audio.transcriptions.create(
        model="whisper-1",
        file=_file(wav),
        response_format="verbose_json",
        timestamp_granularities=["segment", "word"],
    )
    assert doc.language == "en" and _heard(doc.text)
    duration = len(wav[44:]) / 2 / SAMPLE_RATE_HZ
    assert doc.duration == pytest.approx(duration, abs=0.01)
    assert doc.segments is not None and len(doc.segments) >= 2
    assert " ".join(s.text for s in doc.segments) == doc.text
    starts = [s.start for s in doc.segments]
    assert starts == sorted(starts) and all(0 <= s.start < s.end <= duration for s in doc.segments)
    for k, s in enumerate(doc.segments):
        assert s.id == k and s.tokens and s.avg_logprob < 0 and s.temperature == 0.0
        assert 0.0 <= s.no_speech_prob <= 1.0 and s.compression_ratio > 0
    assert doc.words is not None and len(doc.words) >= 10
    assert words(" ".join(w.word for w in doc.words)) == words(doc.text)
    times = [t for w in doc.words for t in (w.start, w.end)]
    assert times == sorted(times) and times[-1] <= duration + 0.05
    # The second sentence's words come after the pause, within its segment.
    stella = next(w for w in doc.words if "stella" in w.word.lower())
    assert doc.segments[-1].start - 0.5 <= stella.start <= doc.segments[-1].end


def test_verbose_json_words_only_and_segments_by_default(client: openai.OpenAI, wav: bytes) -> None:
    only_words = client.audio.transcriptions.create(
        model="whisper-1",
        file=_file(wav),
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert only_words.words and only_words.segments is None
    default = client.audio.transcriptions.create(
        model="whisper-1", file=_file(wav), response_format="verbose_json"
    )
    assert default.segments and default.words is None


def test_stream_deltas_concatenate_to_the_done_text(client: openai.OpenAI, wav: bytes) -> None:
    events = list(
        client.audio.transcriptions.create(model="whisper-1", file=_file(wav), stream=True)
    )
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and set(kinds[:-1]) == {"transcript.text.delta"}
    deltas = [e.delta for e in events[:-1]]  # type: ignore[union-attr]
    assert len(deltas) >= 2  # one per segment, as each is decoded
    done = events[-1]
    assert done.type == "transcript.text.done"
    assert "".join(deltas) == done.text and _heard(done.text)
    plain = client.audio.transcriptions.create(model="whisper-1", file=_file(wav))
    assert done.text == plain.text


def test_a_prompt_is_accepted_and_reaches_the_decoder(client: openai.OpenAI, wav: bytes) -> None:
    """A prompt in the speech's words leaves the transcript right; one long past the
    decoder's context (224 tokens) is cut, not refused, and as Whisper does with a
    repetitive prompt, tiny.en goes on repeating it: the prompt is in the decoder's context."""
    prompted = client.audio.transcriptions.create(
        model="whisper-1", file=_file(wav), prompt="Stella, the fox and the dog."
    )
    assert _heard(prompted.text), prompted.text
    long = client.audio.transcriptions.create(
        model="whisper-1", file=_file(wav), prompt="A long meeting about foxes. " * 200
    )
    assert "meeting about foxes" in long.text, long.text


def test_temperature_above_zero_samples_and_still_transcribes(
    client: openai.OpenAI, wav: bytes
) -> None:
    doc = client.audio.transcriptions.create(
        model="whisper-1", file=_file(wav), response_format="verbose_json", temperature=0.4
    )
    assert doc.segments and all(s.temperature >= 0.4 for s in doc.segments)
    assert len(words(doc.text) & EXPECTED[1]) >= 4, doc.text


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "whisper-1" in ids and "tiny.en" in ids, ids
    model = client.models.retrieve("tiny.en")
    assert model.id == "tiny.en" and model.object == "model" and model.created > 0
    assert client.models.retrieve("whisper-1").owned_by == "audiototext"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("tiny.xx")
    assert openai_error_of(caught.value.response.content)["code"] == "model_not_found"


# case: (keyword arguments of transcriptions.create, exception, status, param, words)
BAD_REQUESTS: dict[str, tuple[dict[str, Any], type[openai.APIStatusError], int, Any, str]] = {
    "not audio": (
        {"file": ("notes.wav", io.BytesIO(b"these bytes are not audio" * 40))},
        openai.BadRequestError,
        400,
        "file",
        "notes.wav",
    ),
    "empty file": (
        {"file": ("empty.wav", io.BytesIO(b""))},
        openai.BadRequestError,
        400,
        "file",
        "is empty",
    ),
    "unknown model": (
        {"model": "tiny.xx"},
        openai.NotFoundError,
        404,
        "model",
        "tiny.en",
    ),
    "unknown response_format": (
        {"response_format": "yaml"},
        openai.BadRequestError,
        400,
        "response_format",
        "verbose_json",
    ),
    "temperature too high": (
        {"temperature": 2.5},
        openai.BadRequestError,
        400,
        "temperature",
        "from 0 to 1",
    ),
    "granularity without verbose_json": (
        {"timestamp_granularities": ["word"]},
        openai.BadRequestError,
        400,
        "timestamp_granularities",
        "verbose_json",
    ),
    "stream of subtitles": (
        {"stream": True, "response_format": "srt"},
        openai.BadRequestError,
        400,
        "stream",
        "json or text",
    ),
    "german on an English-only model": (
        {"language": "de"},
        openai.BadRequestError,
        400,
        "language",
        "English-only",
    ),
    "an OpenAI field not supported here": (
        {"extra_body": {"keywords": "fox"}},
        openai.BadRequestError,
        400,
        "keywords",
        "unsupported",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_openai_errors_and_the_server_goes_on(
    client: openai.OpenAI, wav: bytes, case: str
) -> None:
    changes, kind, status, param, message_words = BAD_REQUESTS[case]
    arguments: dict[str, Any] = {"model": "whisper-1", "file": _file(wav), **changes}
    with pytest.raises(kind) as caught:
        client.audio.transcriptions.create(**arguments)
    error = openai_error_of(caught.value.response.content)
    assert caught.value.status_code == status
    assert error["param"] == param and message_words in error["message"], error
    assert caught.value.body == error  # what the client's exception carries
    after = client.audio.transcriptions.create(model="whisper-1", file=_file(wav))
    assert _heard(after.text), after.text


def test_a_wrong_or_missing_token_is_401_and_the_right_one_still_works(
    base_url: str, client: openai.OpenAI, wav: bytes
) -> None:
    with openai.OpenAI(base_url=base_url, api_key="guess", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError) as caught:
            wrong.audio.transcriptions.create(model="whisper-1", file=_file(wav))
        error = openai_error_of(caught.value.response.content)
        assert error["code"] == "invalid_api_key" and "not valid" in error["message"]
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
    import httpx2

    missing = httpx2.get(f"{base_url}/models", timeout=30)
    assert missing.status_code == 401
    assert "Bearer" in openai_error_of(missing.content)["message"]
    assert "whisper-1" in [m.id for m in client.models.list()]


def test_unknown_paths_and_other_bodies_get_openai_errors(base_url: str) -> None:
    import httpx2

    auth = {"Authorization": f"Bearer {TOKEN}"}
    nothing = httpx2.get(f"{base_url}/audio/speech", headers=auth, timeout=30)
    assert nothing.status_code == 404 and openai_error_of(nothing.content)
    # GET falls through to the page's static files (the page owns every other GET): 404.
    wrong_method = httpx2.get(f"{base_url}/audio/transcriptions", headers=auth, timeout=30)
    assert wrong_method.status_code in (404, 405) and openai_error_of(wrong_method.content)
    as_json = httpx2.post(
        f"{base_url}/audio/transcriptions", headers=auth, json={"model": "x"}, timeout=30
    )
    assert as_json.status_code == 415
    assert "multipart/form-data" in openai_error_of(as_json.content)["message"]
    # A page of another origin may not use it from a browser (403, OpenAI's shape).
    foreign = httpx2.post(
        f"{base_url}/audio/transcriptions",
        headers={**auth, "Origin": "http://elsewhere.example"},
        files={"file": ("a.wav", b"RIFF")},
        timeout=30,
    )
    assert foreign.status_code == 403 and openai_error_of(foreign.content)["param"] is None
    # The rest of the API keeps its own shape.
    rest = httpx2.get(f"{base_url.removesuffix('/v1')}/api/v1/nothing", headers=auth)
    assert set(rest.json()["error"]) == {"code", "message"}


def test_too_large_uploads_are_413_in_openai_shape(tmp_path: Path) -> None:
    """A small --max-upload-mb: a larger file is refused before it is read (Content-Length)
    and, sent without a length, as it arrives; a file under the limit still works."""
    import httpx2

    from server.upload_harness import DecodingTranscriber

    t = np.arange(SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    small = write_wav(tmp_path / "s.wav", 0.3 * np.sin(2 * np.pi * 440 * t), SAMPLE_RATE_HZ)
    big = b"RIFF" + b"\0" * (300 << 10)
    with (
        threaded_server(DecodingTranscriber(), max_upload_bytes=200 << 10) as (_, url),
        openai.OpenAI(base_url=url, api_key="unused", max_retries=0) as client,
    ):
        with pytest.raises(openai.APIStatusError) as caught:
            client.audio.transcriptions.create(model="whisper-1", file=("big.wav", big))
        assert caught.value.status_code == 413
        error = openai_error_of(caught.value.response.content)
        assert error["code"] == "file_too_large" and "200.0 KiB" in error["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            boundary = b"--b0undary"
            yield boundary + b'\r\nContent-Disposition: form-data; name="model"\r\n\r\nx\r\n'
            yield (
                boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="b"\r\n\r\n'
            )
            for _ in range(10):
                yield b"\0" * (64 << 10)
            yield b"\r\n" + boundary + b"--\r\n"

        chunked = httpx2.post(
            f"{url}/audio/transcriptions",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
            timeout=60,
        )
        assert chunked.status_code == 413, chunked.text
        assert "over the limit" in openai_error_of(chunked.content)["message"]
        ok = client.audio.transcriptions.create(
            model="whisper-1", file=("s.wav", small.read_bytes())
        )
        assert ok.text == "Hello there. General Kenobi."
