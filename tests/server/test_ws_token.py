"""The WebSocket token as a subprotocol (what browsers can send): accepted, never echoed."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
import websockets

from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run, speech_like
from server.ws_harness import PCM16_CONFIG, http_server, pcm16_frames, ws_url

CONFIG = json.dumps({"config": PCM16_CONFIG})
FINISH = json.dumps({"control": {"action": "FINISH"}})


def _b64(token: str) -> str:
    return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


async def _stream(
    url: str, protocols: list[str]
) -> tuple[str | None, list[dict[str, Any]], int | None]:
    """(the protocol the server chose, messages, close code) of a short stream."""
    messages: list[dict[str, Any]] = []
    async with websockets.connect(
        url,
        subprotocols=[websockets.Subprotocol(p) for p in protocols] or None,
        max_size=None,
    ) as ws:
        chosen = ws.subprotocol
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(CONFIG)
            for frame in pcm16_frames(speech_like(2.0, seed=6)):
                await ws.send(frame)
            await ws.send(FINISH)
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                messages.append(json.loads(raw))
        return chosen, messages, ws.close_code


@pytest.mark.parametrize(
    ("token", "protocols"),
    [
        ("s3cret", ["audiototext.v1", "audiototext.token.s3cret"]),
        ("a b/é", ["audiototext.v1", f"audiototext.token-b64.{_b64('a b/é')}"]),
    ],
)
def test_the_token_as_a_subprotocol_opens_the_stream(token: str, protocols: list[str]) -> None:
    async def main() -> tuple[str | None, list[dict[str, Any]], int | None]:
        async with http_server(FakeRecognizer(), config(http_port=0, token=token)) as srv:
            return await _stream(ws_url(srv), protocols)

    chosen, messages, code = run(main(), 60)
    assert chosen == "audiototext.v1"  # the protocol only: the token is not echoed
    assert code == 1000 and "started" in messages[0]


@pytest.mark.parametrize(
    "protocols",
    [
        ["audiototext.v1"],
        ["audiototext.v1", "audiototext.token.nope"],
        ["audiototext.v1", "audiototext.token-b64.%%%"],
    ],
)
def test_a_missing_or_wrong_subprotocol_token_is_refused_and_says_how(
    protocols: list[str],
) -> None:
    async def main() -> tuple[str | None, list[dict[str, Any]], int | None]:
        async with http_server(FakeRecognizer(), config(http_port=0, token="s3cret")) as srv:
            refused = await _stream(ws_url(srv), protocols)
            good = await _stream(ws_url(srv), ["audiototext.v1", "audiototext.token.s3cret"])
            assert good[2] == 1000  # the server goes on serving
            return refused

    chosen, messages, code = run(main(), 60)
    assert chosen == "audiototext.v1" and code == 1008
    error = messages[0]["error"]
    assert error["code"] == "UNAUTHENTICATED"
    if protocols == ["audiototext.v1"]:
        assert "audiototext.token.<token>" in error["message"]
    else:
        assert "not valid" in error["message"]


def test_without_subprotocols_the_answer_has_none() -> None:
    async def main() -> tuple[str | None, list[dict[str, Any]], int | None]:
        async with http_server(FakeRecognizer()) as srv:
            return await _stream(ws_url(srv), [])

    chosen, messages, code = run(main(), 60)
    assert chosen is None and code == 1000 and "started" in messages[0]
