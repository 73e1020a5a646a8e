"""Request body limits, enforced while the body arrives (never read whole first).

A body whose ``Content-Length`` is over the limit is refused at once, before the app sees
it; a body without one (chunked) is counted as it is read, and the read that goes past the
limit raises :class:`BodyTooLarge` in whoever reads (the form parser of an upload, FastAPI's
JSON parsing), which the error handlers (or this middleware, when it comes out wrapped in
an exception group) turn into 413 RESOURCE_EXHAUSTED with the limit in the message.

Uploads (``POST /api/v1/transcriptions``) have their own limit (``serve --max-upload-mb``);
every other request body is at most :data:`MAX_JSON_BYTES`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from audiototext.units import human_bytes

__all__ = ["MAX_JSON_BYTES", "BodyLimit", "BodyTooLarge", "refusal_body", "too_large_message"]

MAX_JSON_BYTES = 1 << 20  # a JSON request is a few hundred bytes
# A body declared over its limit but at most this big is read (and dropped) before the 413,
# so that the client can read the refusal; a bigger one is refused at once.
DRAIN_BYTES = 16 << 20
DRAIN_IDLE_S = 0.5


def too_large_message(limit: int, size: int | None, what: str) -> str:
    got = f"of {human_bytes(size)} " if size is not None else ""
    return f"the request body {got}is over the limit of {human_bytes(limit)} for {what}"


class BodyTooLarge(HTTPException):
    """Raised by the limited ``receive`` (an HTTPException, so FastAPI's body parsing lets it
    through to the error handlers: 413 with the message)."""

    def __init__(self, message: str) -> None:
        super().__init__(status_code=413, detail=message)


class BodyLimit:
    """ASGI middleware: ``limit_for(method, path)`` gives each request's limit in bytes and
    words for the message (None: no limit)."""

    def __init__(
        self,
        app: ASGIApp,
        limit_for: Callable[[str, str], tuple[int, str] | None],
        refusal_for: Callable[[str, str], bytes] | None = None,
    ) -> None:
        """``refusal_for(path, message)``: the 413 body for that path (None: this API's)."""
        self.app = app
        self.limit_for = limit_for
        self.refusal_for = refusal_for or (lambda _path, message: refusal_body(message))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = self.limit_for(scope["method"], scope["path"])
        if found is None:
            await self.app(scope, receive, send)
            return
        limit, what = found
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            body = self.refusal_for(scope["path"], too_large_message(limit, declared, what))
            if declared <= DRAIN_BYTES:
                await _drain(receive)
            await _refuse(send, body)
            return
        total = 0
        exceeded: BodyTooLarge | None = None
        started = False

        async def limited() -> Message:
            nonlocal total, exceeded
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > limit:
                    exceeded = BodyTooLarge(too_large_message(limit, None, what))
                    raise exceeded
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except Exception:
            # Read inside a task group (Starlette's BaseHTTPMiddleware listens for the
            # client's disconnect that way), the refusal comes out as an ExceptionGroup the
            # error handlers do not match: answer it here.
            if exceeded is None or started:
                raise
            await _refuse(send, self.refusal_for(scope["path"], str(exceeded.detail)))


async def _drain(receive: Receive) -> None:
    """Read a refused body to its end: a client that sends the whole body before it reads
    the answer (urllib, requests) gets a broken pipe instead of the 413 if we close first.
    A client that sends nothing for a moment (it waits for the answer) gets it then."""
    while True:
        try:
            message = await asyncio.wait_for(receive(), DRAIN_IDLE_S)
        except TimeoutError:
            return
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def refusal_body(message: str) -> bytes:
    return json.dumps({"error": {"code": "RESOURCE_EXHAUSTED", "message": message}}).encode()


async def _refuse(send: Send, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
