"""``POST /api/v1/sessions/{id}/segments`` through a running server (engine test double): a
page's locally transcribed segments join the session's transcript after its finals, marked
local, once per segment id (a retried upload is not doubled), across a restart with the same
history file; malformed uploads and unknown sessions get a message, and the server serves on."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from audiototext.server.app import GrpcServer
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run, speech_like
from server.ws_harness import WsStreamer, http_get, http_server, ws_url


async def _post(
    srv: GrpcServer, path: str, body: Any, token: str | None = None, raw: bytes | None = None
) -> tuple[int, Any]:
    assert srv.http is not None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{srv.http.port}{path}", data=data, headers=headers, method="POST"
    )

    def fetch() -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    return await asyncio.to_thread(fetch)


async def _transcript(srv: GrpcServer, sid: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    status, _, body = await http_get(srv, f"/api/v1/history/{sid}?format=json", headers=headers)
    assert status == 200, body
    return json.loads(body)


def _seg(ident: str, start: float, text: str) -> dict[str, Any]:
    return {"id": ident, "start_s": start, "end_s": start + 1.0, "text": text}


LOCAL = [_seg("p-1", 10.0, " the quick brown fox "), _seg("p-2", 12.0, "jumps over the dog")]


def test_local_segments_join_the_file_history_once_and_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    audio = speech_like(5.0, seed=5)

    async def first_server() -> tuple[str, list[str]]:
        srv = GrpcServer(config(http_port=0, history_path=db), recognizer=FakeRecognizer())
        await srv.start()
        try:
            out = await WsStreamer(ws_url(srv)).run(audio, speed=None)
            sid = str(out.started[0]["session_id"])
            finals = [f["text"] for f in out.finals]
            assert finals
            path = f"/api/v1/sessions/{sid}/segments"
            status, answer = await _post(srv, path, {"segments": LOCAL})
            assert status == 200, answer
            assert answer == {"session_id": sid, "added": 2, "repeated": 0}
            # The answer was lost, say: the page sends the same again, plus one more.
            again = {"segments": [*LOCAL, _seg("p-3", 14.0, "and runs away")]}
            status, answer = await _post(srv, path, again)
            assert status == 200 and (answer["added"], answer["repeated"]) == (1, 2)
            doc = await _transcript(srv, sid)
            texts = [s["text"] for s in doc["segments"]]
            local = ["the quick brown fox", "jumps over the dog", "and runs away"]
            assert texts == [*finals, *local]
            assert [s["origin"] for s in doc["segments"]] == ["server"] * len(finals) + [
                "local"
            ] * 3
            assert [s["seq"] for s in doc["segments"]] == list(range(1, len(texts) + 1))
            return sid, texts
        finally:
            await srv.stop(2.0)

    sid, texts = run(first_server(), 120)
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT origin, client_id FROM segments WHERE session_id = ? ORDER BY seq", (sid,)
    ).fetchall()
    conn.close()
    assert rows[-3:] == [("local", "p-1"), ("local", "p-2"), ("local", "p-3")]

    async def second_server() -> None:
        # Restarted on the same file: the session is not live and not in memory, only on disk.
        srv = GrpcServer(config(http_port=0, history_path=db), recognizer=FakeRecognizer())
        await srv.start()
        try:
            path = f"/api/v1/sessions/{sid}/segments"
            status, answer = await _post(
                srv, path, {"segments": [LOCAL[1], _seg("p-4", 16.0, "into the woods")]}
            )
            assert status == 200 and (answer["added"], answer["repeated"]) == (1, 1)
            doc = await _transcript(srv, sid)
            assert [s["text"] for s in doc["segments"]] == [*texts, "into the woods"]
            status, found = await _json_get(srv, "/api/v1/history/search?q=woods")
            assert status == 200 and [h["session"]["session"]["id"] for h in found["hits"]] == [sid]
        finally:
            await srv.stop(2.0)

    run(second_server(), 120)


async def _json_get(srv: GrpcServer, path: str) -> tuple[int, Any]:
    status, _, body = await http_get(srv, path)
    return status, json.loads(body)


def test_memory_history_takes_local_segments_of_a_finished_stream() -> None:
    audio = speech_like(4.0, seed=6)

    async def main() -> None:
        async with http_server(FakeRecognizer()) as srv:
            out = await WsStreamer(ws_url(srv)).run(audio, speed=None)
            sid = str(out.started[0]["session_id"])
            status, answer = await _post(
                srv, f"/api/v1/sessions/{sid}/segments", {"segments": LOCAL}
            )
            assert status == 200 and answer["added"] == 2
            status, answer = await _post(
                srv, f"/api/v1/sessions/{sid}/segments", {"segments": LOCAL}
            )
            assert status == 200 and (answer["added"], answer["repeated"]) == (0, 2)
            doc = await _transcript(srv, sid)
            assert [s["origin"] for s in doc["segments"]][-3:] == ["server", "local", "local"]
            assert doc["text"].endswith("the quick brown fox jumps over the dog")

    run(main(), 120)


def test_bad_uploads_and_unknown_sessions_are_refused_with_a_reason() -> None:
    audio = speech_like(3.0, seed=7)
    token = "s3cret-token"

    async def main() -> None:
        async with http_server(FakeRecognizer(), token=token) as srv:
            out = await WsStreamer(ws_url(srv), token=token).run(audio, speed=None)
            sid = str(out.started[0]["session_id"])
            path = f"/api/v1/sessions/{sid}/segments"
            good = {"segments": LOCAL}

            status, err = await _post(srv, path, good)
            assert status == 401 and err["error"]["code"] == "UNAUTHENTICATED"
            status, err = await _post(srv, path, good, token="wrong")
            assert status in (401, 403)

            bad: list[tuple[Any, str]] = [
                ({"segments": []}, "segments"),
                ({}, "segments"),
                ({"segments": [_seg("a", 5.0, "x") | {"end_s": 4.0}]}, "before start_s"),
                ({"segments": [_seg("a", 5.0, "   ")]}, "blank"),
                ({"segments": [_seg("a b", 5.0, "words")]}, "id"),
                ({"segments": [_seg("a", -1.0, "words")]}, "start_s"),
                ({"segments": [_seg("a", 5.0, "one"), _seg("a", 6.0, "two")]}, "distinct"),
                ({"segments": [_seg(f"s{n}", n, "w") for n in range(501)]}, "segments"),
                ({"segments": [_seg("a", 5.0, "x" * 5000)]}, "text"),
                ({"segments": [{"id": "a", "text": "no times"}]}, "start_s"),
            ]
            for body, hint in bad:
                status, err = await _post(srv, path, body, token=token)
                assert status == 400, (body, err)
                assert err["error"]["code"] == "INVALID_ARGUMENT"
                assert hint in err["error"]["message"], err
            status, err = await _post(srv, path, None, token=token, raw=b"{not json")
            assert status == 400 and err["error"]["code"] == "INVALID_ARGUMENT"

            status, err = await _post(
                srv, "/api/v1/sessions/no-such-session/segments", good, token=token
            )
            assert status == 404 and err["error"]["code"] == "NOT_FOUND"
            assert "no-such-session" in err["error"]["message"]
            status, err = await _post(srv, "/api/v1/sessions/bad%20id/segments", good, token=token)
            assert status == 400

            # Nothing above was kept, and the server still serves the good upload.
            status, answer = await _post(srv, path, good, token=token)
            assert status == 200 and answer["added"] == 2
            doc = await _transcript(srv, sid, token=token)
            assert sum(s["origin"] == "local" for s in doc["segments"]) == 2

    run(main(), 120)
