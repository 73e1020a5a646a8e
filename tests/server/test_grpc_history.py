"""The gRPC History service on a real server (tiny.en, espeak-ng speech, the SQLite file):
what a stream left is listed, searched, fetched, exported (the same bytes as REST and the CLI)
and deleted, bad requests get the status and a message a person can act on, and a stream
keeps being served meanwhile."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from audiototext.client import AsyncClient, ClientError
from audiototext.history.records import MAX_PAGE
from audiototext.server.grpc.history import HistoryService
from audiototext.wire._proto import history_pb2, history_pb2_grpc
from server.grpc_harness import config, run, running_server, stream_audio
from server.real_engine import SENTENCES, settled, words
from server.ws_harness import http_get
from support.speech import SpeechSynthesizer, join_with_gaps, with_silence

if TYPE_CHECKING:
    from audiototext.streaming import StreamingRecognizer

# Real-time streams into the real engine: they must not share the CPU with another worker.
pytestmark = [pytest.mark.slow, pytest.mark.realtime]

FORMATS = ("txt", "srt", "vtt", "json")
SRC = Path(__file__).resolve().parents[2] / "src"


def _cli_export(db: Path, session_id: str, fmt: str) -> bytes:
    """``audiototext history export`` in its own process, reading the server's file."""
    args = ["history", "export", session_id, "--format", fmt, "--history", str(db)]
    done = subprocess.run(
        [sys.executable, "-m", "audiototext.cli", *args],
        capture_output=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    return done.stdout


async def _refused(call: Awaitable[Any]) -> tuple[grpc.StatusCode | None, str]:
    try:
        await call
    except ClientError as exc:
        return exc.code, str(exc)
    raise AssertionError("the call was not refused")


def test_history_over_grpc_while_a_stream_runs(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer, tmp_path: Path
) -> None:
    db = tmp_path / "history.sqlite3"
    first = with_silence(speech.speak(SENTENCES[0]).audio, 0.5, 1.5)
    # Other sentences than the first stream's, so a search for its words finds it alone.
    ongoing, _ = join_with_gaps([speech.speak(s).audio for s in SENTENCES[1:4]], 1.2)

    async def main() -> None:
        async with running_server(recognizer, config(history_path=db, http_port=0)) as srv:
            await settled(recognizer)
            async with AsyncClient(f"127.0.0.1:{srv.port}") as client:
                _, finals, stream = await stream_audio(client, first, speed=None)
                sid = stream.session_id
                assert finals, "the first stream gave no final"
                await settled(recognizer)
                # A second stream at real time runs through every history call below.
                live = asyncio.create_task(stream_audio(client, ongoing, speed=1.0))
                await asyncio.sleep(1.0)

                page = await client.history_page()
                assert page.persistent and page.note == "" and page.limit == 50
                row = next(s for s in page.sessions if s.session.id == sid)
                assert row.segments == len(finals) and row.session.source == "stream"
                assert row.session.transport == "grpc" and row.session.model == "tiny.en"
                assert row.session.HasField("ended_at")

                word = max(words(finals[0].text), key=len)
                found = await client.search_history(word)
                assert [h.session.session.id for h in found.hits] == [sid]
                assert word in found.hits[0].snippet.lower() and "[" in found.hits[0].snippet

                got = await client.transcript(sid)
                assert [s.text for s in got.segments] == [f.text.strip() for f in finals]
                assert got.session.id == sid and got.text

                for fmt in FORMATS:
                    data = await client.export_transcript(sid, fmt)
                    status, _, body = await http_get(srv, f"/api/v1/history/{sid}?format={fmt}")
                    assert status == 200 and data == body, fmt
                    cli = await asyncio.to_thread(_cli_export, db, sid, fmt)
                    assert data == cli, fmt
                assert await client.export_transcript(sid) == await client.export_transcript(
                    sid, "txt"
                )

                # A time range: none started in the future; the first one alone in its own.
                assert (await client.history_page(since=time.time() + 3600)).total == 0
                start = row.session.started_at
                around = await client.history_page(since=start, until=start + 0.001)
                assert [s.session.id for s in around.sessions] == [sid] and around.total == 1

                await _bad_requests(client, sid)

                assert not live.done(), "the stream ended before the history calls"
                await client.delete_transcript(sid)
                for call in (
                    client.transcript(sid),
                    client.export_transcript(sid, "srt"),
                    client.delete_transcript(sid),
                ):
                    code, message = await _refused(call)
                    assert code == grpc.StatusCode.NOT_FOUND and sid in message
                status, _, _ = await http_get(srv, f"/api/v1/history/{sid}")
                assert status == 404

                _, live_finals, live_stream = await live
                assert len(live_finals) >= 3, "the stream was not served meanwhile"
                page = await client.history_page()
                assert [s.session.id for s in page.sessions] == [live_stream.session_id]
                assert page.total == 1 and page.next_offset == 0

    run(main(), 600)


async def _bad_requests(client: AsyncClient, sid: str) -> None:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    cases: list[tuple[Awaitable[Any], grpc.StatusCode, str]] = [
        (client.history_page(limit=-1), invalid, "between 1 and 200"),
        (client.history_page(limit=MAX_PAGE + 1), invalid, "offset"),
        (client.history_page(limit=10**9), invalid, "between 1 and 200"),
        (client.history_page(offset=-3), invalid, "negative"),
        (client.history_page(since=20.0, until=10.0), invalid, "empty"),
        (client.history_page(since=-5.0), invalid, "Unix time"),
        (client.search_history('"*"'), invalid, "no word"),
        (client.search_history("() - ^"), invalid, "letters or digits"),
        (client.search_history(""), invalid, "blank"),
        (client.search_history("fox\x00"), invalid, "control character"),
        (client.search_history("fox " * 200), invalid, "under 500"),
        (client.search_history("fox", limit=-2), invalid, "between 1 and 200"),
        (client.export_transcript(sid, "docx"), invalid, "txt, srt, vtt, json"),
        (client.export_transcript(""), invalid, "session id"),
        (client.transcript("no-such-session"), grpc.StatusCode.NOT_FOUND, "no-such-session"),
        (client.delete_transcript(""), invalid, "session id"),
    ]
    for call, code, says in cases:
        got_code, message = await _refused(call)
        assert got_code == code and says in message, (got_code, message)
    # FTS5 operators and quotes are searched as text, never parsed: no error.
    for odd in ('"quick', "quick AND (", "NEAR(quick", "text:quick"):
        await client.search_history(odd)


def test_history_needs_the_token_like_every_service(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    audio = with_silence(speech.speak(SENTENCES[2]).audio, 0.5, 1.5)

    async def main() -> None:
        async with running_server(recognizer, config(token="s3cret")) as srv:
            target = f"127.0.0.1:{srv.port}"
            async with AsyncClient(target, token="s3cret") as client:
                await settled(recognizer)
                _, finals, stream = await stream_audio(client, audio, speed=None)
                assert finals
                assert (await client.history_page()).total == 1
            for token, says in ((None, "requires a bearer token"), ("wrong", "not valid")):
                async with AsyncClient(target, token=token) as other:
                    for call in (
                        other.history_page(),
                        other.search_history("sea"),
                        other.export_transcript(stream.session_id, "vtt"),
                        other.delete_transcript(stream.session_id),
                    ):
                        code, message = await _refused(call)
                        assert code == grpc.StatusCode.UNAUTHENTICATED and says in message
            async with AsyncClient(target, token="s3cret") as client:
                assert (await client.transcript(stream.session_id)).segments  # not deleted

    run(main(), 300)


def test_without_a_history_file_memory_answers_and_says_so(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    audio = with_silence(speech.speak(SENTENCES[3]).audio, 0.5, 1.5)

    async def main() -> None:
        async with running_server(recognizer, config(http_port=0)) as srv:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}")
            health: Any = health_pb2_grpc.HealthStub(channel)
            served = await health.Check(
                health_pb2.HealthCheckRequest(service="audiototext.v1.History")
            )
            assert served.status == health_pb2.HealthCheckResponse.SERVING
            reflection: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
            async for answer in reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            ):
                listed = {s.name for s in answer.list_services_response.service}
                assert "audiototext.v1.History" in listed
                break
            await channel.close()
            async with AsyncClient(f"127.0.0.1:{srv.port}") as client:
                await settled(recognizer)
                _, finals, stream = await stream_audio(client, audio, speed=None)
                assert finals
                page = await client.history_page()
                assert not page.persistent and "--history" in page.note
                assert [s.session.id for s in page.sessions] == [stream.session_id]
                sid = stream.session_id
                for fmt in FORMATS:
                    _, _, body = await http_get(srv, f"/api/v1/history/{sid}?format={fmt}")
                    assert await client.export_transcript(sid, fmt) == body
                await client.delete_transcript(sid)
                assert (await client.history_page()).total == 0

    run(main(), 300)


def test_a_server_with_no_history_at_all_names_the_flag() -> None:
    """A server built without a recorder (an embedding that passes none): FAILED_PRECONDITION
    naming --history, on a real grpc.aio server."""

    async def main() -> None:
        server = grpc.aio.server()
        generated: Any = history_pb2_grpc
        generated.add_HistoryServicer_to_server(HistoryService(lambda: None), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub: Any = history_pb2_grpc.HistoryStub(channel)
                for call in (
                    stub.List(history_pb2.ListHistoryRequest()),
                    stub.Delete(history_pb2.DeleteTranscriptRequest(id="x")),
                ):
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        await call
                    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                    assert "--history" in (err.value.details() or "")
        finally:
            await server.stop(0)

    run(main(), 60)
