"""What the stream layer tells whoever watches it (the metrics), as a protocol.

The session store and the stream service call these hooks at the few points where a stream's
life changes; :mod:`audiototext.server.metrics` implements them. A server without metrics
gets :data:`NO_OBSERVER`, whose hooks do nothing, so the streaming path pays one call each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from audiototext.server.engine import EngineStream
    from audiototext.streaming.types import SpeechEvent, StreamResult

__all__ = ["NO_OBSERVER", "ObservedSession", "StreamObserver"]


class ObservedSession(Protocol):
    """What an observer may read of a session (a ``ServerSession``; a protocol here so this
    module does not import the session module, which imports it)."""

    @property
    def id(self) -> str: ...

    @property
    def engine(self) -> EngineStream: ...


class StreamObserver(Protocol):
    def opened(self, session: ObservedSession) -> None:
        """A new session (not a resume) was created."""

    def audio(self, session: ObservedSession) -> None:
        """A chunk went into the session's engine stream (``audio_received_s`` moved on)."""

    def event(self, session: ObservedSession, event: StreamResult | SpeechEvent) -> None:
        """The engine produced an event that the session keeps for its client."""

    def removed(self, session: ObservedSession) -> None:
        """The session left the store (finished and reaped, or abandoned)."""

    def error(self, kind: str, code: str) -> None:
        """A stream ended with an error: ``kind`` says where, ``code`` is the Status name."""


class _NoObserver:
    def opened(self, session: ObservedSession) -> None:
        pass

    def audio(self, session: ObservedSession) -> None:
        pass

    def event(self, session: ObservedSession, event: StreamResult | SpeechEvent) -> None:
        pass

    def removed(self, session: ObservedSession) -> None:
        pass

    def error(self, kind: str, code: str) -> None:
        pass


NO_OBSERVER: StreamObserver = _NoObserver()
