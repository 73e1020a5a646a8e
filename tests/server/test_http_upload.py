"""``POST /api/v1/transcriptions`` over a real socket: formats, refusals with clear statuses,
body limits enforced while the body arrives, and the server serving others meanwhile.

The file transcriber decodes with the real decoder but recognises nothing
(:class:`DecodingTranscriber`); ``test_the_same_transcript_as_grpc_transcribe`` runs tiny.en.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audiototext.server.app import GrpcServer
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run
from server.upload_harness import (
    DecodingTranscriber,
    error_of,
    multipart,
    raw_request,
    upload_server,
)
from server.ws_harness import http_get
from support.speech import SAMPLE_RATE_HZ, SpeechSynthesizer, write_wav

PATH = "/api/v1/transcriptions"


def _wav(tmp_path: Path, seconds: float = 2.0) -> bytes:
    """A WAV file of exactly ``seconds`` (a tone: the transcriber recognises nothing)."""
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    audio = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return write_wav(tmp_path / "talk.wav", audio, SAMPLE_RATE_HZ).read_bytes()


async def _post(
    srv: GrpcServer,
    fields: dict[str, str] | None = None,
    files: list[tuple[str, str, bytes]] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    assert srv.http is not None
    body, content_type = multipart(fields, files or [])
    return await raw_request(
        srv.http.port,
        "POST",
        PATH,
        headers={"Content-Type": content_type, **(headers or {})},
        body=body,
    )


async def _still_serving(srv: GrpcServer, wav: bytes) -> None:
    """Another client gets its transcript after a refusal."""
    status, _, body = await _post(srv, files=[("file", "ok.wav", wav)])
    assert status == 200, body
    assert json.loads(body)["text"]


def test_json_transcript_of_an_uploaded_file(tmp_path: Path) -> None:
    wav = _wav(tmp_path, 3.0)
    files = DecodingTranscriber()

    async def main() -> tuple[int, dict[str, str], Any, Any]:
        async with upload_server(FakeRecognizer(), files) as srv:
            status, headers, body = await _post(
                srv, {"word_timestamps": "true", "language": "en"}, [("file", "talk.wav", wav)]
            )
            rules = json.loads((await http_get(srv, PATH))[2])
            return status, headers, json.loads(body), rules

    status, headers, doc, rules = run(main(), 60)
    assert status == 200 and headers["content-type"] == "application/json"
    assert doc["text"] == "Hello there. General Kenobi."
    assert doc["duration_s"] == pytest.approx(3.0, abs=0.01)
    assert doc["filename"] == "talk.wav" and doc["language"] == "en"
    assert [s["text"] for s in doc["segments"]] == ["Hello there.", "General Kenobi."]
    assert len(doc["words"]) == 2
    # The core got the file itself (spooled), not a copy in memory, and the options.
    request = files.requests[0]
    assert not isinstance(request.audio, bytes)
    assert request.word_timestamps and request.language == "en" and request.task == "transcribe"
    assert rules == {
        "max_upload_bytes": 200 << 20,
        "formats": ["json", "txt", "srt", "vtt"],
        "tasks": ["transcribe", "translate"],
        "model": "tiny.en",
    }


@pytest.mark.parametrize(
    ("fmt", "media", "start"),
    [
        ("txt", "text/plain", "Hello there.\nGeneral Kenobi.\n"),
        ("srt", "application/x-subrip", "1\n00:00:00,000 --> 00:00:01,000\nHello there.\n"),
        ("vtt", "text/vtt", "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nHello there.\n"),
    ],
)
def test_text_and_subtitle_formats(tmp_path: Path, fmt: str, media: str, start: str) -> None:
    wav = _wav(tmp_path, 2.0)

    async def main() -> tuple[int, dict[str, str], bytes]:
        async with upload_server(FakeRecognizer(), DecodingTranscriber()) as srv:
            return await _post(srv, {"format": fmt}, [("file", "my talk.wav", wav)])

    status, headers, body = run(main(), 60)
    assert status == 200, body
    assert headers["content-type"].startswith(media)
    assert headers["content-disposition"] == f'attachment; filename="my_talk.{fmt}"'
    assert body.decode().startswith(start)


BAD_UPLOADS: dict[
    str, tuple[dict[str, str], list[tuple[str, str, bytes]] | None, int, str, str]
] = {
    # case: (fields, files (None: the good WAV), status, code, words in the message)
    "empty file": ({}, [("file", "empty.wav", b"")], 400, "INVALID_ARGUMENT", "is empty"),
    "undecodable": (
        {},
        [("file", "noise.mp3", np.random.default_rng(0).bytes(20_000))],
        400,
        "INVALID_ARGUMENT",
        "cannot be read as audio",
    ),
    "no file field": ({"format": "json"}, [], 400, "INVALID_ARGUMENT", "no file"),
    "file as text": ({"file": "talk.wav"}, [], 400, "INVALID_ARGUMENT", "not a file upload"),
    "unknown format": ({"format": "docx"}, None, 400, "INVALID_ARGUMENT", "unknown format 'docx'"),
    "unknown task": ({"task": "summarise"}, None, 400, "INVALID_ARGUMENT", "unknown task"),
    "unknown field": ({"beam": "3"}, None, 400, "INVALID_ARGUMENT", "unknown form field(s) beam"),
    "bad boolean": ({"word_timestamps": "maybe"}, None, 400, "INVALID_ARGUMENT", "true or false"),
    "other language": ({"language": "fr"}, None, 400, "INVALID_ARGUMENT", "English-only"),
    "translate": ({"task": "translate"}, None, 400, "INVALID_ARGUMENT", "cannot translate"),
    "other model": ({"model": "base.en"}, None, 409, "FAILED_PRECONDITION", "--model base.en"),
    "unknown model": ({"model": "tiny.enn"}, None, 404, "NOT_FOUND", "tiny.en"),
    "two files": (
        {},
        [("file", "a.wav", b"RIFF"), ("file", "b.wav", b"RIFF")],
        400,
        "INVALID_ARGUMENT",
        "Too many files",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_uploads_are_refused_clearly_and_the_server_goes_on(tmp_path: Path, case: str) -> None:
    fields, files, status, code, words = BAD_UPLOADS[case]
    wav = _wav(tmp_path)

    async def main() -> tuple[int, bytes]:
        async with upload_server(FakeRecognizer(), DecodingTranscriber()) as srv:
            got, _, body = await _post(
                srv, fields, files if files is not None else [("file", "t.wav", wav)]
            )
            await _still_serving(srv, wav)
            return got, body

    got, body = run(main(), 60)
    error = error_of(body)
    assert (got, error["code"]) == (status, code), body
    assert words in error["message"], error


def test_wrong_content_type_is_415_with_how_to_send(tmp_path: Path) -> None:
    wav = _wav(tmp_path)

    async def main() -> list[tuple[int, bytes]]:
        async with upload_server(FakeRecognizer(), DecodingTranscriber()) as srv:
            assert srv.http is not None
            out = []
            for headers in (
                {"Content-Type": "audio/wav"},
                {"Content-Type": "application/json"},
                {},
            ):
                status, _, body = await raw_request(
                    srv.http.port, "POST", PATH, headers=headers, body=wav[:1000]
                )
                out.append((status, body))
            await _still_serving(srv, wav)
            return out

    for status, body in run(main(), 60):
        assert status == 415
        error = error_of(body)
        assert error["code"] == "INVALID_ARGUMENT"
        assert "multipart/form-data" in error["message"] and "curl -F" in error["message"]


def test_a_declared_huge_body_is_refused_before_it_is_sent(tmp_path: Path) -> None:
    wav = _wav(tmp_path)

    async def main() -> tuple[int, bytes, int, bytes]:
        async with upload_server(
            FakeRecognizer(), DecodingTranscriber(), config(http_port=0, max_upload_bytes=1 << 20)
        ) as srv:
            assert srv.http is not None
            # Headers only: the server answers without waiting for the 300 MiB.
            _, content_type = multipart({}, [])
            upload = await raw_request(
                srv.http.port,
                "POST",
                PATH,
                headers={"Content-Type": content_type, "Content-Length": str(300 << 20)},
                timeout_s=10,
            )
            other = await raw_request(
                srv.http.port,
                "POST",
                "/api/v1/health",
                headers={"Content-Type": "application/json", "Content-Length": str(2 << 20)},
                timeout_s=10,
            )
            await _still_serving(srv, wav)
            return upload[0], upload[2], other[0], other[2]

    status, body, other_status, other_body = run(main(), 60)
    assert status == 413
    error = error_of(body)
    assert error["code"] == "RESOURCE_EXHAUSTED"
    assert "300.0 MiB" in error["message"] and "1.0 MiB" in error["message"]
    assert "--max-upload-mb" in error["message"]
    assert other_status == 413 and "POST /api/v1/health" in error_of(other_body)["message"]


def test_a_chunked_upload_is_cut_once_past_the_limit_while_another_client_is_served(
    tmp_path: Path,
) -> None:
    """No Content-Length: the body is counted as it arrives, and refused mid-upload (the
    client is still sending); a request from another client is answered meanwhile."""
    wav = _wav(tmp_path)

    async def main() -> tuple[int, bytes, int, float]:
        async with upload_server(
            FakeRecognizer(), DecodingTranscriber(), config(http_port=0, max_upload_bytes=256 << 10)
        ) as srv:
            assert srv.http is not None
            body, content_type = multipart({}, [("file", "big.wav", b"\0" * (600 << 10))])
            # Just past the limit, then the client waits (as one still uploading would).
            chunks = [body[i : i + (16 << 10)] for i in range(0, 272 << 10, 16 << 10)]
            upload = asyncio.create_task(
                raw_request(
                    srv.http.port,
                    "POST",
                    PATH,
                    headers={"Content-Type": content_type},
                    chunks=chunks,
                    finish=False,  # never ends: only the limit answers this request
                    pause_s=0.02,
                    timeout_s=20,
                )
            )
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            health, _, _ = await http_get(srv, "/api/v1/health")
            served_s = loop.time() - t0
            status, _, answer = await upload
            await _still_serving(srv, wav)
            return status, answer, health, served_s

    status, answer, health, served_s = run(main(), 60)
    assert status == 413
    error = error_of(answer)
    assert error["code"] == "RESOURCE_EXHAUSTED" and "256.0 KiB" in error["message"]
    assert health == 200 and served_s < 5


def test_token_and_origin_are_checked_before_the_body_is_read(tmp_path: Path) -> None:
    wav = _wav(tmp_path)
    files = DecodingTranscriber()

    async def main() -> dict[str, tuple[int, bytes]]:
        cfg = config(http_port=0, token="s3cret")
        async with upload_server(FakeRecognizer(), files, cfg) as srv:
            assert srv.http is not None
            own = f"http://127.0.0.1:{srv.http.port}"
            out = {}
            for name, headers in (
                ("missing", {}),
                ("wrong", {"Authorization": "Bearer nope"}),
                (
                    "foreign origin",
                    {"Authorization": "Bearer s3cret", "Origin": "http://evil.example"},
                ),
                ("good", {"Authorization": "Bearer s3cret", "Origin": own}),
            ):
                status, _, body = await _post(srv, {}, [("file", "t.wav", wav)], headers)
                out[name] = (status, body)
            return out

    out = run(main(), 60)
    assert out["missing"][0] == 401 and error_of(out["missing"][1])["code"] == "UNAUTHENTICATED"
    assert "Authorization: Bearer" in error_of(out["missing"][1])["message"]
    assert out["wrong"][0] == 401 and "not valid" in error_of(out["wrong"][1])["message"]
    assert out["foreign origin"][0] == 403
    assert error_of(out["foreign origin"][1])["code"] == "PERMISSION_DENIED"
    assert out["good"][0] == 200
    assert len(files.requests) == 1  # only the good one reached the transcriber


@pytest.mark.slow
def test_the_same_transcript_as_grpc_transcribe(
    built_cache: Path, speech: SpeechSynthesizer, tmp_path: Path
) -> None:
    """The upload goes through the same core as gRPC ``Transcribe``: tiny.en gives the same
    text and segments for the same WAV file both ways."""
    from audiototext.client import AsyncClient
    from audiototext.server.files import FileTranscriber
    from server.real_engine import SENTENCES
    from support.speech import with_silence

    audio = with_silence(speech.speak(SENTENCES[1]).audio, 0.3, 0.3)
    wav = write_wav(tmp_path / "one.wav", audio, SAMPLE_RATE_HZ).read_bytes()
    transcriber = FileTranscriber("tiny.en", "int8", built_cache)

    async def main() -> tuple[Any, Any, str]:
        async with (
            upload_server(FakeRecognizer(), transcriber) as srv,
            AsyncClient(f"127.0.0.1:{srv.port}") as client,
        ):
            grpc_reply = await client.transcribe(wav)
            status, _, body = await _post(srv, {}, [("file", "one.wav", wav)])
            assert status == 200, body
            _, _, srt = await _post(srv, {"format": "srt"}, [("file", "one.wav", wav)])
            return grpc_reply, json.loads(body), srt.decode()

    grpc_reply, doc, srt = run(main(), 300)
    assert doc["text"] == grpc_reply.text and doc["text"]
    assert [s["text"] for s in doc["segments"]] == [s.text for s in grpc_reply.segments]
    assert doc["duration_s"] == pytest.approx(grpc_reply.duration_s, abs=1e-3)
    assert grpc_reply.segments[0].text in srt


def test_an_upload_the_client_abandons_logs_no_error_and_the_server_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The page's Cancel: the connection closes mid-upload."""
    wav = _wav(tmp_path)

    async def main() -> None:
        async with upload_server(FakeRecognizer(), DecodingTranscriber()) as srv:
            assert srv.http is not None
            body, content_type = multipart({}, [("file", "big.wav", b"\0" * (256 << 10))])
            _, writer = await asyncio.open_connection("127.0.0.1", srv.http.port)
            head = (
                f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            writer.write(head.encode() + body[: 100 << 10])
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.close()
            await asyncio.sleep(0.5)
            await _still_serving(srv, wav)

    with caplog.at_level("ERROR"):
        run(main(), 60)
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
