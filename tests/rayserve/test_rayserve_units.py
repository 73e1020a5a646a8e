"""``serve --ray``'s refusals and settings, which need no Ray cluster, and the messages'
picklability Serve's proxy relies on."""

from __future__ import annotations

import asyncio
import pickle
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from audiototext.cli import main
from audiototext.errors import ConfigError
from audiototext.rayserve.deploy import ServeSettings
from audiototext.rayserve.http_ingress import checked_session_header
from audiototext.rayserve.replica import _requests
from audiototext.server.status import Status, StatusError
from audiototext.server.streams import ConnectionLost
from audiototext.wire._proto import transcription_pb2 as pb


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


REDIS = ["--session-store", "redis://127.0.0.1:6379/0"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ray", "auto"], "serve --ray needs --session-store redis://"),
        (["--ray", "auto", *REDIS, "--token", "t"], "TLS and --token are not applied"),
        (["--ray", "nowhere", *REDIS], "expected local, auto, HOST:PORT"),
        (
            ["--ray", f"127.0.0.1:{_closed_port()}", *REDIS],
            "cannot reach the Ray cluster at 127.0.0.1:",
        ),
        (["--ray", "auto", *REDIS, "--ray-replicas", "0"], "--ray-replicas 0: at least 1"),
        (
            ["--ray", "auto", *REDIS, "--ray-replicas", "3", "--ray-max-replicas", "2"],
            "--ray-max-replicas 2 is below --ray-replicas 3",
        ),
        (["--ray", "auto", *REDIS, "--ray-grpc-port", "70000"], "--ray-grpc-port 70000"),
        (["--ray", "auto", *REDIS, "--ray-cpus", "0"], "--ray-cpus 0"),
    ],
)
def test_serve_ray_refuses_what_cannot_work_and_says_why(
    capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["serve", *flags]) != 0
    err = capsys.readouterr().err
    assert message in err, err


def test_autoscaling_needs_a_maximum_at_least_the_floor() -> None:
    assert ServeSettings(replicas=2, max_replicas=2).max_replicas == 2
    with pytest.raises(ConfigError, match="at least as large"):
        ServeSettings(replicas=2, max_replicas=1)
    with pytest.raises(ConfigError, match="scale_window_s 0"):
        ServeSettings(replicas=1, max_replicas=2, scale_window_s=0)


def test_stream_messages_pickle_by_reference() -> None:
    # Serve's proxy hands each request message to the replica through Ray (pickle); the
    # generated classes must name the module they live in, or pickling fails.
    msg = pb.StreamingRequest(audio=pb.AudioChunk(seq=7, data=b"\x01\x02"))
    assert pb.StreamingRequest.__module__ == "audiototext.wire._proto.transcription_pb2"
    assert pickle.loads(pickle.dumps(msg)) == msg


def test_a_refusal_pickles_with_its_status() -> None:
    # A replica's StatusError crosses processes through Ray (a handle's call).
    refusal = StatusError(Status.UNAVAILABLE, "shutting down; connect to another", try_later=True)
    again = pickle.loads(pickle.dumps(refusal))
    assert isinstance(again, StatusError)
    assert (again.code, again.message, again.try_later) == (
        Status.UNAVAILABLE,
        "shutting down; connect to another",
        True,
    )


def _guarded_app() -> Any:
    """A real FastAPI app (HTTP and WebSocket routes) behind the x-session-id check."""
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"ok": "yes"}

    @app.websocket("/ws")
    async def ws(peer: WebSocket) -> None:
        await peer.accept()
        await peer.send_text("hello")
        await peer.close()

    return checked_session_header(app)


@pytest.mark.parametrize("value", ["", "has space", "a/b", "x" * 129, "semi;colon"])
def test_a_malformed_x_session_id_gets_400_and_the_next_request_is_served(value: str) -> None:
    with TestClient(_guarded_app()) as client:
        refused = client.get("/ping", headers={"x-session-id": value})
        assert refused.status_code == 400
        message = refused.json()["error"]["message"]
        assert "x-session-id" in message and "1 to 128 characters" in message, message
        assert client.get("/ping").json() == {"ok": "yes"}  # no header: served
        ok = client.get("/ping", headers={"x-session-id": "3f2a9c1e-7b4d.session_1:a"})
        assert ok.status_code == 200


def test_a_websocket_with_a_malformed_x_session_id_is_closed_1008_with_the_reason() -> None:
    with TestClient(_guarded_app()) as client:
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/ws", headers={"x-session-id": "a b"}) as peer,
        ):
            peer.receive_text()
        assert refused.value.code == 1008
        assert "x-session-id" in refused.value.reason
        with client.websocket_connect("/ws", headers={"x-session-id": "good-1"}) as peer:
            assert peer.receive_text() == "hello"


async def _drain(stream: Any) -> list[Any]:
    return [r async for r in _requests(stream)]


def test_a_failed_or_cancelled_proxy_stream_is_a_lost_connection() -> None:
    """The replica's view of Serve's request stream (Serve's own gRPCInputStream): a failure
    or a cancellation from below means the client's connection is gone (the session waits
    for its resume), a half-close just ends it, and a cancel of our own task stays one."""
    from ray.exceptions import TaskCancelledError
    from ray.serve.grpc_util import gRPCInputStream

    first = pb.StreamingRequest(audio=pb.AudioChunk(seq=1, data=b"\0\0"))

    def failing(exc: BaseException) -> Any:
        async def messages() -> AsyncIterator[pb.StreamingRequest]:
            yield first
            raise exc

        return gRPCInputStream(messages())

    async def ended(cancelled: bool) -> Any:
        event = asyncio.Event()
        if cancelled:
            event.set()

        async def messages() -> AsyncIterator[pb.StreamingRequest]:
            yield first

        stream = gRPCInputStream(messages(), cancel_event=event)
        return stream

    for exc in (TaskCancelledError(), RuntimeError("proxy gone"), asyncio.CancelledError()):
        with pytest.raises(ConnectionLost):
            asyncio.run(_drain(failing(exc)))

    async def half_closed() -> list[Any]:
        return await _drain(await ended(cancelled=False))

    assert asyncio.run(half_closed()) == [first]

    async def cancelled_by_the_client() -> list[Any]:
        return await _drain(await ended(cancelled=True))

    with pytest.raises(ConnectionLost):
        asyncio.run(cancelled_by_the_client())

    async def own_cancel() -> None:
        async def never() -> AsyncIterator[pb.StreamingRequest]:
            await asyncio.Event().wait()
            yield first

        task = asyncio.create_task(_drain(gRPCInputStream(never())))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(own_cancel())
