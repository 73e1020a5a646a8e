"""``WS /api/v1/stream`` over a real socket with the engine test double: protocol, refusals,
resume, shutdown. Every refusal leaves the server serving a stream that runs beside it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from audiototext.server.app import GrpcServer
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run, speech_like
from server.ws_harness import (
    PCM16_CONFIG,
    WsRun,
    WsStreamer,
    exchange,
    http_get,
    http_server,
    pcm16_frames,
    ws_url,
)

CONFIG = json.dumps({"config": PCM16_CONFIG})
FINISH = json.dumps({"control": {"action": "FINISH"}})


def test_stream_gets_started_acks_results_and_a_normal_close() -> None:
    audio = speech_like(6.0, seed=1)

    async def main() -> tuple[list[dict[str, Any]], int | None]:
        async with http_server(FakeRecognizer()) as srv:
            messages, code, _ = await exchange(ws_url(srv), [CONFIG, *pcm16_frames(audio), FINISH])
            assert srv.store is not None
            return messages, code

    messages, code = run(main(), 60)
    assert code == 1000
    started = messages[0]["started"]
    assert started["next_seq"] == "1" and started["resumed"] is False
    assert started["session_id"] and started["model"] == "tiny.en"
    acks = [int(m["ack"]["seq"]) for m in messages if "ack" in m]
    assert acks[-1] == len(pcm16_frames(audio))  # implicit numbering: one seq per frame
    results = [m for m in messages if "result" in m]
    assert any(not r["result"]["is_final"] for r in results)  # partials, shown as false
    finals = [r["result"]["text"] for r in results if r["result"]["is_final"]]
    assert len(finals) >= 2
    events = [int(m["event_seq"]) for m in messages if "result" in m or "speech_event" in m]
    assert events == list(range(1, len(events) + 1))
    assert {m["speech_event"]["kind"] for m in messages if "speech_event" in m} == {"BEGIN", "END"}


async def _good_stream(srv: GrpcServer) -> WsRun:
    return await WsStreamer(ws_url(srv)).run(speech_like(4.0, seed=2), speed=4.0)


async def _beside_a_good_stream(
    srv: GrpcServer, bad: Any
) -> tuple[tuple[list[dict[str, Any]], int | None, str], WsRun]:
    good = asyncio.create_task(_good_stream(srv))
    await asyncio.sleep(0.3)
    refused = await bad
    return refused, await good


BAD_INPUT: dict[str, tuple[list[str | bytes], str, str]] = {
    "binary first": ([b"\0\0" * 1600], "INVALID_ARGUMENT", "first frame must be a text frame"),
    "control before config": ([FINISH], "INVALID_ARGUMENT", "must be a StreamConfig, not control"),
    "config twice": ([CONFIG, CONFIG], "INVALID_ARGUMENT", "one StreamConfig"),
    "malformed json": (["{config: nope"], "INVALID_ARGUMENT", "JSON of a StreamingRequest"),
    "not a request": (['{"hello": 1}'], "INVALID_ARGUMENT", "JSON of a StreamingRequest"),
    "odd-length pcm16": ([CONFIG, b"\0\0\0"], "INVALID_ARGUMENT", "whole number of PCM16"),
    "unknown model": (
        [json.dumps({"config": {**PCM16_CONFIG, "model": "tiny.xx"}})],
        "NOT_FOUND",
        "tiny.xx",
    ),
    "bad sample rate": (
        [json.dumps({"config": {**PCM16_CONFIG, "sample_rate_hz": 1000}})],
        "INVALID_ARGUMENT",
        "sample_rate_hz",
    ),
    "audio as json": (
        [CONFIG, json.dumps({"audio": {"data": "AAAA"}})],
        "INVALID_ARGUMENT",
        "binary frames",
    ),
    "oversized frame": ([CONFIG, b"\0\0" * 20_000], "RESOURCE_EXHAUSTED", "--max-chunk-bytes"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_refused_with_1008_and_others_go_on(case: str) -> None:
    frames, code, words = BAD_INPUT[case]

    async def main() -> tuple[tuple[list[dict[str, Any]], int | None, str], WsRun, int]:
        cfg = config(http_port=0, max_chunk_bytes=32_000)
        async with http_server(FakeRecognizer(), cfg) as srv:
            refused, good = await _beside_a_good_stream(srv, exchange(ws_url(srv), frames))
            assert (await http_get(srv, "/api/v1/health"))[0] == 200
            assert srv.store is not None
            for _ in range(50):  # the refused session's engine slot is freed
                if srv.store.open_count() == 0:
                    break
                await asyncio.sleep(0.1)
            return refused, good, srv.store.open_count()

    (messages, close_code, reason), good, still_open = run(main(), 60)
    error = messages[-1]["error"]
    assert error["code"] == code, error
    assert words in error["message"], error
    assert close_code == 1008
    assert reason and reason in error["message"]
    assert good.finals and good.close_codes == [1000]
    assert still_open == 0


@pytest.mark.parametrize("token", [None, "nope"])
def test_missing_or_wrong_token_closes_1008_and_the_token_in_the_query_works(
    token: str | None,
) -> None:
    async def main() -> tuple[tuple[list[dict[str, Any]], int | None, str], WsRun]:
        async with http_server(FakeRecognizer(), config(http_port=0, token="s3cret")) as srv:
            query = f"?token={token}" if token else ""
            refused = await exchange(ws_url(srv, query), [CONFIG])
            good = await WsStreamer(ws_url(srv, "?token=s3cret")).run(
                speech_like(3.0, seed=3), speed=4.0
            )
            return refused, good

    (messages, code, _), good = run(main(), 60)
    assert code == 1008
    assert messages == [messages[0]] and messages[0]["error"]["code"] == "UNAUTHENTICATED"
    assert good.finals and good.close_codes == [1000]


def test_bearer_header_is_accepted() -> None:
    async def main() -> tuple[list[dict[str, Any]], int | None, str]:
        async with http_server(FakeRecognizer(), config(http_port=0, token="s3cret")) as srv:
            frames: list[str | bytes] = [CONFIG, *pcm16_frames(speech_like(2.0)), FINISH]
            return await exchange(ws_url(srv), frames, headers={"Authorization": "Bearer s3cret"})

    messages, code, _ = run(main(), 60)
    assert code == 1000 and "started" in messages[0]


def test_a_page_of_another_origin_is_refused() -> None:
    async def main() -> tuple[tuple[list[dict[str, Any]], int | None, str], int | None]:
        async with http_server(FakeRecognizer()) as srv:
            assert srv.http is not None
            foreign = await exchange(ws_url(srv), [CONFIG], origin="http://evil.example")
            own = f"http://127.0.0.1:{srv.http.port}"
            _, own_code, _ = await exchange(
                ws_url(srv), [CONFIG, *pcm16_frames(speech_like(2.0)), FINISH], origin=own
            )
            return foreign, own_code

    (messages, code, _), own_code = run(main(), 60)
    assert code == 1008 and messages[0]["error"]["code"] == "PERMISSION_DENIED"
    assert own_code == 1000


def test_over_the_session_limit_is_try_again_later_1013() -> None:
    async def main() -> tuple[tuple[list[dict[str, Any]], int | None, str], WsRun]:
        cfg = config(http_port=0, max_sessions=1)
        async with http_server(FakeRecognizer(), cfg) as srv:
            return await _beside_a_good_stream(srv, exchange(ws_url(srv), [CONFIG]))

    (messages, code, _), good = run(main(), 60)
    assert code == 1013
    assert messages[0]["error"]["code"] == "RESOURCE_EXHAUSTED"
    assert "--max-sessions" in messages[0]["error"]["message"]
    assert good.finals and good.close_codes == [1000]


def test_resume_after_cuts_loses_and_repeats_nothing() -> None:
    """The fake engine's finals name the exact samples of each utterance (count and CRC), so
    a lost or doubled chunk after a reconnect changes the text."""
    audio = speech_like(12.0, seed=4)

    async def main() -> tuple[WsRun, WsRun]:
        async with http_server(FakeRecognizer(speed=4.0)) as srv:
            reference = await WsStreamer(ws_url(srv)).run(audio, speed=None)
            cut = await WsStreamer(ws_url(srv)).run(audio, speed=3.0, cut_at_s=(2.5, 6.2, 9.0))
            return reference, cut

    reference, cut = run(main(), 120)
    assert len(cut.started) == 4
    assert [s["resumed"] for s in cut.started] == [False, True, True, True]
    assert len({s["session_id"] for s in cut.started}) == 1
    assert cut.close_codes[:3] != [1000] * 3 and cut.close_codes[-1] == 1000
    assert [f["text"] for f in cut.finals] == [f["text"] for f in reference.finals]
    assert cut.events_seen == list(range(1, len(cut.events_seen) + 1))


def test_resume_of_an_unknown_session_is_not_found() -> None:
    async def main() -> tuple[list[dict[str, Any]], int | None, str]:
        async with http_server(FakeRecognizer()) as srv:
            cfg = {**PCM16_CONFIG, "session_id": "gone", "resume_from_seq": 5}
            return await exchange(ws_url(srv), [json.dumps({"config": cfg})])

    messages, code, _ = run(main(), 60)
    assert code == 1008
    assert messages[0]["error"]["code"] == "NOT_FOUND"
    assert "start a new stream" in messages[0]["error"]["message"]


def test_graceful_shutdown_delivers_finals_then_closes() -> None:
    async def main() -> tuple[list[dict[str, Any]], int | None, list[str]]:
        srv = GrpcServer(config(http_port=0), recognizer=FakeRecognizer(speed=2.0))
        await srv.start()
        health: list[str] = []
        frames: list[str | bytes] = [CONFIG, *pcm16_frames(speech_like(3.0, seed=5))]
        task = asyncio.create_task(exchange(ws_url(srv), frames))
        await asyncio.sleep(0.5)
        stopping = asyncio.create_task(srv.stop(10.0))
        await asyncio.sleep(0.05)
        health.append(json.loads((await http_get(srv, "/api/v1/health"))[2])["status"])
        messages, code, _ = await task
        await stopping
        return messages, code, health

    messages, code, health = run(main(), 60)
    assert health == ["NOT_SERVING"]
    assert code == 1000
    assert any("result" in m and m["result"]["is_final"] for m in messages)
