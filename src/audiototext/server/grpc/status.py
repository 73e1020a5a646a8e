"""gRPC status codes for the server's neutral :class:`~audiototext.server.status.Status`."""

from __future__ import annotations

import grpc

from audiototext.server.status import Status, status_for

__all__ = ["grpc_code", "grpc_status_for"]


def grpc_code(status: Status) -> grpc.StatusCode:
    """The gRPC code of the same name (the neutral names were taken from gRPC)."""
    code: grpc.StatusCode = grpc.StatusCode[status.value]
    return code


def grpc_status_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code for a deliberate audiototext error."""
    return grpc_code(status_for(exc))
