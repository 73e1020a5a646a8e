"""``Transcription.StreamingTranscribe``: one gRPC connection of a resumable stream.

A thin adapter: the conversation itself (resume, acks and credit, limits, metrics) is
:class:`audiototext.server.streams.StreamService`; this module hands it the call's requests
and ``context.write``, and turns its refusals into gRPC status codes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from audiototext.server.grpc.status import grpc_code
from audiototext.server.status import StatusError
from audiototext.server.streams import ConnectionLost, StreamService
from audiototext.wire._proto import transcription_pb2 as pb

__all__ = ["StreamingTranscription"]


async def _requests(
    request_iterator: AsyncIterator[pb.StreamingRequest],
) -> AsyncIterator[pb.StreamingRequest]:
    # A failed call (the client cancelled or vanished) is a lost connection: the session
    # waits for a resume instead of being failed as a protocol error.
    try:
        async for request in request_iterator:
            yield request
    except grpc.aio.AioRpcError as exc:
        raise ConnectionLost(str(exc)) from exc


class StreamingTranscription:
    """Serves ``StreamingTranscribe`` calls: one ``handle`` per connection."""

    def __init__(self, service: StreamService) -> None:
        self._service = service

    async def handle(
        self,
        request_iterator: AsyncIterator[pb.StreamingRequest],
        context: grpc.aio.ServicerContext[pb.StreamingRequest, pb.StreamingResponse],
    ) -> None:
        try:
            await self._service.run(_requests(request_iterator), context.write, transport="grpc")
        except StatusError as exc:
            await context.abort(grpc_code(exc.code), exc.message)
