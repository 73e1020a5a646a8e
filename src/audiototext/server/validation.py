"""Request fields → validated values of the core, or a :class:`StatusError` that says why not.

Transport-neutral: every adapter hands over the wire's ``StreamConfig`` (gRPC as is, the
WebSocket parsed from JSON), so one set of rules and messages serves them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audiototext.inference.options import language_of
from audiototext.server.sessions import StreamSpec
from audiototext.server.status import Status, StatusError
from audiototext.streaming.types import StreamOptions
from audiototext.wire._proto import transcription_pb2 as pb
from audiototext.wire.codec import OPUS_RATES_HZ, Encoding

if TYPE_CHECKING:
    from audiototext.server.pool import ModelChoice

__all__ = ["check_choice", "language_of", "stream_spec", "task_of"]


def task_of(value: int) -> str:
    """The wire's ``Task`` as the core's name (``transcribe`` / ``translate``)."""
    if value == pb.TRANSLATE:
        return "translate"
    if value in (pb.TASK_UNSPECIFIED, pb.TRANSCRIBE):
        return "transcribe"
    raise StatusError(Status.INVALID_ARGUMENT, "task must be TRANSCRIBE or TRANSLATE")


def check_choice(choice: ModelChoice, language: str | None, task: str) -> None:
    """Refuse a language or task the chosen model cannot do (INVALID_ARGUMENT)."""
    name = choice.key.name
    if not choice.multilingual:
        if task == "translate":
            raise StatusError(
                Status.INVALID_ARGUMENT,
                f"{name} is English-only: it cannot translate; choose a multilingual model "
                "(e.g. tiny or base) to translate, or the task TRANSCRIBE",
            )
        if language is not None and language != "en":
            raise StatusError(
                Status.INVALID_ARGUMENT,
                f"{name} is English-only: language {language!r} is not possible; leave the "
                "language empty (auto) or 'en', or choose a multilingual model (e.g. tiny)",
            )
        return
    if language is not None and choice.languages and language not in choice.languages:
        shown = ", ".join(choice.languages[:12]) + (", ..." if len(choice.languages) > 12 else "")
        raise StatusError(
            Status.INVALID_ARGUMENT,
            f"{name} does not know the language {language!r}; use one of its codes "
            f"({shown}) or leave it empty (auto)",
        )


def stream_spec(
    cfg: pb.StreamConfig,
    *,
    model: str,
    max_buffered_s: float,
    partial_interval_ms: int | None = None,
) -> StreamSpec:
    """The stream a ``StreamConfig`` declares, on ``model`` (the name it resolved to)."""
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
    defaults = StreamOptions()
    try:
        options = StreamOptions(
            model=model,
            language=language_of(cfg.language),
            task=task_of(int(cfg.task)),
            interim_results=cfg.interim_results,
            partial_interval_ms=cfg.partial_interval_ms
            or partial_interval_ms
            or defaults.partial_interval_ms,
            endpoint_silence_ms=cfg.endpoint_silence_ms or defaults.endpoint_silence_ms,
            max_segment_s=cfg.max_segment_s or defaults.max_segment_s,
            max_buffered_s=max_buffered_s,
            prompt=cfg.prompt,
            vad_threshold=(
                round(cfg.vad_threshold, 6)  # the wire's float32 back to the decimal sent
                if cfg.HasField("vad_threshold")
                else defaults.vad_threshold
            ),
            prefix_padding_ms=(
                cfg.prefix_padding_ms
                if cfg.HasField("prefix_padding_ms")
                else defaults.prefix_padding_ms
            ),
        )
    except ValueError as exc:
        raise StatusError(Status.INVALID_ARGUMENT, f"StreamConfig: {exc}") from exc
    return StreamSpec(encoding, rate, channels, cfg.interim_results, options)


def spec_from_fields(fields: dict[str, Any]) -> StreamSpec:
    """A stored stream spec (``session_state.spec_fields``); ValueError/KeyError if unusable."""
    options = StreamOptions(**fields["options"])
    encoding = int(fields["encoding"])
    if encoding not in Encoding.audio():
        raise ValueError(f"unknown encoding {encoding}")
    return StreamSpec(
        encoding,
        int(fields["sample_rate_hz"]),
        int(fields["channels"]),
        bool(fields["interim_results"]),
        options,
    )
