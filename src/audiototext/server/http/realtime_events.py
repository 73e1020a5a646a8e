"""The OpenAI realtime transcription protocol's shapes: session settings and server events.

Two dialects of the same session: the current (GA) one, ``session.update`` with
``{"type": "transcription", "audio": {"input": {"format", "transcription", "turn_detection"}}}``,
and the older beta one, ``transcription_session.update`` with flat fields
(``input_audio_format``, ``input_audio_transcription``, ``turn_detection``). Both are parsed
into one :class:`RealtimeSettings`; the server answers in the dialect the client used. The
shapes follow the ``openai`` package's types (``openai.types.realtime`` and
``openai.types.beta.realtime``). No I/O here: :mod:`.openai_realtime` drives the socket.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, replace
from typing import Any

from audiototext.audio.g711 import G711_RATE_HZ
from audiototext.streaming.types import (
    DEFAULT_VAD_THRESHOLD,
    MAX_PREFIX_PADDING_MS,
    MAX_PROMPT_CHARS,
)

__all__ = [
    "PCM_RATE_HZ",
    "EventIds",
    "RealtimeError",
    "RealtimeSettings",
    "VadSettings",
    "error_event",
    "session_event",
    "update_settings",
]

PCM_RATE_HZ = 24000  # OpenAI's PCM16 input rate (the only one it takes)

# GA format type ↔ beta name, and each one's sample rate.
_FORMATS = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}
_BETA_FORMATS = {beta: ga for ga, beta in _FORMATS.items()}
_RATES = {"audio/pcm": PCM_RATE_HZ, "audio/pcmu": G711_RATE_HZ, "audio/pcma": G711_RATE_HZ}
# The engine's endpointing takes 100..10000 ms of silence (StreamOptions.endpoint_silence_ms).
_MIN_SILENCE_MS = 100
_MAX_SILENCE_MS = 10_000


class RealtimeError(Exception):
    """A client event the server cannot take: becomes an ``error`` event; the socket stays."""

    def __init__(
        self, message: str, *, code: str = "invalid_value", param: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.kind = kind


@dataclass(frozen=True)
class VadSettings:
    """``server_vad``, each field the stream's own: ``threshold`` is the Silero speech
    probability that starts speech, ``prefix_padding_ms`` the audio before detected speech
    that belongs to it (``speech_started.audio_start_ms`` includes it), ``silence_duration_ms``
    the silence that ends an utterance."""

    threshold: float = DEFAULT_VAD_THRESHOLD
    prefix_padding_ms: int = 300  # OpenAI's default
    silence_duration_ms: int = 200  # the engine's default endpoint silence


@dataclass(frozen=True)
class RealtimeSettings:
    """One connection's effective settings (what ``session.updated`` shows)."""

    format: str = "audio/pcm"
    model: str = "whisper-1"  # as the client named it; resolved to a server model on use
    language: str = ""
    prompt: str = ""  # conditions the decoder (StreamOptions.prompt)
    turn_detection: VadSettings | None = VadSettings()  # None: manual commits

    @property
    def sample_rate_hz(self) -> int:
        return _RATES[self.format]


class EventIds:
    """Server event ids and item ids, unique per connection (``event_…``, ``item_…``)."""

    def __init__(self) -> None:
        self._tag = secrets.token_hex(4)
        self._events = itertools.count(1)
        self._items = itertools.count(1)
        self.session_id = f"sess_{secrets.token_hex(8)}"

    def event(self) -> str:
        return f"event_{self._tag}{next(self._events):06d}"

    def item(self) -> str:
        return f"item_{self._tag}{next(self._items):06d}"


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RealtimeError(f"{param} must be a JSON object", param=param)
    return value


def _text(value: Any, param: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RealtimeError(f"{param} must be a string", param=param)
    return value


def _number(value: Any, param: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RealtimeError(f"{param} must be a number from {low:g} to {high:g}", param=param)
    return float(value)


def _vad(value: Any, current: VadSettings | None, param: str) -> VadSettings | None:
    if value is None:
        return None
    fields = _object(value, param)
    kind = fields.get("type", "server_vad")
    if kind != "server_vad":
        raise RealtimeError(
            f"{param}.type {kind!r} is not supported: use 'server_vad' (the engine's own "
            "endpointing) or null for manual commits",
            param=f"{param}.type",
        )
    vad = current or VadSettings()
    if fields.get("threshold") is not None:
        threshold = _number(fields["threshold"], f"{param}.threshold", 0, 1)
        if threshold in (0, 1):  # every frame, or none, would be speech
            raise RealtimeError(
                f"{param}.threshold must be between 0 and 1, exclusive (higher ignores "
                "quieter speech; the default is 0.5)",
                param=f"{param}.threshold",
            )
        vad = replace(vad, threshold=threshold)
    if fields.get("prefix_padding_ms") is not None:
        pad = _number(
            fields["prefix_padding_ms"], f"{param}.prefix_padding_ms", 0, MAX_PREFIX_PADDING_MS
        )
        vad = replace(vad, prefix_padding_ms=int(pad))
    if fields.get("silence_duration_ms") is not None:
        silence = _number(
            fields["silence_duration_ms"],
            f"{param}.silence_duration_ms",
            _MIN_SILENCE_MS,
            _MAX_SILENCE_MS,
        )
        vad = replace(vad, silence_duration_ms=int(silence))
    return vad


def _transcription(settings: RealtimeSettings, value: Any, param: str) -> RealtimeSettings:
    if value is None:
        return settings
    fields = _object(value, param)
    if "model" in fields and fields["model"] is not None:
        model = _text(fields["model"], f"{param}.model").strip()
        if not model:
            raise RealtimeError(f"{param}.model must name a model", param=f"{param}.model")
        settings = replace(settings, model=model)
    if "language" in fields:
        settings = replace(settings, language=_text(fields["language"], f"{param}.language"))
    if "prompt" in fields:
        prompt = _text(fields["prompt"], f"{param}.prompt")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise RealtimeError(
                f"{param}.prompt is {len(prompt)} characters long; at most {MAX_PROMPT_CHARS} "
                "(and half the model's text context in tokens) are taken: keep the names and words "
                "the speech may contain",
                param=f"{param}.prompt",
                code="string_above_max_length",
            )
        settings = replace(settings, prompt=prompt)
    return settings


def _ga_format(value: Any, param: str) -> str:
    fields = _object(value, param)
    kind = fields.get("type", "audio/pcm")
    if kind not in _FORMATS:
        raise RealtimeError(
            f"{param}.type {kind!r} is not supported: use one of {', '.join(_FORMATS)}",
            param=f"{param}.type",
        )
    rate = fields.get("rate")
    if rate is not None and rate != _RATES[kind]:
        raise RealtimeError(
            f"{param}.rate must be {_RATES[kind]} for {kind} (resample before sending)",
            param=f"{param}.rate",
        )
    return str(kind)


def update_settings(settings: RealtimeSettings, event_type: str, session: Any) -> RealtimeSettings:
    """``settings`` with the fields of a ``session.update`` (GA) or
    ``transcription_session.update`` (beta) applied; fields left out keep their values."""
    fields = _object(session, "session")
    if event_type == "transcription_session.update":
        if "input_audio_format" in fields:
            name = fields["input_audio_format"]
            if name not in _BETA_FORMATS:
                raise RealtimeError(
                    f"session.input_audio_format {name!r} is not supported: use one of "
                    f"{', '.join(_BETA_FORMATS)}",
                    param="session.input_audio_format",
                )
            settings = replace(settings, format=_BETA_FORMATS[name])
        settings = _transcription(
            settings, fields.get("input_audio_transcription"), "session.input_audio_transcription"
        )
        if "turn_detection" in fields:
            settings = replace(
                settings,
                turn_detection=_vad(
                    fields["turn_detection"], settings.turn_detection, "session.turn_detection"
                ),
            )
        return settings
    kind = fields.get("type", "transcription")
    if kind != "transcription":
        raise RealtimeError(
            f"session.type {kind!r} is not served here: this endpoint transcribes only "
            "(session.type 'transcription'; connect with ?intent=transcription)",
            param="session.type",
        )
    audio = _object(fields.get("audio") or {}, "session.audio")
    given = _object(audio.get("input") or {}, "session.audio.input")
    if given.get("format") is not None:
        settings = replace(
            settings, format=_ga_format(given["format"], "session.audio.input.format")
        )
    settings = _transcription(
        settings, given.get("transcription"), "session.audio.input.transcription"
    )
    if "turn_detection" in given:
        settings = replace(
            settings,
            turn_detection=_vad(
                given["turn_detection"],
                settings.turn_detection,
                "session.audio.input.turn_detection",
            ),
        )
    return settings


def _vad_json(vad: VadSettings | None) -> dict[str, Any] | None:
    if vad is None:
        return None
    return {
        "type": "server_vad",
        "threshold": vad.threshold,
        "prefix_padding_ms": vad.prefix_padding_ms,
        "silence_duration_ms": vad.silence_duration_ms,
    }


def session_event(
    kind: str, ids: EventIds, settings: RealtimeSettings, *, beta: bool
) -> dict[str, Any]:
    """``session.created``/``.updated`` (GA) or ``transcription_session.*`` (beta);
    ``kind`` is ``created`` or ``updated``."""
    transcription = {
        "model": settings.model,
        "language": settings.language or None,
        "prompt": settings.prompt,
    }
    if beta:
        session: dict[str, Any] = {
            "id": ids.session_id,
            "object": "realtime.transcription_session",
            # The beta shape requires it; this server issues no ephemeral keys.
            "client_secret": {"value": "", "expires_at": 0},
            "input_audio_format": _FORMATS[settings.format],
            "input_audio_transcription": transcription,
            "turn_detection": _vad_json(settings.turn_detection),
            "input_audio_noise_reduction": None,
            "modalities": ["text"],
            "include": None,
        }
        return {
            "type": f"transcription_session.{kind}",
            "event_id": ids.event(),
            "session": session,
        }
    fmt: dict[str, Any] = {"type": settings.format}
    if settings.format == "audio/pcm":
        fmt["rate"] = PCM_RATE_HZ
    session = {
        "type": "transcription",
        "id": ids.session_id,
        "object": "realtime.transcription_session",
        "audio": {
            "input": {
                "format": fmt,
                "transcription": transcription,
                "turn_detection": _vad_json(settings.turn_detection),
                "noise_reduction": None,
            }
        },
        "include": None,
    }
    return {"type": f"session.{kind}", "event_id": ids.event(), "session": session}


def error_event(ids: EventIds, error: RealtimeError, client_event_id: str | None) -> dict[str, Any]:
    return {
        "type": "error",
        "event_id": ids.event(),
        "error": {
            "type": error.kind,
            "code": error.code,
            "message": error.message,
            "param": error.param,
            "event_id": client_event_id,
        },
    }
