"""Who may call: the bearer token (``serve --token``) and the Origin of browser requests.

Browsers cannot set headers on a WebSocket, so there the token may come as a subprotocol
entry, ``Sec-WebSocket-Protocol: audiototext.v1, audiototext.token.<TOKEN>`` (the server
answers ``audiototext.v1`` alone: the token is never echoed), or as ``?token=`` (which lands in
access logs and browser history: the page uses the subprotocol).

A state-changing request from a page of another origin is refused: any site a person visits
could otherwise drive this server from their browser (cross-site request forgery).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from audiototext.server.status import Status, StatusError

__all__ = [
    "PROTOCOL",
    "TOKEN_PROTOCOL_PREFIX",
    "TOKEN_PROTOCOL_PREFIX_B64",
    "check_origin",
    "check_token",
    "subprotocol_token",
]

PROTOCOL = "audiototext.v1"  # the WebSocket subprotocol the server answers with
TOKEN_PROTOCOL_PREFIX = "audiototext.token."
# For tokens with characters a subprotocol cannot carry: base64url of the UTF-8, no padding.
TOKEN_PROTOCOL_PREFIX_B64 = "audiototext.token-b64."


def subprotocol_token(protocols: list[str]) -> str | None:
    """The token offered among a WebSocket's subprotocols (None: none offered); raises
    UNAUTHENTICATED for a base64 entry that does not decode."""
    for entry in protocols:
        if entry.startswith(TOKEN_PROTOCOL_PREFIX):
            return entry[len(TOKEN_PROTOCOL_PREFIX) :]
        if entry.startswith(TOKEN_PROTOCOL_PREFIX_B64):
            data = entry[len(TOKEN_PROTOCOL_PREFIX_B64) :]
            try:
                padded = data + "=" * (-len(data) % 4)
                return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
            except (binascii.Error, ValueError) as exc:
                raise StatusError(
                    Status.UNAUTHENTICATED,
                    f"the token is not valid: {TOKEN_PROTOCOL_PREFIX_B64}... must be followed "
                    "by the base64url (no padding) of the token's UTF-8",
                ) from exc
    return None


def _given_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""
    if conn.scope.get("type") == "websocket":
        offered = subprotocol_token(list(conn.scope.get("subprotocols") or ()))
        if offered is not None:
            return offered
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
            "<token>'"
            + (
                f", or offer the subprotocols {PROTOCOL} and {TOKEN_PROTOCOL_PREFIX}<token>"
                if conn.scope.get("type") == "websocket"
                else ""
            )
            + ", or add ?token=<token> to the URL",
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
