"""gRPC status codes for audiototext's errors, and the refusal that carries one."""

from __future__ import annotations

import grpc

from audiototext.errors import (
    AudioError,
    DownloadError,
    ModelError,
    ModelNotCachedError,
    UnknownModelError,
)
from audiototext.streaming.types import BufferFullError, OverloadedError
from audiototext.wire.codec import ChunkError

__all__ = ["StatusError", "status_for"]


class StatusError(Exception):
    """A request refused: the status code and a message a person can act on.

    Raised below the servicer methods, which turn it into ``context.abort``.
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def status_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code for a deliberate audiototext error."""
    if isinstance(exc, UnknownModelError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, ModelNotCachedError):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, DownloadError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, OverloadedError | BufferFullError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, AudioError | ValueError | ChunkError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, ModelError):
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.INTERNAL
