"""Server-side stream sessions: resume after a disconnect, numbered events, credit.

A :class:`ServerSession` outlives its connection. The engine session keeps working while the
client is away; results are numbered (``event_seq``) and kept so a client that reconnects
with ``session_id`` + ``resume_from_event`` gets exactly the ones it missed, and chunks are
numbered (``seq``) so a resent chunk the server already has is dropped. A detached session is
finalised and dropped after ``resume_grace_s``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from audiototext.audio.features import SAMPLE_RATE_HZ
from audiototext.server.engine import Engine, EngineStream
from audiototext.server.logging_setup import session_context
from audiototext.server.observer import NO_OBSERVER, StreamObserver
from audiototext.server.session_state import (
    MAX_KEPT_FINALS,
    SessionState,
    SessionStateStore,
    spec_fields,
)
from audiototext.streaming.types import (
    OverloadedError,
    SpeechEvent,
    StreamOptions,
    StreamResult,
)
from audiototext.wire.codec import ChunkDecoder

__all__ = ["ServerSession", "SessionExpiredError", "SessionRecorder", "SessionStore", "StreamSpec"]

log = logging.getLogger(__name__)

_MAX_KEPT_EVENTS = 20_000  # per session; partials are small, finals few


def new_session_id() -> str:
    """16 URL-safe characters, never starting with "-": ids are typed as command-line
    arguments (``audiototext history export ID``), where a leading dash reads as an option."""
    while True:
        candidate = secrets.token_urlsafe(12)
        if not candidate.startswith("-"):
            return candidate


class SessionExpiredError(LookupError):
    """No session with that id: never existed, expired after its grace period, or finished."""


@dataclass(frozen=True)
class StreamSpec:
    """What a StreamConfig declared, validated."""

    encoding: int
    sample_rate_hz: int
    channels: int
    interim_results: bool
    options: StreamOptions


class SessionRecorder(Protocol):
    """Keeps finals as they are delivered (the transcript history, :mod:`.recording`)."""

    async def final(self, session: ServerSession, result: StreamResult) -> None: ...

    def ended(self, session: ServerSession) -> None: ...


class Attachment:
    """One connection's hold on a session; a newer connection takes the session over."""

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.replaced = False


class ServerSession:
    def __init__(
        self,
        session_id: str,
        spec: StreamSpec,
        engine: EngineStream,
        *,
        transport: str = "",
        recorder: SessionRecorder | None = None,
        observer: StreamObserver = NO_OBSERVER,
        recognizer: Engine | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.id = session_id
        self.observer = observer
        self.spec = spec
        self.engine = engine
        self.transport = transport  # the transport that opened it: "grpc", "websocket", ...
        self.started_at = time.time()
        self.recorder = recorder
        self.recognizer = recognizer  # the engine (model) this stream runs on
        self._on_done = on_done  # once the engine stream ended: its model may be unloaded
        self.decoder = ChunkDecoder(spec.sample_rate_hz, spec.channels)
        self.next_seq = 1
        self.events: deque[tuple[int, StreamResult | SpeechEvent]] = deque(maxlen=_MAX_KEPT_EVENTS)
        self.event_count = 0
        self.finishing = False  # FINISH received (or the server is shutting down)
        self.completed = False  # the engine delivered its last event
        self.failed: BaseException | None = None
        self.attachment: Attachment | None = None
        self.detached_at: float | None = None
        self.completed_at: float | None = None
        self.half_closed_at: float | None = None  # request stream ended without FINISH
        self._pump: asyncio.Task[None] | None = None
        self._finish_task: asyncio.Task[None] | None = None
        # With a durable state store: the finals kept in it, and which chunk ends where
        # (engine samples received after each chunk) to tell the chunk a checkpoint covers.
        self.state_store: SessionStateStore | None = None
        self.finals: deque[tuple[int, StreamResult]] = deque(maxlen=MAX_KEPT_FINALS)
        self.stored_seq = 0  # chunks up to this one are in the state store
        self.restored = False  # carried on from the state store (another process's session)
        self._chunk_ends: deque[tuple[int, int]] = deque(maxlen=8192)

    def keep_state(self, store: SessionStateStore) -> None:
        """Write this session's state to ``store`` at each final (a durable store)."""
        self.state_store = store
        if hasattr(self.engine, "keep_checkpoints"):
            self.engine.keep_checkpoints = True

    def chunk_received(self, seq: int) -> None:
        if self.state_store is not None:
            received = round(self.engine.audio_received_s * SAMPLE_RATE_HZ)
            self._chunk_ends.append((received, seq))

    def _checkpoint(self, event_seq: int, final: StreamResult) -> None:
        store = self.state_store
        pop = getattr(self.engine, "pop_checkpoint", None)
        cp = pop(final.utterance_id) if store is not None and pop is not None else None
        if store is None or cp is None:
            return
        covered = 0
        while self._chunk_ends and self._chunk_ends[0][0] <= cp.received:
            covered = self._chunk_ends.popleft()[1]
        if not covered:
            covered = self.stored_seq
        self._chunk_ends.appendleft((cp.received, covered))
        state = SessionState(
            self.id,
            spec_fields(
                self.spec.encoding,
                self.spec.sample_rate_hz,
                self.spec.channels,
                self.spec.interim_results,
                self.spec.options,
            ),
            covered + 1,
            event_seq,
            tuple(self.finals),
            cp,
        )
        loop = asyncio.get_running_loop()

        def stored(ok: bool) -> None:
            if ok:
                loop.call_soon_threadsafe(self._stored, covered)

        store.save(state, stored)

    def _stored(self, seq: int) -> None:
        if seq > self.stored_seq:
            self.stored_seq = seq
            self._notify()

    def start(self) -> None:
        self._pump = asyncio.create_task(self._run_pump(), name=f"pump-{self.id}")

    async def _run_pump(self) -> None:
        session_context.set(self.id)  # this task's log records name the session
        try:
            async for event in self.engine.events():
                if (
                    isinstance(event, StreamResult)
                    and not event.is_final
                    and not self.spec.interim_results
                ):
                    continue
                if isinstance(event, StreamResult) and event.is_final and self.recorder is not None:
                    # Kept before any connection can send it: a final a client has seen is
                    # already in the history (the recorder never raises).
                    await self.recorder.final(self, event)
                self.event_count += 1
                self.events.append((self.event_count, event))
                if isinstance(event, StreamResult) and event.is_final:
                    self.finals.append((self.event_count, event))
                    self._checkpoint(self.event_count, event)
                self.observer.event(self, event)
                self._notify()
        except Exception as exc:  # the engine failed: end the stream with INTERNAL
            log.exception("stream %s: engine failed", self.id)
            self.failed = exc
            self.observer.error("engine", "INTERNAL")
        finally:
            self.completed = True
            self.completed_at = time.monotonic()
            if self._on_done is not None:
                done, self._on_done = self._on_done, None
                done()
            # The engine stream is over: its model may be unloaded while this session waits
            # for a resume, so it keeps no hold on the model (metrics use the store's engine).
            self.recognizer = None
            self._notify()
            if self.recorder is not None:
                self.recorder.ended(self)

    def _notify(self) -> None:
        if self.attachment is not None:
            self.attachment.wake.set()

    def events_from(self, first: int) -> list[tuple[int, StreamResult | SpeechEvent]]:
        if not self.events or first > self.event_count:
            return []
        oldest = self.events[0][0]
        if self.events[-1][0] - oldest != len(self.events) - 1:
            # Numbered with gaps (a restored session keeps only the finals before it).
            return [e for e in self.events if e[0] >= first]
        start = max(first, oldest) - oldest
        return list(self.events)[start:]

    def oldest_event(self) -> int:
        return self.events[0][0] if self.events else self.event_count + 1

    def attach(self) -> Attachment:
        if self.attachment is not None:
            self.attachment.replaced = True
            self.attachment.wake.set()
        self.attachment = Attachment()
        self.detached_at = None
        self.half_closed_at = None
        return self.attachment

    def detach(self, attachment: Attachment) -> None:
        if self.attachment is attachment:
            self.attachment = None
            self.detached_at = time.monotonic()

    def request_finish(self) -> None:
        """Finalise the rest of the audio; the pump ends once the engine is done."""
        if self.finishing:
            return
        self.finishing = True
        self._finish_task = asyncio.create_task(self._finish(), name=f"finish-{self.id}")

    async def _finish(self) -> None:
        try:
            await self.engine.finish()
        except Exception as exc:
            log.exception("stream %s: finish failed", self.id)
            self.failed = exc
            self.completed = True
            self._notify()

    async def wait_completed(self, timeout_s: float) -> None:
        if self._pump is not None:
            await asyncio.wait({self._pump}, timeout=timeout_s)

    def cancel(self) -> None:
        for task in (self._pump, self._finish_task):
            if task is not None:
                task.cancel()

    def lag_s(self) -> float:
        """Audio waiting in the engine: what its buffer limit counts (``buffered_s``: not yet
        read, or ended and awaiting its final) when it says so, else received - processed.

        Not received - processed when the engine has ``buffered_s``: an utterance still being
        spoken is read but not "processed" until its next partial or final, and a credit that
        waited for it would stop the client from sending the silence that ends it.
        """
        buffered = getattr(self.engine, "buffered_s", None)
        if isinstance(buffered, float):
            return max(0.0, buffered)
        return max(0.0, self.engine.audio_received_s - self.engine.audio_processed_s)


class SessionStore:
    """The server's open stream sessions, with limits and resume bookkeeping."""

    def __init__(
        self,
        recognizer: Engine,
        *,
        max_sessions: int,
        resume_grace_s: float,
        recorder: SessionRecorder | None = None,
        observer: StreamObserver = NO_OBSERVER,
        state_store: SessionStateStore | None = None,
    ):
        self.recognizer = recognizer
        # Where sessions' states are written at each final when it outlives this process.
        self.state_store = state_store if state_store is not None and state_store.durable else None
        self.recorder = recorder
        self.observer = observer
        self.max_sessions = max_sessions
        self.resume_grace_s = resume_grace_s
        self._sessions: dict[str, ServerSession] = {}
        self._reaper: asyncio.Task[None] | None = None
        self.closing = False
        self.streams_total = 0

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_loop(), name="session-reaper")

    def session_ids(self) -> list[str]:
        """The open sessions' ids (attached or waiting for a resume)."""
        return [sid for sid, s in self._sessions.items() if not s.completed]

    def open_count(self) -> int:
        return sum(1 for s in self._sessions.values() if not s.completed)

    def detached_count(self) -> int:
        return sum(1 for s in self._sessions.values() if s.attachment is None and not s.completed)

    def create(
        self,
        spec: StreamSpec,
        *,
        transport: str = "",
        recognizer: Engine | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> ServerSession:
        """A new session on ``recognizer`` (default: the store's); ``on_done`` is called once
        its engine stream has ended (not when ``create`` raises)."""
        if self.open_count() >= self.max_sessions:
            raise OverloadedError(
                f"the server is at its limit of {self.max_sessions} concurrent streams "
                "(--max-sessions); retry later or raise the limit"
            )
        owner = recognizer if recognizer is not None else self.recognizer
        engine = owner.open(spec.options)  # may raise OverloadedError itself
        session = ServerSession(
            new_session_id(),
            spec,
            engine,
            transport=transport,
            recorder=self.recorder,
            observer=self.observer,
            recognizer=owner,
            on_done=on_done,
        )
        return self._add(session)

    def _add(self, session: ServerSession) -> ServerSession:
        if self.state_store is not None:
            session.keep_state(self.state_store)
        self._sessions[session.id] = session
        self.streams_total += 1
        self.observer.opened(session)
        session.start()
        return session

    def restore(
        self,
        state: SessionState,
        spec: StreamSpec,
        owner: Engine,
        *,
        last_event_seen: int,
        transport: str = "",
        on_done: Callable[[], None] | None = None,
    ) -> ServerSession:
        """A session another process held, carried on from its stored ``state`` on ``owner``.

        Events are numbered after both the stored count and the client's last one, so a
        result it regenerates is never taken for one the client already has."""
        if self.open_count() >= self.max_sessions:
            raise OverloadedError(
                f"the server is at its limit of {self.max_sessions} concurrent streams "
                "(--max-sessions); retry later or raise the limit"
            )
        # The streaming engine's open takes restore=; the Engine protocol leaves it out so
        # that test doubles need not (only a durable store calls this).
        open_restored = cast("Callable[..., EngineStream]", owner.open)
        engine = open_restored(spec.options, restore=state.engine)
        session = ServerSession(
            state.session_id,
            spec,
            engine,
            transport=transport,
            recorder=self.recorder,
            observer=self.observer,
            recognizer=owner,
            on_done=on_done,
        )
        session.restored = True
        session.next_seq = state.next_seq
        session.stored_seq = state.next_seq - 1
        session.event_count = max(state.event_count, last_event_seen)
        for seq, final in state.finals:
            session.events.append((seq, final))
            session.finals.append((seq, final))
        session._chunk_ends.append((state.engine.received, state.next_seq - 1))
        log.info(
            "stream %s: restored from the session store (chunk %d, event %d)",
            session.id,
            state.next_seq - 1,
            state.event_count,
            extra={"session_id": session.id},
        )
        return self._add(session)

    def get_or_none(self, session_id: str) -> ServerSession | None:
        return self._sessions.get(session_id)

    def get(self, session_id: str) -> ServerSession:
        session = self._sessions.get(session_id)
        if session is None:
            raise SessionExpiredError(
                f"no stream session {session_id!r} on this server: it finished, or it waited "
                f"more than {self.resume_grace_s:g} s for a reconnect; start a new stream"
            )
        return session

    def sessions(self) -> list[ServerSession]:
        """Every session the store holds (open, detached, or done and not yet reaped)."""
        return list(self._sessions.values())

    def remove(self, session: ServerSession) -> None:
        if self._sessions.pop(session.id, None) is not None:
            self.observer.removed(session)
            if self.state_store is not None:
                self.state_store.delete(session.id)

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, max(0.05, self.resume_grace_s / 4)))
            self.reap()

    def reap(self) -> None:
        now = time.monotonic()
        if self.state_store is not None:
            # Open sessions' states must not expire between finals (a long silence).
            self.state_store.touch(s.id for s in self._sessions.values() if not s.completed)
        for session in list(self._sessions.values()):
            if session.attachment is not None:
                if (
                    not session.finishing
                    and session.half_closed_at is not None
                    and now - session.half_closed_at > self.resume_grace_s
                ):
                    session.request_finish()
                continue
            if session.completed:
                done_at = max(session.completed_at or now, session.detached_at or now)
                if now - done_at > self.resume_grace_s:
                    self.remove(session)
            elif (
                session.detached_at is not None and now - session.detached_at > self.resume_grace_s
            ):
                log.info(
                    "stream %s: no reconnect within %.1f s; finalising",
                    session.id,
                    self.resume_grace_s,
                    extra={"session_id": session.id},  # the reaper runs outside the stream
                )
                session.request_finish()
                # Keep it until the engine is done and the grace period passes again, so a
                # very late client still gets NOT_FOUND rather than half a transcript.
                session.detached_at = now

    async def close(self, timeout_s: float) -> None:
        """Finalise every open session (delivering finals to attached clients), then stop."""
        self.closing = True
        open_sessions = [s for s in self._sessions.values() if not s.completed]
        for session in open_sessions:
            session.request_finish()
        await asyncio.gather(*(s.wait_completed(timeout_s) for s in open_sessions))
        if self._reaper is not None:
            self._reaper.cancel()
        for session in self._sessions.values():
            session.cancel()
