"""``WS /api/v1/stream``: a live stream over a WebSocket, on the same stream layer as gRPC.

Frames ↔ the wire's messages: the first frame is text, the JSON of a ``StreamingRequest``
with ``config`` (protobuf's JSON mapping); then binary frames, each one audio chunk in the
config's encoding, numbered implicitly from ``resume_from_seq`` (or 1); text frames for
``{"control": {"action": "FINISH"}}`` or FLUSH. The server sends text frames, each the JSON of
a ``StreamingResponse`` (proto field names, every field present). A refusal is one text frame
``{"error": {"code", "message"}}`` followed by close code 1008 (the request was wrong), 1013
(busy or shutting down: try again later) or 1011 (a server fault); a completed stream closes
with 1000 after its last result.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, WebSocket
from google.protobuf import json_format
from starlette.websockets import WebSocketDisconnect, WebSocketState

from audiototext.server.http.context import HttpContext
from audiototext.server.http.guard import PROTOCOL, check_origin, check_token
from audiototext.server.status import Status, StatusError
from audiototext.server.streams import ConnectionLost
from audiototext.wire._proto import transcription_pb2 as pb

__all__ = ["MAX_TEXT_FRAME_BYTES", "close_code", "websocket_router"]

log = logging.getLogger(__name__)

MAX_TEXT_FRAME_BYTES = 64 << 10  # a config or a control message is a few hundred bytes

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # the client's request or data was wrong
CLOSE_INTERNAL = 1011
CLOSE_TRY_LATER = 1013


def close_code(error: StatusError) -> int:
    if error.try_later or error.code is Status.UNAVAILABLE:
        return CLOSE_TRY_LATER
    if error.code is Status.INTERNAL:
        return CLOSE_INTERNAL
    return CLOSE_POLICY


def response_json(message: pb.StreamingResponse) -> str:
    text: str = json_format.MessageToJson(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        indent=None,
    )
    return text


def _parse(text: str) -> pb.StreamingRequest:
    if len(text) > MAX_TEXT_FRAME_BYTES:
        raise StatusError(
            Status.INVALID_ARGUMENT,
            f"a text frame of {len(text)} characters; text frames carry only the config and "
            f"control messages (at most {MAX_TEXT_FRAME_BYTES} bytes): send audio as binary",
        )
    try:
        request: pb.StreamingRequest = json_format.Parse(text, pb.StreamingRequest())
    except json_format.ParseError as exc:
        raise StatusError(
            Status.INVALID_ARGUMENT,
            f"a text frame must be the JSON of a StreamingRequest, e.g. "
            f'{{"config": {{"encoding": "PCM16", "sample_rate_hz": 16000}}}} or '
            f'{{"control": {{"action": "FINISH"}}}}: {exc}',
        ) from exc
    return request


async def _requests(ws: WebSocket) -> AsyncIterator[pb.StreamingRequest]:
    """The socket's frames as ``StreamingRequest`` messages (seq numbered here)."""
    next_seq: int | None = None  # None: the server numbers chunks (a resume without a seq)
    first = True
    while True:
        try:
            frame = await ws.receive()
        except (WebSocketDisconnect, RuntimeError) as exc:
            raise ConnectionLost("the WebSocket closed") from exc
        if frame["type"] == "websocket.disconnect":
            raise ConnectionLost(f"the WebSocket closed (code {frame.get('code')})")
        data: bytes | None = frame.get("bytes")
        text: str | None = frame.get("text")
        if data is not None:
            if first:
                raise StatusError(
                    Status.INVALID_ARGUMENT,
                    "the first frame must be a text frame with the stream config, e.g. "
                    '{"config": {"encoding": "PCM16", "sample_rate_hz": 16000, '
                    '"channels": 1}}; then send audio as binary frames',
                )
            yield pb.StreamingRequest(audio=pb.AudioChunk(seq=next_seq or 0, data=data))
            if next_seq is not None:
                next_seq += 1
            continue
        request = _parse(text or "")
        kind = request.WhichOneof("request")
        if kind == "audio":
            raise StatusError(
                Status.INVALID_ARGUMENT,
                "send audio as binary frames (one chunk each), not as JSON text",
            )
        if first and kind == "config":
            cfg = request.config
            if cfg.resume_from_seq:
                next_seq = int(cfg.resume_from_seq)
            elif not cfg.session_id:
                next_seq = 1
        first = False
        yield request


async def _refuse(ws: WebSocket, error: StatusError) -> None:
    """Send the error frame and close with its code (the reason is cut to fit 123 bytes)."""
    with contextlib.suppress(Exception):
        await ws.send_text(
            json.dumps({"error": {"code": error.code.value, "message": error.message}})
        )
        reason = error.message.encode()[:123].decode(errors="ignore")
        await ws.close(close_code(error), reason)


def websocket_router(ctx: HttpContext) -> APIRouter:
    router = APIRouter()

    @router.websocket("/api/v1/stream")
    async def stream(ws: WebSocket) -> None:
        # Accepted before any check: a refused handshake shows a browser nothing but 1006,
        # while an error frame and a close code say what to change. The answer names the
        # protocol only, never a token entry the client offered beside it.
        offered = list(ws.scope.get("subprotocols") or ())
        await ws.accept(subprotocol=PROTOCOL if PROTOCOL in offered else None)
        try:
            check_origin(ws)
            check_token(ws, ctx.token)
        except StatusError as exc:
            await _refuse(ws, exc)
            return

        async def send(message: pb.StreamingResponse) -> None:
            try:
                await ws.send_text(response_json(message))
            except (WebSocketDisconnect, RuntimeError, OSError) as exc:
                raise ConnectionLost("the WebSocket closed") from exc

        try:
            await ctx.streams.run(_requests(ws), send, transport="websocket")
        except StatusError as exc:
            await _refuse(ws, exc)
            return
        except ConnectionLost:
            return
        if ws.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close(CLOSE_NORMAL)

    return router
