"""Why the server refuses a request, in words every transport maps to its own codes.

:class:`Status` names follow gRPC's status codes (the wire API came first); the gRPC adapter
maps them one to one, the HTTP adapter to HTTP statuses and WebSocket close codes. Raising
:class:`StatusError` anywhere below an adapter is how the session layer says "no" with a
message a person can act on.
"""

from __future__ import annotations

import enum
from typing import Any

from audiototext.errors import (
    AudioError,
    DownloadError,
    ModelError,
    ModelNotCachedError,
    UnknownModelError,
)
from audiototext.streaming.types import BufferFullError, OverloadedError
from audiototext.wire.codec import ChunkError

__all__ = ["Status", "StatusError", "status_for"]


class Status(enum.Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    ABORTED = "ABORTED"
    DATA_LOSS = "DATA_LOSS"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"


class StatusError(Exception):
    """A request refused: the status and a message a person can act on.

    ``try_later``: the server is busy or going away, not the request wrong (HTTP 503,
    WebSocket 1013); gRPC has no such flag and uses the code alone.
    """

    def __init__(self, code: Status, message: str, *, try_later: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.try_later = try_later

    def __reduce__(self) -> tuple[Any, ...]:
        # Ray pickles errors between processes; the default rebuilds from args alone.
        return (_rebuild_status_error, (self.code, self.message, self.try_later))


def _rebuild_status_error(code: Status, message: str, try_later: bool) -> StatusError:
    return StatusError(code, message, try_later=try_later)


def status_for(exc: BaseException) -> Status:
    """The status for a deliberate audiototext error (anything else is INTERNAL)."""
    if isinstance(exc, UnknownModelError):
        return Status.NOT_FOUND
    if isinstance(exc, ModelNotCachedError):
        return Status.FAILED_PRECONDITION
    if isinstance(exc, DownloadError):
        return Status.UNAVAILABLE
    if isinstance(exc, OverloadedError | BufferFullError):
        return Status.RESOURCE_EXHAUSTED
    if isinstance(exc, AudioError | ValueError | ChunkError):
        return Status.INVALID_ARGUMENT
    if isinstance(exc, ModelError):
        return Status.FAILED_PRECONDITION
    return Status.INTERNAL
