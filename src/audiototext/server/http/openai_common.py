"""What every OpenAI-compatible route shares (``/v1/...``): errors, the token, model names.

Programs written for OpenAI's API read errors as ``{"error": {"message", "type", "param",
"code"}}`` and send the token as ``Authorization: Bearer <api_key>``; they name OpenAI's models
(``whisper-1``, ``gpt-4o-transcribe``...), which here mean the server's own model. The rest
of the HTTP API (``/api/v1``) keeps its own error shape (:mod:`.errors`);
:func:`install_openai_errors` makes the app's handlers answer ``/v1/`` paths in OpenAI's.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection

from audiototext.server.http.errors import http_status
from audiototext.server.http.guard import check_token
from audiototext.server.pool import ModelChoice, ModelPool
from audiototext.server.status import Status, StatusError

__all__ = [
    "OPENAI_ALIASES",
    "OPENAI_ERROR_RESPONSES",
    "OPENAI_KEY_PROTOCOL_PREFIX",
    "OPENAI_PREFIX",
    "OpenAIError",
    "check_bearer",
    "choose_model",
    "install_openai_errors",
    "is_openai_path",
    "openai_body_refusal",
    "openai_error",
    "openai_error_body",
    "openai_error_response",
    "openai_subprotocol_key",
]

log = logging.getLogger(__name__)

OPENAI_PREFIX = "/v1/"
# How OpenAI's browser clients send their key on a WebSocket (they cannot set headers).
OPENAI_KEY_PROTOCOL_PREFIX = "openai-insecure-api-key."
# OpenAI's speech-to-text model names: programs hard-code them; here they mean --model.
OPENAI_ALIASES = frozenset(
    {
        "whisper-1",
        "gpt-4o-transcribe",
        "gpt-4o-mini-transcribe",
        "gpt-4o-mini-transcribe-2025-12-15",
        "gpt-4o-transcribe-diarize",
        "gpt-transcribe",
        "gpt-live-transcribe",  # realtime sessions name these two as well
        "gpt-realtime-whisper",
    }
)

# OpenAI's error types by HTTP status (its clients pick their exception class by status;
# ``type`` and ``code`` are for people and logs).
_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    410: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}
_CODES = {
    401: "invalid_api_key",
    413: "file_too_large",
    415: "unsupported_media_type",
    429: "server_saturated",
    503: "server_unavailable",
}

OPENAI_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
            "required": ["message", "type", "param", "code"],
        }
    },
}
OPENAI_ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    "4XX": {
        "description": "Refused, in OpenAI's error shape: the message says what to change",
        "content": {"application/json": {"schema": OPENAI_ERROR_SCHEMA}},
    },
}


class OpenAIError(Exception):
    """A refusal of an OpenAI-compatible route: HTTP status, message, and the parameter at
    fault (``param``) when one is."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code if code is not None else _CODES.get(status)
        self.headers = headers or {}

    @classmethod
    def of(cls, exc: StatusError, *, param: str | None = None) -> OpenAIError:
        """The OpenAI form of a server refusal (the same HTTP status as ``/api/v1`` gives)."""
        status = http_status(exc)
        code = None
        if exc.code is Status.NOT_FOUND and param == "model":
            code = "model_not_found"
        elif exc.code is Status.FAILED_PRECONDITION and param == "model":
            code = "model_not_downloaded"
        return cls(status, exc.message, param=param, code=code)


def openai_error(
    message: str, status: int = 400, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The error object as OpenAI's API sends it (also the payload of a realtime ``error``)."""
    kind = "server_error" if status >= 500 else _TYPES.get(status, "invalid_request_error")
    return {
        "error": {
            "message": message,
            "type": kind,
            "param": param,
            "code": code if code is not None else _CODES.get(status),
        }
    }


def openai_error_body(error: OpenAIError) -> dict[str, Any]:
    return openai_error(error.message, error.status, param=error.param, code=error.code)


def openai_error_response(error: OpenAIError | StatusError) -> JSONResponse:
    if isinstance(error, StatusError):
        error = OpenAIError.of(error)
    response = JSONResponse(openai_error_body(error), status_code=error.status)
    for key, value in error.headers.items():
        response.headers[key] = value
    return response


def is_openai_path(path: str) -> bool:
    return path.startswith(OPENAI_PREFIX)


def check_bearer(conn: HTTPConnection, expected: str | None) -> None:
    """Raise 401 (OpenAI's shape) unless the request carries the server's token (``serve
    --token``) as ``Authorization: Bearer`` (what OpenAI's clients send as the api_key) or,
    on a WebSocket (browsers set no headers there), as OpenAI's subprotocol
    ``openai-insecure-api-key.<token>``; the server's own ways (:mod:`.guard`) work too."""
    if expected is not None and conn.scope.get("type") == "websocket":
        offered = openai_subprotocol_key(list(conn.scope.get("subprotocols") or ()))
        if offered is not None:
            if hmac.compare_digest(offered.encode(), expected.encode()):
                return
            raise OpenAIError(401, "the api key (the server's token) is not valid here")
    try:
        check_token(conn, expected)
    except StatusError as exc:
        hint = (
            " (OpenAI clients: pass the server's token as api_key)"
            if "not valid" in exc.message
            else "; OpenAI clients send their api_key that way"
        )
        raise OpenAIError(401, exc.message + hint) from exc


def openai_subprotocol_key(protocols: list[str]) -> str | None:
    """The key a browser offers as the subprotocol ``openai-insecure-api-key.<key>``."""
    for entry in protocols:
        if entry.startswith(OPENAI_KEY_PROTOCOL_PREFIX):
            return entry[len(OPENAI_KEY_PROTOCOL_PREFIX) :]
    return None


async def choose_model(pool: ModelPool | None, name: str) -> ModelChoice | None:
    """What a request's ``model`` means: empty or an OpenAI model name (``whisper-1``...) is
    the server's default, else a short name or repo id the pool resolves. None: the server
    has no pool (only its default model). Refusals are OpenAIErrors with ``param="model"``."""
    name = name.strip()
    if name in OPENAI_ALIASES:
        name = ""
    if pool is None:
        if name:
            raise OpenAIError(404, f"model {name!r} is not served here", param="model")
        return None
    try:
        return await pool.choose(name)
    except StatusError as exc:
        raise OpenAIError.of(exc, param="model") from exc


def install_openai_errors(app: FastAPI) -> None:
    """Answer errors of ``/v1/`` paths in OpenAI's shape; other paths keep their handlers.

    Call after the app's own handlers are installed: each is wrapped, so FastAPI's validation
    errors, Starlette's 404/405/413 and crashes on ``/v1/`` all come out OpenAI-shaped.
    """
    Handler = Callable[[Request, Exception], Awaitable[Response]]
    previous: dict[Any, Handler] = dict(app.exception_handlers)

    def wrap(kind: Any) -> Handler:
        fallback = previous.get(kind)

        async def handle(request: Request, exc: Exception) -> Response:
            if is_openai_path(request.url.path):
                return _as_openai(request, exc)
            if fallback is None:
                raise exc
            return await fallback(request, exc)

        return handle

    for kind in (*previous, OpenAIError):
        app.add_exception_handler(kind, wrap(kind))


def _as_openai(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, OpenAIError | StatusError):
        return openai_error_response(exc)
    if isinstance(exc, RequestValidationError):
        problems = []
        param = None
        for e in exc.errors():
            loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")]
            param = param or (loc[0] if loc else None)
            problems.append(f"{'.'.join(loc) or 'request'}: {e.get('msg', '')}")
        message = "the request is not valid: " + "; ".join(problems)
        return openai_error_response(OpenAIError(400, message, param=param))
    if isinstance(exc, StarletteHTTPException):
        status = exc.status_code
        if status == 404:
            message = f"nothing at {request.url.path}; the OpenAI-compatible API is under /v1"
        elif status == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return openai_error_response(OpenAIError(status, message, headers=dict(exc.headers or {})))
    log.exception("HTTP %s %s failed", request.method, request.url.path)
    return openai_error_response(
        OpenAIError(500, f"internal error: {exc}; the server log has the details")
    )


def openai_body_refusal(message: str) -> bytes:
    """The 413 body of :class:`~.limits.BodyLimit` for a ``/v1/`` path."""
    return json.dumps(openai_error(message, 413)).encode()
