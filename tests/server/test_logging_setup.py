"""``serve --log-format``: JSON lines with the session id, and the human format."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
import websockets

from audiototext.server.logging_setup import configure_logging, session_context
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run
from server.ws_harness import PCM16_CONFIG, http_server, ws_url


@pytest.fixture
def root_handlers() -> Iterator[None]:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved:
        root.addHandler(handler)
    root.setLevel(level)


def _capture(log_format: str) -> io.StringIO:
    configure_logging(log_format, logging.INFO)  # type: ignore[arg-type]
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    return stream


def test_json_lines_carry_ts_level_logger_message_and_the_session(root_handlers: None) -> None:
    out = _capture("json")
    log = logging.getLogger("audiototext.server.streams")

    async def stream_task() -> None:
        session_context.set("abc123")
        log.warning("chunk %d refused", 7)
        # A task created by the stream's task inherits the id (the session's pump does).
        await asyncio.create_task(asyncio.to_thread(log.info, "in a thread of the stream"))

    log.info("no stream here")
    asyncio.run(stream_task())
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines] == [
        "no stream here",
        "chunk 7 refused",
        "in a thread of the stream",
        "failed",
    ]
    assert "session_id" not in lines[0] and "session_id" not in lines[3]
    assert lines[1]["session_id"] == lines[2]["session_id"] == "abc123"
    assert lines[1]["level"] == "WARNING" and lines[1]["logger"] == "audiototext.server.streams"
    assert lines[1]["ts"].endswith("Z") and len(lines[1]["ts"]) == len("2026-01-01T00:00:00.000Z")
    assert "ValueError: boom" in lines[3]["exc"]


def test_human_lines_name_the_session_unless_the_message_does(root_handlers: None) -> None:
    out = _capture("human")
    log = logging.getLogger("audiototext.server.sessions")

    async def stream_task() -> None:
        session_context.set("s1")
        log.warning("credit ran out")
        log.warning("stream s1: engine failed")

    asyncio.run(stream_task())
    assert out.getvalue().splitlines() == [
        "WARNING audiototext.server.sessions [s1]: credit ran out",
        "WARNING audiototext.server.sessions: stream s1: engine failed",
    ]


def test_an_unknown_format_is_refused(root_handlers: None) -> None:
    with pytest.raises(ValueError, match="--log-format"):
        configure_logging("xml", logging.INFO)  # type: ignore[arg-type]


def test_the_servers_own_stream_logs_carry_the_session_id(root_handlers: None) -> None:
    """A stream dropped without FINISH: the reaper's line names its session in JSON."""
    out = _capture("json")

    async def main() -> str:
        async with http_server(FakeRecognizer(), config(http_port=0, resume_grace_s=0.2)) as srv:
            async with websockets.connect(ws_url(srv)) as ws:
                await ws.send(json.dumps({"config": PCM16_CONFIG}))
                started = json.loads(await ws.recv())["started"]
            for _ in range(100):  # the reaper looks every 0.05 s here
                if "no reconnect" in out.getvalue():
                    break
                await asyncio.sleep(0.05)
            session_id: str = started["session_id"]
            return session_id

    session_id = run(main(), 60)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    reaped = [line for line in lines if "no reconnect" in line["message"]]
    assert reaped, lines
    assert reaped[0]["session_id"] == session_id
    assert reaped[0]["logger"] == "audiototext.server.sessions"
