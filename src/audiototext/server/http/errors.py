"""Every HTTP error as ``{"error": {"code": ..., "message": ...}}``, with codes named as the
neutral :class:`~audiototext.server.status.Status` (the names gRPC clients see too)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from audiototext.server.status import Status, StatusError

__all__ = ["ERROR_RESPONSES", "error_response", "http_status", "install_error_handlers"]

log = logging.getLogger(__name__)

_HTTP_STATUS = {
    Status.INVALID_ARGUMENT: 400,
    Status.NOT_FOUND: 404,
    Status.FAILED_PRECONDITION: 409,
    Status.RESOURCE_EXHAUSTED: 429,
    Status.UNAVAILABLE: 503,
    Status.ABORTED: 409,
    Status.DATA_LOSS: 410,
    Status.UNAUTHENTICATED: 401,
    Status.PERMISSION_DENIED: 403,
    Status.UNIMPLEMENTED: 501,
    Status.INTERNAL: 500,
}
# Errors raised by Starlette itself (unknown path, wrong method) carry only an HTTP status.
_CODE_OF_HTTP = {
    400: Status.INVALID_ARGUMENT,
    401: Status.UNAUTHENTICATED,
    403: Status.PERMISSION_DENIED,
    404: Status.NOT_FOUND,
    405: Status.UNIMPLEMENTED,
    413: Status.RESOURCE_EXHAUSTED,
    503: Status.UNAVAILABLE,
}

# For the OpenAPI document: what every error body looks like.
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "enum": [s.value for s in Status]},
                "message": {"type": "string"},
            },
            "required": ["code", "message"],
        }
    },
}
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    "4XX": {
        "description": "Refused: the body says why and what to change",
        "content": {"application/json": {"schema": ERROR_SCHEMA}},
    },
}


def http_status(error: StatusError) -> int:
    if error.try_later:
        return 503
    return _HTTP_STATUS.get(error.code, 500)


def error_response(error: StatusError) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": error.code.value, "message": error.message}},
        status_code=http_status(error),
    )


def install_error_handlers(app: FastAPI) -> None:
    async def on_status(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StatusError)
        return error_response(exc)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _CODE_OF_HTTP.get(exc.status_code, Status.INVALID_ARGUMENT)
        if exc.status_code == 404:
            message = f"nothing at {request.url.path}; the API is under /api/v1 (see /docs)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path} (see /docs)"
        else:
            message = str(exc.detail)
        response = JSONResponse(
            {"error": {"code": code.value, "message": message}}, status_code=exc.status_code
        )
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return error_response(
            StatusError(Status.INVALID_ARGUMENT, f"the request is not valid: {problems}")
        )

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("HTTP %s %s failed", request.method, request.url.path)
        return error_response(
            StatusError(
                Status.INTERNAL,
                f"internal error: {exc}; the server log has the details",
            )
        )

    app.add_exception_handler(StatusError, on_status)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_crash)
