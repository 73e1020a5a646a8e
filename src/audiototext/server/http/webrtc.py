"""``POST /api/v1/webrtc/offer``: a live stream over WebRTC (aiortc), the page's default.

The body is JSON ``{"sdp", "type": "offer", "config"?, "prefix"?}``: an SDP offer with one
audio track (Opus) and a data channel, ICE gathering complete (aiortc does not trickle), and
the same stream config as the WebSocket's first frame (``session_id`` + ``resume_from_event``
resume a session; encoding, rate and channels are the server's: Opus decoded to 16-kHz PCM16
mono); ``"prefix": true`` promises the audio captured before the track connects on the data
channel (:mod:`.rtc_prefix`): a new session's first audio, or a resumed one's missed audio.
The answer is ``{"sdp", "type": "answer", "session_id", "resumed"}``; events then come on the
data channel (:mod:`.rtc_peer`). Token and Origin rules are the rest of the API's; a refusal
is the usual JSON error (415 for a body that is not JSON, 413 for an oversized one).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from google.protobuf import json_format

from audiototext.server.http.context import HttpContext
from audiototext.server.http.errors import ERROR_RESPONSES, error_response
from audiototext.server.http.guard import check_token
from audiototext.server.http.rtc_peer import RtcPeer
from audiototext.server.status import Status, StatusError
from audiototext.wire._proto import transcription_pb2 as pb

__all__ = ["MAX_OFFER_BYTES", "webrtc_router"]

log = logging.getLogger(__name__)

MAX_OFFER_BYTES = 64 << 10  # a browser's offer is a few kB
EXAMPLE = '{"sdp": "v=0...", "type": "offer", "config": {"interim_results": true}}'


def _refuse(code: Status, message: str, http_status: int | None = None) -> JSONResponse:
    response = error_response(StatusError(code, message))
    if http_status is not None:
        response.status_code = http_status
    return response


async def _read_body(request: Request) -> bytes | JSONResponse:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        return _refuse(
            Status.INVALID_ARGUMENT,
            f"the offer must be sent as Content-Type: application/json (not {kind or 'none'}), "
            f"e.g. {EXAMPLE}",
            415,
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_OFFER_BYTES:
        return _too_big()
    body = b""
    async for part in request.stream():
        body += part
        if len(body) > MAX_OFFER_BYTES:
            return _too_big()
    return body


def _too_big() -> JSONResponse:
    return _refuse(
        Status.RESOURCE_EXHAUSTED,
        f"the offer is larger than {MAX_OFFER_BYTES} bytes; send one SDP offer with its "
        "candidates, not media",
        413,
    )


def _parse_offer(body: bytes) -> tuple[str, pb.StreamingRequest, bool]:
    try:
        offer = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StatusError(
            Status.INVALID_ARGUMENT, f"the body is not JSON ({exc}); {EXAMPLE}"
        ) from exc
    if not isinstance(offer, dict):
        raise StatusError(Status.INVALID_ARGUMENT, f"the body must be a JSON object: {EXAMPLE}")
    sdp, kind = offer.get("sdp"), offer.get("type")
    if kind != "offer" or not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise StatusError(
            Status.INVALID_ARGUMENT,
            'the body needs "type": "offer" and "sdp": an SDP offer (it starts with "v=0"), '
            f"e.g. {EXAMPLE}",
        )
    config = offer.get("config") or {}
    if not isinstance(config, dict):
        raise StatusError(Status.INVALID_ARGUMENT, '"config" must be a JSON object')
    prefix = offer.get("prefix", False)
    if not isinstance(prefix, bool):
        raise StatusError(
            Status.INVALID_ARGUMENT,
            '"prefix" must be true (the audio captured before the track connects comes on '
            "the data channel) or false",
        )
    try:
        request = json_format.ParseDict({"config": config}, pb.StreamingRequest())
    except json_format.ParseError as exc:
        raise StatusError(
            Status.INVALID_ARGUMENT,
            f'"config" must be a StreamConfig as the WebSocket\'s first frame takes: {exc}',
        ) from exc
    # The audio comes as Opus on the track; the server hands it to the stream layer as this.
    request.config.encoding = pb.PCM16
    request.config.sample_rate_hz = 16_000
    request.config.channels = 1
    request.config.resume_from_seq = 0  # chunks are numbered by the server
    return sdp, request, prefix


def _check_offer(sdp: str) -> None:
    """Refuse, with what to change, an offer the stream cannot use."""
    if not re.search(r"^m=audio ", sdp, re.M):
        raise StatusError(
            Status.INVALID_ARGUMENT,
            "the offer has no audio track; add the microphone track (Opus) to the connection",
        )
    if not re.search(r"^a=rtpmap:\d+ opus/48000", sdp, re.M | re.I):
        raise StatusError(
            Status.INVALID_ARGUMENT, "the offer's audio has no Opus codec; offer Opus"
        )
    if not re.search(r"^m=application ", sdp, re.M):
        raise StatusError(
            Status.INVALID_ARGUMENT,
            "the offer has no data channel; create one before the offer (events come on it)",
        )


def _receive_opus(pc: Any) -> None:
    """An audio transceiver that takes Opus alone, made before the offer is applied so the
    offer's audio is matched to it and the answer names no other codec."""
    from aiortc import RTCRtpReceiver

    capabilities = RTCRtpReceiver.getCapabilities("audio")
    codecs = capabilities.codecs if capabilities is not None else []
    opus = [c for c in codecs if c.mimeType.lower() == "audio/opus"]
    pc.addTransceiver("audio", direction="recvonly").setCodecPreferences(opus)


async def _answer(
    ctx: HttpContext, sdp: str, config: pb.StreamingRequest, prefix: bool
) -> dict[str, Any]:
    try:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    except ImportError as exc:
        raise StatusError(
            Status.UNIMPLEMENTED,
            "WebRTC needs aiortc on the server (pip install 'audiototext[server]'); use the "
            "WebSocket /api/v1/stream",
        ) from exc
    if ctx.store.closing or ctx.webrtc.closing:
        raise StatusError(
            Status.UNAVAILABLE, "the server is shutting down; connect to another", try_later=True
        )
    _check_offer(sdp)
    # No STUN/TURN: the server answers with its host candidates (the page is on its network).
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    peer = RtcPeer(pc, ctx.streams, config, prefix=prefix)
    ctx.webrtc.add(peer)  # from now on: closed at shutdown, forgotten once closed
    try:
        try:
            _receive_opus(pc)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            raise StatusError(
                Status.INVALID_ARGUMENT,
                f"the SDP offer cannot be answered ({type(exc).__name__}: {exc}); send the "
                "offer of an RTCPeerConnection with the microphone (Opus) and a data channel",
            ) from exc
        started = await peer.open()
    except BaseException:
        await peer.close()
        raise
    return {
        "sdp": pc.localDescription.sdp,
        "type": pc.localDescription.type,
        "session_id": started.session_id,
        "resumed": started.resumed,
    }


def webrtc_router(ctx: HttpContext) -> APIRouter:
    router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)

    @router.post("/webrtc/offer", summary="Open (or resume) a live stream over WebRTC")
    async def offer(request: Request) -> JSONResponse:
        """Body: ``{"sdp", "type": "offer", "config"?, "prefix"?}`` (ICE gathering complete).
        Answer: ``{"sdp", "type": "answer", "session_id", "resumed"}``; events come on the
        data channel as the WebSocket's JSON, FINISH goes back on it. With ``"prefix": true``
        the audio captured before the track connected goes first on the data channel: binary
        PCM16 16-kHz mono messages, then ``{"prefix": {"bytes": N}}`` (resuming, from the
        session's ``next_seq`` on: ``{"prefix": {"bytes": N, "next_seq": S}}``)."""
        check_token(request, ctx.token)
        body = await _read_body(request)
        if isinstance(body, JSONResponse):
            return body
        sdp, config, prefix = _parse_offer(body)
        return JSONResponse(await _answer(ctx, sdp, config, prefix))

    return router
