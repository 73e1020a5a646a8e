"""Request fields → validated values of the core, or a :class:`StatusError` that says why not.

Transport-neutral: every adapter hands over the wire's ``StreamConfig`` (gRPC as is, the
WebSocket parsed from JSON), so one set of rules and messages serves them all.
"""

from __future__ import annotations

from audiototext.errors import UnknownModelError
from audiototext.server.sessions import StreamSpec
from audiototext.server.status import Status, StatusError
from audiototext.streaming.types import StreamOptions
from audiototext.wire._proto import transcription_pb2 as pb
from audiototext.wire.codec import OPUS_RATES_HZ, Encoding

__all__ = ["check_model", "stream_spec"]


def stream_spec(cfg: pb.StreamConfig, *, model: str, max_buffered_s: float) -> StreamSpec:
    """The stream a ``StreamConfig`` declares, for a server running ``model``."""
    encoding = int(cfg.encoding)
    if encoding not in Encoding.audio():
        names = ", ".join(e.name for e in Encoding.audio())
        raise StatusError(
            Status.INVALID_ARGUMENT,
            f"StreamConfig.encoding must be one of {names}",
        )
    rate = int(cfg.sample_rate_hz)
    if not 8000 <= rate <= 48000:
        raise StatusError(
            Status.INVALID_ARGUMENT,
            f"StreamConfig.sample_rate_hz is {rate}; it must be the rate of the audio "
            "you send, between 8000 and 48000 Hz",
        )
    channels = int(cfg.channels) or 1
    if not 1 <= channels <= 8:
        raise StatusError(
            Status.INVALID_ARGUMENT,
            f"StreamConfig.channels is {channels}; send 1 to 8 interleaved channels",
        )
    if encoding == Encoding.OPUS and (rate not in OPUS_RATES_HZ or channels > 2):
        raise StatusError(
            Status.INVALID_ARGUMENT,
            f"OPUS needs 1 or 2 channels at {', '.join(map(str, OPUS_RATES_HZ))} Hz; "
            f"got {channels} channel(s) at {rate} Hz (use PCM16 for other rates)",
        )
    check_model(cfg.model, served=model)
    defaults = StreamOptions()
    try:
        options = StreamOptions(
            model=model,
            language=cfg.language or None,
            interim_results=cfg.interim_results,
            partial_interval_ms=cfg.partial_interval_ms or defaults.partial_interval_ms,
            endpoint_silence_ms=cfg.endpoint_silence_ms or defaults.endpoint_silence_ms,
            max_segment_s=cfg.max_segment_s or defaults.max_segment_s,
            max_buffered_s=max_buffered_s,
        )
    except ValueError as exc:
        raise StatusError(Status.INVALID_ARGUMENT, f"StreamConfig: {exc}") from exc
    return StreamSpec(encoding, rate, channels, cfg.interim_results, options)


def check_model(name: str, *, served: str) -> None:
    """Refuse a request for a model other than the ``served`` one (empty: the served one)."""
    if not name or name == served:
        return
    from audiototext.models.registry import resolve

    try:
        spec = resolve(name)
    except UnknownModelError as exc:  # its message names close matches and known models
        raise StatusError(Status.NOT_FOUND, str(exc)) from exc
    if spec.name != served:
        raise StatusError(
            Status.FAILED_PRECONDITION,
            f"this server runs {served}, not {spec.name}; leave StreamConfig.model "
            f"empty or start a server with `audiototext serve --model {spec.name}`",
        )
