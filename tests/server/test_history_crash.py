"""``serve --history`` killed with SIGKILL mid-stream: every final the client had received is
in the history file, because a final is committed before it is sent.

The real server as a process (tiny.en int8 from the test cache), espeak-ng speech streamed at
the pace of speech over the WebSocket, ``kill -9`` once a few finals have arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from audiototext.cli import main
from audiototext.models.cache import ModelCache
from server.grpc_harness import run
from server.real_engine import long_speech
from server.ws_harness import PCM16_CONFIG, pcm16_frames
from support.speech import SpeechSynthesizer

pytestmark = [pytest.mark.slow, pytest.mark.realtime]

CLI = [sys.executable, "-m", "audiototext.cli"]
FINALS_BEFORE_KILL = 3


@pytest.fixture
def server(
    filled_cache: ModelCache, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """``audiototext serve --history DB`` on free ports; yields (process, ws url, DB)."""
    db = tmp_path / "history.sqlite3"
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", "0", "--precision", "int8", "--history", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        lines = [proc.stdout.readline(), proc.stdout.readline()]  # gRPC, then the page
        match = re.search(r"web page: http://([\d.]+:\d+)/", lines[1])
        if match is None:
            proc.kill()
            raise AssertionError(f"server did not start: {lines!r} {proc.stderr.read()}")
        yield proc, f"ws://{match.group(1)}/api/v1/stream", db
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


async def _stream_until_killed(
    url: str, frames: list[bytes], proc: subprocess.Popen[str]
) -> tuple[str, list[dict[str, Any]]]:
    """Stream at real time; SIGKILL the server after FINALS_BEFORE_KILL finals; returns the
    session id and every final the client received."""
    finals: list[dict[str, Any]] = []
    session_id = ""
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"config": PCM16_CONFIG}))

        async def send() -> None:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with contextlib.suppress(websockets.ConnectionClosed):
                for n, frame in enumerate(frames):
                    await ws.send(frame)
                    await asyncio.sleep(max(0.0, t0 + (n + 1) * 0.1 - loop.time()))
                await ws.send(json.dumps({"control": {"action": "FINISH"}}))

        sender = asyncio.create_task(send())
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                msg = json.loads(raw)
                assert "error" not in msg, msg
                if "started" in msg:
                    session_id = msg["started"]["session_id"]
                result = msg.get("result")
                if result and result["is_final"]:
                    finals.append(result)
                    if len(finals) == FINALS_BEFORE_KILL:
                        proc.send_signal(signal.SIGKILL)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    return session_id, finals


def test_every_final_the_client_saw_survives_kill_9(
    server: tuple[subprocess.Popen[str], str, Path],
    speech: SpeechSynthesizer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proc, url, db = server
    frames = pcm16_frames(long_speech(speech, 40.0))
    session_id, finals = run(_stream_until_killed(url, frames, proc), 300)
    assert proc.wait(30) == -signal.SIGKILL, "the server ended before it was killed"
    assert session_id and len(finals) >= FINALS_BEFORE_KILL
    assert any(f["text"].strip() for f in finals)

    # The file as the killed process left it (its WAL not checkpointed): SQLite recovers it.
    conn = sqlite3.connect(db)
    stored = [
        (text, words)
        for text, words in conn.execute(
            "SELECT text, words FROM segments WHERE session_id = ? ORDER BY seq", (session_id,)
        )
    ]
    ended = conn.execute("SELECT ended_at FROM sessions WHERE id = ?", (session_id,)).fetchone()
    conn.close()
    # Every final received is there, in order; more may have been committed but not sent.
    assert [t for t, _ in stored[: len(finals)]] == [f["text"] for f in finals]
    for (_, words), final in zip(stored, finals, strict=False):
        assert [w[0] for w in json.loads(words or "[]")] == [w["text"] for w in final["words"]]
    assert ended == (None,)  # it never ended: `history list` says "unfinished"

    # And the CLI reads the same file.
    assert main(["history", "export", session_id, "--format", "txt", "--history", str(db)]) == 0
    exported = capsys.readouterr().out
    for final in finals:
        if final["text"].strip():
            assert final["text"].strip() in exported
