"""The server's transcript history: every final into the recent cache and, with ``--history``,
into the SQLite file, before any client can see it.

:class:`HistoryRecorder` is called by the session pump (:mod:`.sessions`) with each final as
the engine delivers it, and awaited: the final joins the session's events (what connections
send) only after its commit, so a final a client has received survives ``kill -9``. Whole-file
transcripts are recorded the same way before the answer goes back (:func:`recording_files`).

The history never stops transcription. A file that cannot be opened (locked, corrupt) is a
logged error and the ``history_unavailable`` alert at start-up; a write that fails or hangs
later is the same. Either way the server goes on with the in-memory cache alone. (A path that
could never be written is refused before the server starts: ``check_history_path``.)

The recent cache sits in front of the file for reads: one transcript is answered from memory
when it is there; listings and searches need the file (it holds every session), and fall back
to memory, saying so, when the file cannot be read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from audiototext.history.errors import (
    BadQueryError,
    HistoryError,
    HistoryUnavailableError,
    SessionNotFoundError,
)
from audiototext.history.recent import RecentTranscripts
from audiototext.history.records import Final, HistoryReader, SessionInfo, Word
from audiototext.history.store import HistoryStore, Retention, unavailable
from audiototext.history.writer import HistoryWriter
from audiototext.server.files import FileRequest, FileTranscribeFn, FileTranscript
from audiototext.server.sessions import new_session_id
from audiototext.server.status import Status, StatusError
from audiototext.streaming.types import StreamResult

if TYPE_CHECKING:
    from audiototext.server.sessions import ServerSession

__all__ = [
    "HistoryRecorder",
    "HistorySettings",
    "Read",
    "SessionLiveError",
    "history_status",
    "recording_files",
]

log = logging.getLogger(__name__)

# A commit waits for the file's lock (2 s at most) and one fsync; past this, something is
# wrong with the disk and the final goes out without waiting (and history goes to memory).
COMMIT_TIMEOUT_S = 10.0


T = TypeVar("T")


@dataclass(frozen=True)
class Read(Generic[T]):
    """A query's answer, and why memory answered it when the file should have (or None)."""

    value: T
    fallback: str | None


@dataclass(frozen=True)
class HistorySettings:
    path: Path | None = None  # None: memory only
    retention: Retention = field(default_factory=Retention)
    recent_sessions: int = 100  # kept in memory, file or not


class SessionLiveError(HistoryError):
    """The session is still streaming; it can be deleted once it ends."""


class HistoryRecorder:
    def __init__(
        self,
        settings: HistorySettings,
        writer: HistoryWriter | None,
        *,
        model: str = "",
        commit_timeout_s: float = COMMIT_TIMEOUT_S,
        on_unavailable: Callable[[str], None] = lambda why: None,
    ) -> None:
        self.settings = settings
        self.model = model  # what files are transcribed with
        self.recent = RecentTranscripts(settings.recent_sessions)
        self.writer = writer
        self.alert: str | None = None  # why the file is not in use, when it was asked for
        self._commit_timeout_s = commit_timeout_s
        self._on_unavailable = on_unavailable  # the alert monitor's history_unavailable
        self._finals_sent: dict[str, int] = {}

    @classmethod
    async def start(
        cls,
        settings: HistorySettings,
        *,
        model: str = "",
        on_unavailable: Callable[[str], None] = lambda why: None,
    ) -> HistoryRecorder:
        """Open the history file (off the event loop); a file that cannot be used is logged,
        ``on_unavailable(why)`` is called, and the recorder keeps memory only."""
        if settings.path is None:
            return cls(settings, None, model=model, on_unavailable=on_unavailable)
        try:
            writer = await asyncio.to_thread(HistoryWriter.open, settings.path, settings.retention)
        except HistoryError as exc:
            recorder = cls(settings, None, model=model, on_unavailable=on_unavailable)
            recorder._degrade(str(exc), None)
            return recorder
        log.info("history: keeping transcripts in %s", settings.path)
        return cls(settings, writer, model=model, on_unavailable=on_unavailable)

    @property
    def persistent(self) -> bool:
        return self.writer is not None

    def _degrade(self, why: str, writer: HistoryWriter | None) -> None:
        if writer is not self.writer:
            return  # finals queued beside the one that failed: said once is enough
        self.alert = why
        log.error("history: %s; transcripts are kept in memory only from now on", why)
        self._on_unavailable(f"{why}; transcripts are kept in memory only until a restart")
        self.writer = None
        if writer is not None:
            writer.close(timeout_s=None)  # never wait here: the disk may be what hangs

    async def _commit(self, operation: Callable[[HistoryStore], object]) -> None:
        writer = self.writer
        if writer is None:
            return
        try:
            await asyncio.wait_for(writer.run(operation), self._commit_timeout_s)
        except TimeoutError:
            self._degrade(
                f"writing to {writer.path} took over {self._commit_timeout_s:g} s (disk stalled?)",
                writer,
            )
        except sqlite3.Error as exc:
            self._degrade(f"writing failed: {unavailable(writer.path, exc)}", writer)
        except Exception as exc:
            self._degrade(f"writing to {writer.path} failed: {exc}", writer)

    # ------------------------------------------------------------------ recording

    async def final(self, session: ServerSession, result: StreamResult) -> None:
        """Keep ``result`` (a final); returns once it is committed, or history has given up."""
        if session.id not in self._finals_sent and session.restored and self.writer is not None:
            # Resumed from the session store after a restart: number after the file's finals,
            # which a fresh count would overwrite.
            with contextlib.suppress(Exception):
                writer = self.writer
                done = await asyncio.wait_for(
                    writer.run(lambda store: store.next_seq(session.id)), self._commit_timeout_s
                )
                self._finals_sent[session.id] = done - 1
        seq = self._finals_sent.get(session.id, 0) + 1
        self._finals_sent[session.id] = seq
        info = _stream_info(session)
        final = Final(
            seq=seq,
            start_s=result.start_s,
            end_s=result.end_s,
            text=result.text,
            words=tuple(Word(w.text, w.start_s, w.end_s) for w in result.words),
        )
        self.recent.add_final(info, final)
        await self._commit(lambda store: store.add_final(info, final))

    async def add_local(
        self, session_id: str, segments: list[tuple[str, Final]], live: ServerSession | None
    ) -> tuple[int, int]:
        """A page's locally transcribed segments ``(client_id, final)``, appended to the
        session's transcript after what it holds (``live``: the session is open on this
        server, so it may have no final yet). Returns (added, already there): a retried upload
        is not doubled. :class:`SessionNotFoundError` when neither memory nor the file holds
        the session and it is not live."""
        info = _stream_info(live) if live is not None else None
        writer = self.writer
        seqs: list[int | None] | None = None
        if writer is not None:
            try:
                seqs = await asyncio.wait_for(
                    writer.run(lambda store: store.add_local(session_id, segments, info)),
                    self._commit_timeout_s,
                )
            except SessionNotFoundError:
                if not self.recent.has(session_id):
                    raise
            except (TimeoutError, sqlite3.Error) as exc:
                self._degrade(f"writing local segments to {writer.path} failed: {exc}", writer)
        if seqs is not None:
            fresh = [
                (c, replace(f, seq=n))
                for (c, f), n in zip(segments, seqs, strict=True)
                if n is not None
            ]
        else:
            fresh = [(c, replace(f, seq=0)) for c, f in segments]
        try:
            kept = self.recent.add_local(session_id, fresh, info)
        except SessionNotFoundError:
            if seqs is None:
                raise
            kept = []  # in the file only (memory dropped it, or the server restarted)
        added = sum(n is not None for n in seqs) if seqs is not None else len(kept)
        last = max((f.seq for f in kept), default=0)
        if seqs is not None:
            last = max([last, *(n for n in seqs if n is not None)])
        if session_id in self._finals_sent or live is not None:
            # The stream's later finals are numbered after these.
            self._finals_sent[session_id] = max(self._finals_sent.get(session_id, 0), last)
        return added, len(segments) - added

    def ended(self, session: ServerSession) -> None:
        """The session's last event is out: its end time, and retention, in the background."""
        if self._finals_sent.pop(session.id, None) is None:
            return  # no text: nothing was kept
        now = time.time()
        self.recent.end_session(session.id, now)
        if self.writer is not None:
            retention = self.settings.retention
            done = self.writer.submit(partial(_end_and_prune, session.id, now, retention))
            done.add_done_callback(_log_failure)

    async def file(self, request: FileRequest, started_at: float, out: FileTranscript) -> None:
        info = SessionInfo(
            id=new_session_id(),  # as stream sessions are named
            started_at=started_at,
            ended_at=time.time(),
            model=self.model,
            language=out.language,
            transport=request.transport,
            source="file",
        )
        finals = [
            Final(
                seq=n,
                start_s=start,
                end_s=end,
                text=text,
                words=tuple(Word(t, a, b) for a, b, t in out.words if start <= a < end),
            )
            for n, (start, end, text) in enumerate(out.segments, 1)
        ]
        if not finals:
            return
        for final in finals:
            self.recent.add_final(info, final)

        def add_all(store: HistoryStore) -> None:
            for final in finals:
                store.add_final(info, final)

        await self._commit(add_all)

    # ------------------------------------------------------------------ queries (REST)

    def read(self, query: Callable[[HistoryReader], T], *, one: str | None = None) -> Read[T]:
        """``query`` answered from the file while it is in use (a fresh read-only connection:
        call from a worker thread), else from memory. ``one``: the query is about that session
        only, and memory answers it when it holds all of that session. A file that cannot be read
        (locked by another program, damaged since) leaves memory to answer, with the reason."""
        if one is not None and self.recent.holds_whole(one):
            return Read(query(self.recent), None)
        writer = self.writer
        if writer is None:
            return Read(query(self.recent), None)
        try:
            store = HistoryStore.open(writer.path, create=False, read_only=True)
        except HistoryUnavailableError as exc:
            return self._from_memory(query, exc)
        try:
            return Read(query(store), None)
        except HistoryUnavailableError as exc:
            return self._from_memory(query, exc)
        finally:
            store.close()

    def _from_memory(self, query: Callable[[HistoryReader], T], exc: Exception) -> Read[T]:
        log.warning("history: reading the file failed (%s); answering from memory", exc)
        return Read(query(self.recent), f"{exc}; showing the transcripts kept in memory")

    async def delete(self, session_id: str) -> None:
        if self.recent.is_live(session_id):
            raise SessionLiveError(
                f"session {session_id!r} is still streaming; delete it once it has ended"
            )
        found = False
        try:
            self.recent.delete(session_id)
            found = True
        except SessionNotFoundError:
            pass
        writer = self.writer
        if writer is not None:
            try:
                await writer.run(lambda store: store.delete(session_id))
                found = True
            except SessionNotFoundError:
                pass
        if not found:
            raise SessionNotFoundError(f"no session {session_id!r} in the history")

    def close(self) -> None:
        """Commit what is queued and close the file (at shutdown, after the last final)."""
        if self.writer is not None:
            self.writer.close()


def history_status(exc: HistoryError) -> StatusError:
    """The neutral status of a history error, for every API (REST, gRPC)."""
    if isinstance(exc, SessionNotFoundError):
        return StatusError(Status.NOT_FOUND, str(exc))
    if isinstance(exc, BadQueryError):
        return StatusError(Status.INVALID_ARGUMENT, str(exc))
    if isinstance(exc, SessionLiveError):
        return StatusError(Status.FAILED_PRECONDITION, str(exc))
    return StatusError(Status.UNAVAILABLE, str(exc))


def _stream_info(session: ServerSession) -> SessionInfo:
    options = session.spec.options
    language = options.language or ("en" if options.model.endswith(".en") else "")
    return SessionInfo(
        id=session.id,
        started_at=session.started_at,
        ended_at=None,
        model=options.model,
        language=language,
        transport=session.transport,
        source="stream",
    )


def _end_and_prune(
    session_id: str, ended_at: float, retention: Retention, store: HistoryStore
) -> None:
    store.end_session(session_id, ended_at)
    store.prune(retention)


def _log_failure(done: concurrent.futures.Future[None]) -> None:
    # Runs on the writer thread: only a log line (the next final's commit degrades, if need be).
    if not done.cancelled() and done.exception() is not None:
        log.warning("history: recording a session's end failed: %s", done.exception())


def recording_files(transcribe: FileTranscribeFn, recorder: HistoryRecorder) -> FileTranscribeFn:
    """``transcribe`` whose transcripts are recorded before they are returned."""

    async def run(request: FileRequest) -> FileTranscript:
        started_at = time.time()
        out = await transcribe(request)
        await recorder.file(request, started_at, out)
        return out

    return run
