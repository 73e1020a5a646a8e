"""Counts every gRPC call by method and final status code (``audiototext_grpc_requests_total``).

It is the first interceptor, so calls the token check refuses are counted too. A call's code
is what the servicer set (``context.abort`` or ``set_code``); an exception that escapes is
UNKNOWN, as grpc reports it; a call cancelled by its client is CANCELLED.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from audiototext.server.metrics import ServerMetrics

__all__ = ["MetricsInterceptor"]


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED itself
            self._metrics.grpc_request("unknown", "UNIMPLEMENTED")
            return handler
        return _counting(handler, handler_call_details.method, self._metrics)


def _code(context: grpc.aio.ServicerContext[Any, Any], default: str) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int):  # some grpc versions give the raw number
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), default)
    return default


def _counting(
    handler: grpc.RpcMethodHandler, method: str, metrics: ServerMetrics
) -> grpc.RpcMethodHandler:
    kind = (
        ("stream" if handler.request_streaming else "unary")
        + "_"
        + ("stream" if handler.response_streaming else "unary")
    )
    behavior = getattr(handler, kind)

    def record(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException | None) -> None:
        if exc is None:
            code = _code(context, "OK")
        elif isinstance(exc, asyncio.CancelledError):
            code = "CANCELLED"
        else:  # AbortError carries the code set by abort; anything else is UNKNOWN
            code = _code(context, "UNKNOWN")
        metrics.grpc_request(method, code)

    if inspect.isasyncgenfunction(behavior):

        async def generator(request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as exc:
                record(context, exc)
                raise
            record(context, None)

        wrapped: Any = generator
    else:

        async def call(request: Any, context: Any) -> Any:
            try:
                result = behavior(request, context)
                if inspect.isawaitable(result):
                    result = await result
            except BaseException as exc:
                record(context, exc)
                raise
            record(context, None)
            return result

        wrapped = call
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    factory = {
        "unary_unary": grpc.unary_unary_rpc_method_handler,
        "unary_stream": grpc.unary_stream_rpc_method_handler,
        "stream_unary": grpc.stream_unary_rpc_method_handler,
        "stream_stream": grpc.stream_stream_rpc_method_handler,
    }[kind]
    return factory(wrapped, **kwargs)
