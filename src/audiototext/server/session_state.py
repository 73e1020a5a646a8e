"""What a stream session leaves behind so that another server process can resume it.

A :class:`SessionState` is written at each final: the stream config, the chunks received
(``next_seq``), the events numbered so far with the finals among them (the transcript), and
the engine's :class:`~audiototext.streaming.checkpoint.StreamCheckpoint` (VAD state, decoder
text context, the audio later finals may read). ``encode_state``/``decode_state`` turn it into
a few named byte strings (JSON for the small fields, raw little-endian float32 for audio) and
back; anything that does not decode exactly is :class:`CorruptStateError`, never executed or
half-used. :class:`SessionStateStore` is where states live: :class:`MemoryStateStore` (this
process only, the default) or ``redis_store.RedisStateStore`` (shared by servers).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from audiototext.audio.vad import DetectorSnapshot
from audiototext.errors import ConfigError
from audiototext.streaming.checkpoint import (
    CheckpointFinal,
    CheckpointUtterance,
    StreamCheckpoint,
)
from audiototext.streaming.state import EarlierFinal
from audiototext.streaming.types import StreamOptions, StreamResult, StreamWord

__all__ = [
    "CorruptStateError",
    "MemoryStateStore",
    "SessionState",
    "SessionStateStore",
    "StoreUnavailableError",
    "check_store_url",
    "decode_state",
    "encode_state",
    "state_ttl_s",
]

FORMAT_VERSION = 1
MAX_KEPT_FINALS = 500  # per stored session: finals a resuming client may still miss
_VAD_FLOATS = 2 * 128 + 64  # the LSTM state, then the context samples


def state_ttl_s(resume_grace_s: float) -> float:
    """How long a stored state outlives its server's last write: a detached session waits the
    grace period, then its final waits as long again (and a few seconds for the writer)."""
    return 2 * resume_grace_s + 5


class CorruptStateError(ValueError):
    """Stored bytes that are not a session state of this version (foreign, cut, edited)."""


class StoreUnavailableError(OSError):
    """The store cannot be reached now (it may be back later)."""


@dataclass(frozen=True)
class SessionState:
    session_id: str
    spec: dict[str, Any]  # StreamSpec's fields, options as a dict (see spec_fields)
    next_seq: int  # the next chunk the session expects: chunks before it are in the state
    event_count: int  # events numbered so far
    finals: tuple[tuple[int, StreamResult], ...]  # (event_seq, final), the newest kept
    engine: StreamCheckpoint


class SessionStateStore(Protocol):
    """Where session states live; ``save`` never blocks the caller and never raises."""

    durable: bool  # states survive this process (the server then checkpoints its streams)

    def save(self, state: SessionState, done: Callable[[bool], None]) -> None:
        """Queue ``state`` (it replaces any queued for that session); ``done(ok)`` is called
        from any thread once it is stored (True) or could not be (False)."""
        ...

    def load(self, session_id: str) -> SessionState | None:
        """The stored state (blocking: call from a worker thread); None if absent.
        Raises :class:`CorruptStateError` for bytes that are not a state,
        :class:`StoreUnavailableError` when the store cannot be reached."""
        ...

    def delete(self, session_id: str) -> None: ...

    def touch(self, session_ids: Iterable[str]) -> None:
        """Keep these sessions' states from expiring (they are still open)."""
        ...

    def close(self) -> None: ...


class MemoryStateStore:
    """States in this process's memory: nothing outlives the process (today's behaviour)."""

    durable = False

    def __init__(self) -> None:
        self._states: dict[str, dict[str, bytes]] = {}

    def save(self, state: SessionState, done: Callable[[bool], None]) -> None:
        self._states[state.session_id] = encode_state(state)
        done(True)

    def load(self, session_id: str) -> SessionState | None:
        fields = self._states.get(session_id)
        return None if fields is None else decode_state(session_id, fields)

    def delete(self, session_id: str) -> None:
        self._states.pop(session_id, None)

    def touch(self, session_ids: Iterable[str]) -> None:
        pass

    def close(self) -> None:
        self._states.clear()


def check_store_url(url: str) -> str:
    """``url`` if it is a Redis URL this store can use; :class:`ConfigError` saying why not."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"--session-store {url!r}: use redis://HOST:PORT/DB (or rediss://, unix://PATH); "
            "'memory' keeps sessions in this process only"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--session-store {url!r}: {exc}") from exc
    if parts.scheme != "unix" and (not parts.hostname or port == 0):
        raise ConfigError(f"--session-store {url!r}: no host (redis://HOST:PORT/DB)")
    return url


def spec_fields(
    encoding: int, rate: int, channels: int, interim: bool, options: StreamOptions
) -> dict[str, Any]:
    """A stream spec as stored (``validation.spec_from_fields`` reads it back)."""
    return {
        "encoding": encoding,
        "sample_rate_hz": rate,
        "channels": channels,
        "interim_results": interim,
        "options": asdict(options),
    }


def encode_state(state: SessionState) -> dict[str, bytes]:
    cp = state.engine
    det = cp.detector
    meta = {
        "version": FORMAT_VERSION,
        "session_id": state.session_id,
        "spec": state.spec,
        "next_seq": state.next_seq,
        "event_count": state.event_count,
        "finals": [[seq, _result_json(r)] for seq, r in state.finals[-MAX_KEPT_FINALS:]],
        "engine": {
            "received": cp.received,
            "vad_position": cp.vad_position,
            "audio_start": cp.audio_start,
            "detector_base": cp.detector_base,
            "detector": {
                "samples_received": det.samples_received,
                "start_emitted": det.start_emitted,
                "last_end": det.last_end,
                "last_probability": det.last_probability,
                "segmenter": list(det.segmenter),
            },
            "next_utterance_id": cp.next_utterance_id,
            "last_utterance_stop": cp.last_utterance_stop,
            "processed": cp.processed,
            "earlier": [[e.audio_start, list(e.tokens)] for e in cp.earlier],
            "pending": [[f.utterance_id, f.start, f.stop, f.shown_text] for f in cp.pending],
            "utterance": None
            if cp.utterance is None
            else [cp.utterance.utterance_id, cp.utterance.start, cp.utterance.shown_text],
            "detected_language": cp.detected_language,
        },
    }
    vad = np.concatenate([det.recurrent.reshape(-1), det.context.reshape(-1)])
    return {
        "meta": json.dumps(meta, separators=(",", ":")).encode(),
        "audio": np.ascontiguousarray(cp.audio, dtype="<f4").tobytes(),
        "vad": np.ascontiguousarray(vad, dtype="<f4").tobytes(),
        "vad_pending": np.ascontiguousarray(det.pending, dtype="<f4").tobytes(),
    }


def decode_state(session_id: str, fields: Mapping[str, bytes]) -> SessionState:
    """The state in ``fields``, checked throughout; :class:`CorruptStateError` otherwise."""
    try:
        meta = json.loads(fields["meta"])
        if not isinstance(meta, dict) or meta.get("version") != FORMAT_VERSION:
            raise CorruptStateError(f"not a version-{FORMAT_VERSION} session state")
        if meta.get("session_id") != session_id:
            raise CorruptStateError("the state names another session")
        e = meta["engine"]
        d = e["detector"]
        vad = _floats(fields["vad"])
        if vad.shape[0] != _VAD_FLOATS:
            raise CorruptStateError("VAD state of the wrong size")
        segmenter = tuple(d["segmenter"])
        if len(segmenter) != 6:
            raise CorruptStateError("VAD segmenter state of the wrong size")
        detector = DetectorSnapshot(
            vad[:256].reshape(2, 1, 128).copy(),
            vad[256:].copy(),
            _floats(fields["vad_pending"]),
            _int(d["samples_received"]),
            bool(d["start_emitted"]),
            _int(d["last_end"]),
            float(d["last_probability"]),
            (
                bool(segmenter[0]),
                _int(segmenter[1]),
                _int(segmenter[2]),
                _int(segmenter[3]),
                _int(segmenter[4]),
                _int(segmenter[5]),
            ),
        )
        u = e["utterance"]
        language = e["detected_language"]
        engine = StreamCheckpoint(
            received=_int(e["received"]),
            vad_position=_int(e["vad_position"]),
            audio_start=_int(e["audio_start"]),
            audio=_floats(fields["audio"]),
            detector_base=_int(e["detector_base"]),
            detector=detector,
            next_utterance_id=_int(e["next_utterance_id"]),
            last_utterance_stop=_int(e["last_utterance_stop"]),
            processed=_int(e["processed"]),
            earlier=tuple(
                EarlierFinal(_int(a), tuple(_int(t) for t in toks)) for a, toks in e["earlier"]
            ),
            pending=tuple(
                CheckpointFinal(_int(i), _int(a), _int(b), bool(s)) for i, a, b, s in e["pending"]
            ),
            utterance=None
            if u is None
            else CheckpointUtterance(_int(u[0]), _int(u[1]), bool(u[2])),
            detected_language=None if language is None else str(language),
        )
        spec = meta["spec"]
        StreamOptions(**spec["options"])  # the options must still be valid ones
        return SessionState(
            session_id=session_id,
            spec=spec,
            next_seq=_int(meta["next_seq"]),
            event_count=_int(meta["event_count"]),
            finals=tuple((_int(seq), _result(r)) for seq, r in meta["finals"]),
            engine=engine,
        )
    except CorruptStateError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise CorruptStateError(f"not a readable session state ({exc!r})") from exc


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CorruptStateError(f"expected a count, found {value!r}")
    return value


def _floats(data: bytes) -> np.ndarray[Any, np.dtype[np.float32]]:
    if not isinstance(data, bytes) or len(data) % 4:
        raise CorruptStateError("float data of a length that is not a multiple of 4")
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def _result_json(r: StreamResult) -> dict[str, Any]:
    return {
        "utterance_id": r.utterance_id,
        "text": r.text,
        "start_s": r.start_s,
        "end_s": r.end_s,
        "audio_processed_s": r.audio_processed_s,
        "words": [[w.text, w.start_s, w.end_s] for w in r.words],
    }


def _result(d: dict[str, Any]) -> StreamResult:
    text = str(d["text"])
    return StreamResult(
        utterance_id=_int(d["utterance_id"]),
        is_final=True,
        text=text,
        stable_text=text,
        stability=1.0,
        start_s=float(d["start_s"]),
        end_s=float(d["end_s"]),
        audio_processed_s=float(d["audio_processed_s"]),
        words=tuple(StreamWord(str(t), float(a), float(b)) for t, a, b in d["words"]),
    )
