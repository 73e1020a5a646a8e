"""The FastAPI application: REST under ``/api/v1``, the WebSocket stream, the page at ``/``.

``create_app`` takes the server's shared parts (:class:`HttpContext`) and builds the app;
the composition root (:mod:`audiototext.server.app`) serves it with :mod:`.listener`.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from starlette.middleware.base import RequestResponseEndpoint

from audiototext._version import __version__
from audiototext.server.http.browser_models import browser_models_router
from audiototext.server.http.context import HttpContext
from audiototext.server.http.docs import declare_bearer_token, install_docs
from audiototext.server.http.errors import error_response, install_error_handlers
from audiototext.server.http.guard import check_origin
from audiototext.server.http.history import history_router
from audiototext.server.http.limits import MAX_JSON_BYTES, BodyLimit, refusal_body
from audiototext.server.http.local_segments import local_segments_router
from audiototext.server.http.models import models_router
from audiototext.server.http.network import network_router
from audiototext.server.http.openai_audio import OPENAI_UPLOAD_PATHS, openai_audio_router
from audiototext.server.http.openai_common import (
    install_openai_errors,
    is_openai_path,
    openai_body_refusal,
    openai_error_response,
)
from audiototext.server.http.openai_models import openai_models_router
from audiototext.server.http.openai_realtime import realtime_router
from audiototext.server.http.rest import rest_router
from audiototext.server.http.transcriptions import TRANSCRIPTIONS_PATH, transcriptions_router
from audiototext.server.http.web import mount_web
from audiototext.server.http.webrtc import webrtc_router
from audiototext.server.http.websocket import websocket_router
from audiototext.server.status import StatusError

__all__ = ["HttpContext", "create_app"]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Bodies limited by serve --max-upload-mb (the rest: MAX_JSON_BYTES).
UPLOAD_PATHS = frozenset({TRANSCRIPTIONS_PATH, *OPENAI_UPLOAD_PATHS})

DESCRIPTION = """\
Live speech-to-text on this machine. The same server also speaks gRPC (`audiototext.v1`).

* Errors: every error is a JSON body `{"error": {"code": CODE, "message": TEXT}}`; CODE is
  one of gRPC's status names (INVALID_ARGUMENT, NOT_FOUND, UNAUTHENTICATED, ...).
* Token: with `serve --token`, every `/api/` path but `/api/v1/health` needs
  `Authorization: Bearer TOKEN` or `?token=TOKEN` (the WebSocket also takes it as the
  subprotocol `audiototext.token.TOKEN` offered beside `audiototext.v1`).
* Files: `POST /api/v1/transcriptions` with a multipart form (`file`, optional `format`
  json/txt/srt/vtt, `language`, `task`); at most `serve --max-upload-mb` (413 past it).
  Other request bodies are at most 1 MiB.
* Origin: a state-changing request (and the WebSocket) sent by a page of another origin
  is refused with 403 PERMISSION_DENIED.
* OpenAI-compatible: `POST /v1/audio/transcriptions`, `POST /v1/audio/translations`,
  `GET /v1/models` take OpenAI's requests (`base_url=http://HOST:PORT/v1`, the token as
  api_key) and answer, errors included, in OpenAI's shapes.
* Live streams: `WS /api/v1/stream`, or WebRTC through `POST /api/v1/webrtc/offer` (see
  docs/architecture.md, "HTTP and WebSocket" and "WebRTC").
* OpenAI's realtime transcription: `WS /v1/realtime?intent=transcription` (README).
"""


def create_app(ctx: HttpContext) -> FastAPI:
    # docs_url/redoc_url: FastAPI's pages load from a CDN; .docs serves Swagger UI itself.
    app = FastAPI(
        title="audiototext",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)

    def body_limit(method: str, path: str) -> tuple[int, str]:
        if path in UPLOAD_PATHS:
            return ctx.max_upload_bytes, "uploads (serve --max-upload-mb)"
        return MAX_JSON_BYTES, f"{method} {path}"

    def body_refusal(path: str, message: str) -> bytes:
        if is_openai_path(path):
            return openai_body_refusal(message)
        return refusal_body(message)

    @app.middleware("http")
    async def same_origin_writes(request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.method not in _SAFE_METHODS:
            try:
                check_origin(request)
            except StatusError as exc:
                if is_openai_path(request.url.path):
                    return openai_error_response(exc)
                return error_response(exc)
        return await call_next(request)

    if ctx.metrics is not None:
        from audiototext.server.http.metrics import install_metrics

        install_metrics(app, ctx.metrics, ctx.token)
    app.include_router(rest_router(ctx))
    app.include_router(history_router(ctx))
    app.include_router(local_segments_router(ctx))
    app.include_router(transcriptions_router(ctx))
    app.include_router(browser_models_router(ctx))  # before models: its {name:path}
    app.include_router(models_router(ctx))
    app.include_router(network_router(ctx))
    app.include_router(websocket_router(ctx))
    app.include_router(openai_audio_router(ctx))
    app.include_router(openai_models_router(ctx))
    app.include_router(realtime_router(ctx))
    install_docs(app)
    if ctx.token is not None:
        declare_bearer_token(app, open_paths=("/api/v1/health",))
    app.include_router(webrtc_router(ctx))
    mount_web(app, ctx.web_dir)  # last: its mount at / takes every other path
    install_openai_errors(app)  # after every handler is installed: it wraps them
    app.add_middleware(
        BodyLimit, limit_for=body_limit, refusal_for=body_refusal
    )  # outermost: before anything reads
    return app
