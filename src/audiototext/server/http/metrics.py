"""``GET /metrics`` (Prometheus text format) and the count of every HTTP request.

Token rule: with ``serve --token``, ``/metrics`` needs the token like the REST API
(``Authorization: Bearer TOKEN``; Prometheus sends it with ``authorization: {credentials:
...}`` in its scrape config). The figures say how busy the server is and which model and
version it runs, which is nobody else's business; without ``--token`` it is open.

Requests are labelled by the route's template (``/api/v1/models``), never the raw path: a
label per distinct path would let any client create time series without end. Paths no
route matched (the page's files, 404s) share the label ``other``.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request, Response
from starlette.middleware.base import RequestResponseEndpoint

from audiototext.server.http.errors import error_response
from audiototext.server.http.guard import check_token
from audiototext.server.metrics import CONTENT_TYPE, ServerMetrics
from audiototext.server.status import StatusError

__all__ = ["install_metrics"]


def install_metrics(app: FastAPI, metrics: ServerMetrics, token: str | None) -> None:
    @app.middleware("http")
    async def count_requests(request: Request, call_next: RequestResponseEndpoint) -> Response:
        began = time.perf_counter()
        status = 500  # what the client gets when the app itself raises
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = getattr(request.scope.get("route"), "path", None) or "other"
            metrics.http_request(request.method, route, status, time.perf_counter() - began)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        try:
            check_token(request, token)
        except StatusError as exc:
            return error_response(exc)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)
