"""Test helpers for the OpenAI-compatible routes: a real server on its own event loop in a
thread (the official ``openai`` client is called synchronously), and error-shape checks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

from audiototext.server.app import GrpcServer
from audiototext.server.engine import Engine
from audiototext.server.files import FileTranscribeFn
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config


@contextlib.contextmanager
def threaded_server(
    transcribe_file: FileTranscribeFn | None,
    recognizer: Engine | None = None,
    **changes: Any,
) -> Iterator[tuple[GrpcServer, str]]:
    """(server, base URL of its OpenAI-compatible API: ``http://127.0.0.1:PORT/v1``)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> GrpcServer:
        server = GrpcServer(
            config(http_port=0, **changes),
            recognizer=recognizer or FakeRecognizer(),
            transcribe_file=transcribe_file,
        )
        await server.start()
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(120)
    assert server.http is not None
    try:
        yield server, f"http://127.0.0.1:{server.http.port}/v1"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(2.0), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def openai_error_of(body: Any) -> dict[str, Any]:
    """The ``error`` object of an OpenAI-shaped error body (asserting its shape)."""
    doc = json.loads(body) if isinstance(body, bytes | str) else body
    if "error" in doc:  # the openai client hands over the error object itself
        assert set(doc) == {"error"}, doc
        doc = doc["error"]
    assert set(doc) == {"message", "type", "param", "code"}, doc
    assert isinstance(doc["message"], str) and doc["message"].strip(), doc
    assert isinstance(doc["type"], str) and doc["type"], doc
    return dict(doc)
