"""The transcript history through a running server (engine test double): streams over gRPC
and WebSocket and a file over gRPC are kept, listed, searched, exported and deleted by REST;
a file that cannot be used leaves the server transcribing."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from audiototext.client import AsyncClient
from audiototext.errors import ConfigError
from audiototext.history.records import Final, SessionInfo
from audiototext.server.app import GrpcServer
from audiototext.server.files import FileRequest, FileTranscript
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run, speech_like, stream_audio
from server.ws_harness import WsStreamer, http_get, http_server, ws_url


async def _json(srv: GrpcServer, path: str, **kw: Any) -> tuple[int, Any]:
    status, _, body = await http_get(srv, path, **kw)
    return status, json.loads(body)


async def _fake_file(request: FileRequest) -> FileTranscript:
    return FileTranscript(
        text="hello file world",
        language="en",
        duration_s=3.0,
        segments=((0.0, 1.0, "hello file"), (1.5, 3.0, "world")),
        words=((0.0, 0.4, "hello"), (0.5, 1.0, "file"), (1.5, 3.0, "world")),
    )


def _db_finals(path: Path) -> dict[str, list[str]]:
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT session_id, text FROM segments ORDER BY session_id, seq")
    out: dict[str, list[str]] = {}
    for sid, text in rows:
        out.setdefault(sid, []).append(text)
    conn.close()
    return out


def test_memory_history_lists_searches_exports_and_deletes_a_stream() -> None:
    audio = speech_like(6.0, seed=3)

    async def main() -> None:
        async with http_server(FakeRecognizer()) as srv:
            out = await WsStreamer(ws_url(srv)).run(audio, speed=None)
            sid = out.started[0]["session_id"]
            finals = [f["text"] for f in out.finals]
            assert len(finals) >= 2

            status, page = await _json(srv, "/api/v1/history")
            assert status == 200 and page["persistent"] is False and page["total"] == 1
            row = page["sessions"][0]
            assert row["session"]["id"] == sid and row["segments"] == len(finals)
            assert row["session"]["transport"] == "websocket"
            assert row["session"]["source"] == "stream"
            assert row["session"]["ended_at"] is not None

            word = finals[1].split()[2]  # the crc of the second utterance: in no other final
            status, found = await _json(srv, f"/api/v1/history/search?q={word}")
            assert status == 200 and [h["seq"] for h in found["hits"]] == [2]
            assert f"[{word}]" in found["hits"][0]["snippet"]

            status, doc = await _json(srv, f"/api/v1/history/{sid}")
            assert status == 200 and [s["text"] for s in doc["segments"]] == finals
            status, headers, body = await http_get(srv, f"/api/v1/history/{sid}?format=srt")
            assert status == 200 and headers["content-type"].startswith("application/x-subrip")
            assert body.decode().startswith("1\n00:00:")
            status, headers, body = await http_get(srv, f"/api/v1/history/{sid}?format=vtt")
            assert body.decode().startswith("WEBVTT") and "text/vtt" in headers["content-type"]

            status, err = await _json(srv, f"/api/v1/history/{sid}?format=docx")
            assert status == 400 and err["error"]["code"] == "INVALID_ARGUMENT"

            status, gone = await _json(srv, f"/api/v1/history/{sid}", method="DELETE")
            assert status == 200 and gone == {"deleted": sid}
            for method in ("GET", "DELETE"):
                status, err = await _json(srv, f"/api/v1/history/{sid}", method=method)
                assert status == 404 and err["error"]["code"] == "NOT_FOUND"
                assert sid in err["error"]["message"]

    run(main(), 120)


def test_file_history_keeps_grpc_websocket_and_file_transcripts(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    audio = speech_like(5.0, seed=4)

    async def main() -> tuple[dict[str, list[str]], dict[str, str]]:
        cfg = config(http_port=0, history_path=db)
        srv = GrpcServer(cfg, recognizer=FakeRecognizer(), transcribe_file=_fake_file)
        await srv.start()
        try:
            got: dict[str, list[str]] = {}
            ws = await WsStreamer(ws_url(srv)).run(audio, speed=None)
            got[ws.started[0]["session_id"]] = [f["text"] for f in ws.finals]
            async with AsyncClient(f"127.0.0.1:{srv.port}") as client:
                _, finals, stream = await stream_audio(client, audio, speed=None)
                got[stream.session_id] = [f.text for f in finals]
                answer = await client.transcribe(b"RIFF....")
                assert answer.text == "hello file world"
            # Committed before they were sent: the file has them while the server runs.
            assert {k: v for k, v in _db_finals(db).items() if k in got} == got
            status, page = await _json(srv, "/api/v1/history")
            assert status == 200 and page["persistent"] is True and page["total"] == 3
            assert page["alert"] is None
            kinds = {
                r["session"]["id"]: f"{r['session']['source']}/{r['session']['transport']}"
                for r in page["sessions"]
            }
            status, found = await _json(srv, "/api/v1/history/search?q=hello")
            assert [h["text"] for h in found["hits"]] == ["hello file"]
            file_id = found["hits"][0]["session"]["session"]["id"]
            status, doc = await _json(srv, f"/api/v1/history/{file_id}")
            assert [w["text"] for w in doc["segments"][0]["words"]] == ["hello", "file"]
            assert doc["session"]["language"] == "en"
        finally:
            await srv.stop(2.0)
        return got, kinds

    got, kinds = run(main(), 120)
    assert sorted(kinds.values()) == ["file/grpc", "stream/grpc", "stream/websocket"]
    assert {k: v for k, v in _db_finals(db).items() if k in got} == got
    conn = sqlite3.connect(db)
    ended = conn.execute("SELECT count(*) FROM sessions WHERE ended_at IS NULL").fetchone()[0]
    assert ended == 0  # every session's end was written before the server stopped


def test_history_routes_need_the_token_and_deletes_the_same_origin() -> None:
    async def main() -> None:
        async with http_server(FakeRecognizer(), token="s3cret") as srv:
            status, err = await _json(srv, "/api/v1/history")
            assert status == 401 and err["error"]["code"] == "UNAUTHENTICATED"
            status, _ = await _json(srv, "/api/v1/history/search?q=x&token=s3cret")
            assert status == 200
            auth = {"Authorization": "Bearer s3cret"}
            status, page = await _json(srv, "/api/v1/history", headers=auth)
            assert status == 200 and page["sessions"] == []
            foreign = {**auth, "Origin": "https://evil.example"}
            status, err = await _json(srv, "/api/v1/history/x", headers=foreign, method="DELETE")
            assert status == 403 and err["error"]["code"] == "PERMISSION_DENIED"
            status, err = await _json(srv, "/api/v1/history/search?q=%20", headers=auth)
            assert status == 400 and "blank" in err["error"]["message"]
            for query in ("%22*%22", "%28%29", "fox%00"):  # "*", (), a NUL: nothing to find
                status, err = await _json(srv, f"/api/v1/history/search?q={query}", headers=auth)
                assert status == 400 and err["error"]["code"] == "INVALID_ARGUMENT", query
            status, err = await _json(srv, "/api/v1/history?limit=0", headers=auth)
            assert status == 400 and err["error"]["code"] == "INVALID_ARGUMENT"

    run(main(), 60)


def test_a_live_session_cannot_be_deleted() -> None:
    async def main() -> None:
        async with http_server(FakeRecognizer()) as srv:
            assert srv.history is not None
            live = SessionInfo("live1", 1.0, None, "tiny.en", "en", "grpc", "stream")
            srv.history.recent.add_final(live, Final(1, 0.0, 1.0, "still talking"))
            status, err = await _json(srv, "/api/v1/history/live1", method="DELETE")
            assert status == 409 and err["error"]["code"] == "FAILED_PRECONDITION"

    run(main(), 60)


async def _history_alert(srv: GrpcServer) -> dict[str, Any]:
    """The history_unavailable alert of /api/v1/system, once the monitor's check raised it."""
    for _ in range(100):  # checked once a second; raised at the first check after the failure
        _, doc = await _json(srv, "/api/v1/system")
        found = [a for a in doc["alerts"] if a["name"] == "history_unavailable"]
        if found:
            alert: dict[str, Any] = found[0]
            return alert
        await asyncio.sleep(0.1)
    raise AssertionError(f"no history_unavailable alert: {doc['alerts']}")


def _damage(db: Path) -> None:
    """Another program overwrites the file, its write-ahead log and the log's index."""
    for part in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        size = part.stat().st_size
        with part.open("r+b") as f:
            f.write(b"\0" * size if part.name.endswith("-shm") else b"garbage!" * size)


def _hold_exclusively(db: Path) -> sqlite3.Connection:
    """Another program holding the file's lock for good (no reader or writer gets in)."""
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    return holder


@pytest.mark.parametrize("damage", ["corrupt", "locked"])
def test_an_unusable_file_is_an_alert_and_the_server_still_transcribes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    db = tmp_path / "history.sqlite3"
    holder = None
    if damage == "corrupt":
        db.write_bytes(b"not sqlite " * 1000)
    else:
        sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.commit()
        holder = _hold_exclusively(db)
    audio = speech_like(4.0, seed=5)

    async def main() -> dict[str, Any]:
        async with http_server(FakeRecognizer(), history_path=db) as srv:
            alert = await _history_alert(srv)
            out = await WsStreamer(ws_url(srv)).run(audio, speed=None)
            assert out.finals and out.close_codes == [1000]
            status, page = await _json(srv, "/api/v1/history")
            assert status == 200 and page["persistent"] is False and page["total"] == 1
            assert str(db) in page["alert"]
            return alert

    try:
        with caplog.at_level(logging.ERROR, logger="audiototext.server.recording"):
            alert = run(main(), 60)
    finally:
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(str(db) in m and "memory only" in m for m in logged), logged
    why = "locked by another program" if damage == "locked" else "not a readable SQLite"
    assert str(db) in alert["message"] and why in alert["message"], alert
    assert "memory only until a restart" in alert["message"]


@pytest.mark.parametrize("where", ["file_as_folder", "folder_as_file"])
def test_an_unwritable_history_path_is_refused_before_the_server_starts(
    tmp_path: Path, where: str
) -> None:
    if where == "file_as_folder":
        (tmp_path / "file").write_text("x")
        db = tmp_path / "file" / "sub" / "history.sqlite3"
        named = f"{tmp_path / 'file'} is a file, not a folder"
    else:
        db = tmp_path / "folder"
        db.mkdir()
        named = "is a folder; give a file name"
    with pytest.raises(ConfigError, match="--history") as caught:
        config(history_path=db)
    assert named in str(caught.value) and str(db) in str(caught.value)


def test_a_file_damaged_mid_run_is_an_alert_and_finals_still_arrive(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another program overwrites the file, its write-ahead log and its index while the server
    runs: the next commit finds no database; the stream goes on from memory, with the alert."""
    db = tmp_path / "history.sqlite3"
    first, second = speech_like(4.0, seed=7), speech_like(4.0, seed=8)

    async def main() -> tuple[list[str], dict[str, Any], dict[str, Any]]:
        async with http_server(FakeRecognizer(), history_path=db) as srv:
            assert srv.history is not None and srv.history.persistent
            before = await WsStreamer(ws_url(srv)).run(first, speed=None)
            assert before.finals and _db_finals(db)
            for _ in range(100):  # its end is written in the background: wait for it
                _, page = await _json(srv, "/api/v1/history")
                if page["sessions"][0]["session"]["ended_at"] is not None:
                    break
                await asyncio.sleep(0.05)
            _damage(db)
            out = await WsStreamer(ws_url(srv)).run(second, speed=None)
            assert out.finals and out.close_codes == [1000]
            alert = await _history_alert(srv)
            status, page = await _json(srv, "/api/v1/history")
            assert status == 200 and page["persistent"] is False
            sid = out.started[0]["session_id"]
            status, doc = await _json(srv, f"/api/v1/history/{sid}")
            assert status == 200
            return [f["text"] for f in out.finals], alert, doc

    with caplog.at_level(logging.ERROR, logger="audiototext.server.recording"):
        finals, alert, doc = run(main(), 60)
    assert [s["text"] for s in doc["segments"]] == finals  # kept in memory
    assert "not a readable SQLite database" in alert["message"] and str(db) in alert["message"]
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1 and "not a database" in logged[0], logged
    assert "move it away" in logged[0]


def test_memory_answers_reads_while_the_file_cannot_be_read(tmp_path: Path) -> None:
    """The recent cache in front of the file: one transcript comes from memory without the
    file; a listing needs the file, and while it cannot be read memory answers and says why."""
    db = tmp_path / "history.sqlite3"
    audio = speech_like(4.0, seed=9)

    async def main() -> None:
        async with http_server(FakeRecognizer(), history_path=db) as srv:
            out = await WsStreamer(ws_url(srv)).run(audio, speed=None)
            sid = out.started[0]["session_id"]
            _damage(db)
            status, doc = await _json(srv, f"/api/v1/history/{sid}")
            assert status == 200 and len(doc["segments"]) == len(out.finals)
            status, page = await _json(srv, "/api/v1/history")
            assert status == 200 and [r["session"]["id"] for r in page["sessions"]] == [sid]
            assert page["persistent"] is True  # nothing failed to write yet
            assert "not a readable SQLite" in page["alert"] and "kept in memory" in page["alert"]

    run(main(), 60)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"history_days": 0.0}, "--history-days"),
        ({"history_days": 1e12}, "--history-days"),
        ({"history_max_sessions": 0}, "--history-max-sessions"),
    ],
)
def test_absurd_retention_is_refused_at_configuration(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        config(**changes)


def test_a_file_locked_mid_run_is_logged_and_finals_still_arrive(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "history.sqlite3"
    audio = speech_like(4.0, seed=6)

    async def main() -> None:
        async with http_server(FakeRecognizer(), history_path=db) as srv:
            assert srv.history is not None and srv.history.persistent
            holder = sqlite3.connect(db, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
            try:
                out = await WsStreamer(ws_url(srv)).run(audio, speed=None)
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            assert out.finals and out.close_codes == [1000]
            status, page = await _json(srv, "/api/v1/history")
            assert status == 200 and page["persistent"] is False
            assert page["sessions"][0]["segments"] == len(out.finals)
            alert = await _history_alert(srv)
            assert "locked by another program" in alert["message"], alert

    with caplog.at_level(logging.ERROR, logger="audiototext.server.recording"):
        run(main(), 60)
    alerts = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(str(db) in m and "locked" in m and "memory only" in m for m in alerts), alerts
    assert len(alerts) == 1, alerts  # said once, not once per final
