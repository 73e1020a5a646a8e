"""The client's error, and which gRPC failures it retries rather than reports."""

from __future__ import annotations

import grpc

__all__ = ["TRANSIENT", "ClientError"]

# Status codes after which the stream is retried (resumed): the connection broke, not the
# request. ABORTED: the server saw a newer connection of ours take the session over.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
    }
)


class ClientError(Exception):
    """The server refused the stream or the connection could not be restored.

    ``code`` is the gRPC status code (``None`` when reconnecting gave up).
    """

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code
