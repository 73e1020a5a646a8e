"""Who may call: the bearer token (``serve --token``) and the Origin of browser requests.

Browsers cannot set headers on a WebSocket, so the token may also come as ``?token=``. A
state-changing request from a page of another origin is refused: any site a person visits
could otherwise drive this server from their browser (cross-site request forgery).
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from audiototext.server.status import Status, StatusError

__all__ = ["check_origin", "check_token"]


def _given_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""
    return conn.query_params.get("token")


def check_token(conn: HTTPConnection, expected: str | None) -> None:
    """Raise UNAUTHENTICATED unless the request carries ``expected`` (None: no token needed)."""
    if expected is None:
        return
    given = _given_token(conn)
    if not given:
        raise StatusError(
            Status.UNAUTHENTICATED,
            "this server requires a token (serve --token): send 'Authorization: Bearer "
            "<token>' or add ?token=<token> to the URL",
        )
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise StatusError(Status.UNAUTHENTICATED, "the token is not valid for this server")


def check_origin(conn: HTTPConnection) -> None:
    """Raise PERMISSION_DENIED when a browser request comes from a page of another origin.

    Requests without ``Origin`` (programs, same-origin GETs) pass; the server's own origin
    is the scheme and ``Host`` the request was made to.
    """
    origin = conn.headers.get("origin")
    if origin is None:
        return
    own_scheme = {"ws": "http", "wss": "https"}.get(conn.url.scheme, conn.url.scheme)
    host = conn.headers.get("host", "")
    parts = urlsplit(origin)
    if parts.scheme == own_scheme and parts.netloc.lower() == host.lower():
        return
    raise StatusError(
        Status.PERMISSION_DENIED,
        f"requests from pages of {origin} are refused: only this server's own page "
        f"({own_scheme}://{host}) may use it from a browser",
    )
