"""``/api/v1/network``: what a client needs to measure its link to the server, and where it
reports the result.

``GET /network/ping`` (a few bytes: round-trip time), ``GET /network/download?bytes=N`` (N
bytes of noise, at most :data:`~audiototext.server.network.DOWNLOAD_MAX_BYTES`),
``POST /network/upload`` (any body up to the JSON body limit; its size is answered), ``POST
/network/report`` (the figures, kept per client: :mod:`audiototext.server.network`) and
``GET /network`` (the latest reports). Nothing here is cached by browsers or proxies.
"""

from __future__ import annotations

import json
import os
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from audiototext.server.http.context import HttpContext
from audiototext.server.http.errors import ERROR_RESPONSES
from audiototext.server.http.guard import check_token
from audiototext.server.network import (
    DOWNLOAD_DEFAULT_BYTES,
    DOWNLOAD_MAX_BYTES,
    parse_report,
)
from audiototext.server.status import Status, StatusError

__all__ = ["network_router"]

_NO_STORE = {"Cache-Control": "no-store"}
_BLOCK = 64 << 10  # noise is made in blocks this size and repeated: cheap, and incompressible
# enough for a link that does not compress (the server sends no Content-Encoding here)


class NetworkReportModel(BaseModel):
    client_id: str
    session_id: str = Field(description="'' when measured outside a stream")
    rtt_ms: float = Field(description="median round trip, milliseconds")
    download_mbps: float | None = Field(description="megabits per second, server to client")
    upload_mbps: float | None = Field(description="megabits per second, client to server")
    received_at: float = Field(description="Unix time the server got the report")
    peer: str = Field(description="the client's address as the server saw it")


class NetworkReports(BaseModel):
    reports: list[NetworkReportModel] = Field(description="latest per client, newest first")


def network_router(ctx: HttpContext) -> APIRouter:
    def token(request: Request) -> None:
        check_token(request, ctx.token)

    router = APIRouter(prefix="/api/v1/network", responses=ERROR_RESPONSES)
    guarded = [Depends(token)]

    @router.get("/ping", dependencies=guarded, summary="A tiny answer, for round-trip times")
    async def ping() -> Response:
        body = json.dumps({"server_time": time.time()})
        return Response(body, media_type="application/json", headers=_NO_STORE)

    @router.get(
        "/download",
        dependencies=guarded,
        summary="Bytes to time a download with",
        response_class=Response,
        responses={
            200: {
                "description": "the bytes asked for (noise)",
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        },
    )
    async def download(
        size: Annotated[
            int,
            Query(
                alias="bytes",
                description=f"how many bytes (1 to {DOWNLOAD_MAX_BYTES})",
            ),
        ] = DOWNLOAD_DEFAULT_BYTES,
    ) -> Response:
        if not 1 <= size <= DOWNLOAD_MAX_BYTES:
            raise StatusError(
                Status.INVALID_ARGUMENT,
                f"bytes must be between 1 and {DOWNLOAD_MAX_BYTES}, not {size}",
            )
        block = os.urandom(min(size, _BLOCK))
        body = (block * (size // len(block) + 1))[:size]
        return Response(body, media_type="application/octet-stream", headers=_NO_STORE)

    @router.post("/upload", dependencies=guarded, summary="Receive bytes to time an upload")
    async def upload(request: Request) -> Response:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
        return Response(
            json.dumps({"bytes": received}), media_type="application/json", headers=_NO_STORE
        )

    @router.post(
        "/report",
        dependencies=guarded,
        response_model=NetworkReportModel,
        summary="Store a client's measurement",
    )
    async def report(request: Request) -> NetworkReportModel:
        """``{client_id, session_id?, rtt_ms, download_mbps?, upload_mbps?}``; the latest per
        client is kept, for the diagnostics and the adaptive controller."""
        try:
            doc = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StatusError(Status.INVALID_ARGUMENT, f"the report is not JSON: {exc}") from exc
        peer = request.client.host if request.client else ""
        try:
            parsed = parse_report(doc, peer)
        except ValueError as exc:
            raise StatusError(Status.INVALID_ARGUMENT, f"bad network report: {exc}") from exc
        ctx.network.add(parsed)
        return NetworkReportModel(**parsed.to_json())

    @router.get("", dependencies=guarded, response_model=NetworkReports, summary="Clients' reports")
    async def reports() -> NetworkReports:
        return NetworkReports(
            reports=[NetworkReportModel(**r.to_json()) for r in ctx.network.recent()]
        )

    return router
