"""The replica's HTTP side: the server's own HTTP app behind Serve's HTTP proxy.

Serve's proxy routes an HTTP request or WebSocket by its ``x-session-id`` header
(``ConsistentHashRouter``), so a client that sends the same value on every connection of a
stream reaches the same replica; without the header a request goes to any replica. The
proxy hashes whatever it is given, so the check here is ours: a malformed value is refused
with 400 (HTTP) or a 1008 close (WebSocket) saying what a valid one looks like.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["SESSION_HEADER", "checked_session_header", "session_header_problem"]

SESSION_HEADER = "x-session-id"  # Serve's default RAY_SERVE_SESSION_ID_HEADER_KEY
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_RULE = "1 to 128 characters of A-Z a-z 0-9 . _ : - (e.g. a UUID)"

ASGIApp = Any  # (scope, receive, send) -> awaitable; Starlette's type is not exported typed


def session_header_problem(scope: dict[str, Any]) -> str | None:
    """Why the request's x-session-id is unusable, or None (absent or valid)."""
    for key, value in scope.get("headers", ()):
        if key.decode("latin-1").lower() != SESSION_HEADER:
            continue
        text = value.decode("latin-1")
        if not _VALID.fullmatch(text):
            return f"the {SESSION_HEADER} header {text[:40]!r} is malformed: use {_RULE}"
    return None


def checked_session_header(app: ASGIApp) -> ASGIApp:
    """``app`` behind the x-session-id check (other scopes, e.g. lifespan, pass through)."""

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        problem = session_header_problem(scope) if scope["type"] in ("http", "websocket") else None
        if problem is None:
            await app(scope, receive, send)
        elif scope["type"] == "http":
            body = json.dumps({"error": {"code": "INVALID_ARGUMENT", "message": problem}})
            await send(
                {
                    "type": "http.response.start",
                    "status": 400,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body.encode()})
        else:
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": problem[:120]})

    return guarded
