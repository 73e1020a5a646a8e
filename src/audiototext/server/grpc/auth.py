"""The bearer-token check on every RPC (``serve --token``)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

__all__ = ["TokenInterceptor"]


class TokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Requires ``authorization: Bearer <token>`` metadata on every RPC."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        got: str | bytes = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                got = value
        got_bytes = got.encode() if isinstance(got, str) else got
        if handler is None or hmac.compare_digest(got_bytes, self._expected):
            return handler
        message = (
            "this server requires a bearer token: pass --token (metadata "
            "'authorization: Bearer <token>')"
            if not got_bytes
            else "the bearer token is not valid for this server"
        )
        return _denying(handler, message)


_DENY_READ_S = 5.0


def _denying(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if handler.request_streaming:
            # Take the first message before refusing: a client that writes it (the stream's
            # config) while the refusal is on its way would otherwise see its own write fail
            # ("Internal error from Core") instead of UNAUTHENTICATED.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_DENY_READ_S):
                    await anext(aiter(request))
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny, **kwargs)
    return grpc.unary_unary_rpc_method_handler(deny, **kwargs)
