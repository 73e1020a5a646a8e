"""TranscriptionReplica: one Ray Serve replica = one audiototext engine and its stream layer.

The replica starts the ordinary server composition (:class:`GrpcServer`: model pool, session
store, Redis state store, history, metrics, controller) on a loopback port of its own, and
serves Serve's gRPC proxy by handing each ``StreamingTranscribe`` call to the same
:class:`StreamService` a direct gRPC connection gets. So a stream through Serve is the same
conversation (config, resume, acks and credit, limits) as a direct one; with a Redis store a
session begun on one replica resumes on any other. Serve's HTTP proxy reaches the same
server's HTTP app (page, REST, WebSockets, ``/v1``) through ``__serve_build_asgi_app__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from audiototext.rayserve.http_ingress import checked_session_header
from audiototext.server.app import GrpcServer
from audiototext.server.config import ServerConfig
from audiototext.server.grpc.status import grpc_code
from audiototext.server.status import StatusError
from audiototext.server.streams import ConnectionLost, StreamService
from audiototext.wire._proto import transcription_pb2 as pb

__all__ = ["TRANSPORT", "TranscriptionReplica"]

log = logging.getLogger(__name__)

TRANSPORT = "ray-grpc"  # what the history says these sessions came over
_DONE = object()


async def _requests(stream: Any) -> AsyncIterator[pb.StreamingRequest]:
    """The proxy's request stream; a client that vanished (not one that half-closed) is a
    lost connection, so the session waits for its resume.

    Each message is an actor call back to the proxy, and a cut client can fail that call
    (Ray's task or cancellation errors) instead of ending the stream. That too is a lost
    connection: taken as a broken request, it would end the session and delete its stored
    state, and the client's resume would find nothing anywhere (NOT_FOUND)."""
    try:
        async for request in stream:
            yield request
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # this connection's own task is being stopped
        raise ConnectionLost("the Serve proxy cancelled the request stream") from None
    except Exception as exc:
        log.info("the Serve proxy's request stream failed: %s: %s", type(exc).__name__, exc)
        raise ConnectionLost(f"the Serve proxy's request stream failed: {exc}") from exc
    if stream.is_cancelled():
        raise ConnectionLost("the client's call through the Serve proxy was cancelled")


class TranscriptionReplica:
    """The body of the Serve deployment (:mod:`audiototext.rayserve.app` wraps it).

    Method names are the gRPC service's: Serve's proxy calls ``StreamingTranscribe`` for
    ``/audiototext.v1.Transcription/StreamingTranscribe``.
    """

    async def __init__(self, config: ServerConfig) -> None:  # type: ignore[misc]
        """Loads the engine before Serve counts the replica as up (Serve awaits an async
        constructor on the loop the methods run on)."""
        # Loopback only, no HTTP: clients reach this replica through Serve's proxy.
        self._server = GrpcServer(replace(config, host="127.0.0.1", port=0, http_port=None))
        await self._server.start()
        assert self._server.streams is not None
        self._streams: StreamService = self._server.streams
        log.info("replica ready: engine %s, loopback port %d", config.model, self._server.port)

    def __serve_build_asgi_app__(self) -> Any:
        """Serve's HTTP ingress (``serve.ingress()``, late-bound): this replica's own HTTP
        app, not a second implementation, behind the x-session-id check."""
        return checked_session_header(self._server.http_app())

    async def report(self) -> dict[str, object]:
        """Which replica this is and the streams it served (a deployment handle's call, for
        operators and tests: where did a session go?)."""
        from ray import serve

        assert self._server.store is not None
        store = self._server.store
        import ray

        return {
            "replica": serve.get_replica_context().replica_id.unique_id,
            "actor": ray.get_runtime_context().get_actor_name(),
            "loopback_port": self._server.port,  # the same engine without Serve (benchmarks)
            "streams_total": store.streams_total,
            "sessions": sorted(store.session_ids()),
        }

    async def StreamingTranscribe(
        self, request_stream: Any, grpc_context: Any = None
    ) -> AsyncIterator[bytes | pb.StreamingResponse]:
        """One connection of a stream: the responses as the stream layer sends them."""
        streams = self._streams
        out: asyncio.Queue[object] = asyncio.Queue()

        async def send(response: pb.StreamingResponse) -> None:
            out.put_nowait(response)

        async def serve() -> None:
            try:
                await streams.run(_requests(request_stream), send, transport=TRANSPORT)
            finally:
                out.put_nowait(_DONE)

        task = asyncio.create_task(serve(), name="serve-stream")
        try:
            while (item := await out.get()) is not _DONE:
                assert isinstance(item, pb.StreamingResponse)
                yield item
            await task
        except StatusError as exc:
            if grpc_context is None:  # a handle's call, not the proxy's
                raise
            # Serve's proxy answers with the code and details set here, carried back in
            # an exception Ray pickles; a builtin one needs nothing of ours to unpickle there.
            grpc_context.set_code(grpc_code(exc.code))
            grpc_context.set_details(exc.message)
            raise RuntimeError(exc.message) from None
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, StatusError):
                    await task

    async def __del__(self) -> None:
        """Serve's stop of this replica (redeploy, scale-down), after its drain period.

        Open sessions are not finalised: their clients reconnect, Serve routes them to a
        replica still up, and that one restores them from the store. Only the store's queued
        writes are flushed, so the states it restores are the latest."""
        if self._server.state_store is not None:
            await asyncio.to_thread(self._server.state_store.close)
