"""The history file: SQLite in WAL mode, full-text search with FTS5, retention.

Why these settings:

* **WAL**: readers (the REST API, ``audiototext history`` in another process) never block the
  server's writer and see only committed transactions.
* **synchronous=FULL**: each commit is fsynced, so a final the client was sent survives a
  power cut as well as a crash. The server commits finals in small groups (one writer thread,
  :mod:`.writer`), so this costs one fsync per group, not per final.
* **FTS5** with an external-content table over ``segments`` (kept in step by triggers): the
  text is stored once, and ``history search`` is an index lookup, not a scan.

A session row is written with its first final: a stream that produced no text leaves no
trace. Retention (``--history-days``, ``--history-max-sessions``) is applied at open and each
time a session ends.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from audiototext.errors import ConfigError
from audiototext.history.errors import HistoryUnavailableError, SessionNotFoundError
from audiototext.history.records import (
    ANY_TIME,
    Final,
    Page,
    SearchHit,
    SessionInfo,
    SessionSummary,
    TimeRange,
    Transcript,
    Word,
    preview,
    search_terms,
)

__all__ = [
    "HistoryStore",
    "Retention",
    "check_history_path",
    "default_history_path",
    "unavailable",
]

SCHEMA_VERSION = 2  # 2: segments.origin and client_id (a page's uploaded local segments)
_BUSY_TIMEOUT_MS = 2000  # a CLI `history rm` holds the write lock for milliseconds
_MAX_DAYS = 36_500.0
_MAX_SESSIONS = 100_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    ended_at REAL,
    model TEXT NOT NULL,
    language TEXT NOT NULL,
    transport TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('stream', 'file'))
);
CREATE INDEX IF NOT EXISTS sessions_by_start ON sessions (started_at);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    start_s REAL NOT NULL,
    end_s REAL NOT NULL,
    text TEXT NOT NULL,
    words TEXT,  -- JSON [[text, start_s, end_s], ...]; NULL without word timings
    origin TEXT NOT NULL DEFAULT 'server' CHECK (origin IN ('server', 'local')),
    client_id TEXT,  -- the uploader's id of a local segment (a retried upload is not doubled)
    UNIQUE (session_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS segments_by_client ON segments (session_id, client_id);
CREATE VIRTUAL TABLE IF NOT EXISTS segments_fts USING fts5 (
    text, content = 'segments', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS segments_ai AFTER INSERT ON segments BEGIN
    INSERT INTO segments_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS segments_ad AFTER DELETE ON segments BEGIN
    INSERT INTO segments_fts (segments_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
"""

# Version 1 files (before local segments) gain the two columns when the server opens them.
_TO_V2 = """
ALTER TABLE segments ADD COLUMN origin TEXT NOT NULL DEFAULT 'server'
    CHECK (origin IN ('server', 'local'));
ALTER TABLE segments ADD COLUMN client_id TEXT;
CREATE UNIQUE INDEX segments_by_client ON segments (session_id, client_id);
"""

# A summary per session: count, end of the last segment, and the text's start for a preview.
_SUMMARY_OF = """
SELECT s.id, s.started_at, s.ended_at, s.model, s.language, s.transport, s.source,
       (SELECT count(*) FROM segments g WHERE g.session_id = s.id),
       (SELECT coalesce(max(g.end_s), 0.0) FROM segments g WHERE g.session_id = s.id),
       (SELECT group_concat(text, ' ') FROM (
            SELECT g.text FROM segments g WHERE g.session_id = s.id ORDER BY g.seq LIMIT 8))
FROM {} s
"""
_SUMMARY = _SUMMARY_OF.format("sessions")


def default_history_path() -> Path:
    """Where ``./run.sh`` keeps the history: next to the model cache (``AUDIOTOTEXT_HOME``)."""
    from audiototext.models.cache import cache_home

    return cache_home() / "history.sqlite3"


def check_history_path(path: Path) -> None:
    """Refuse (:class:`ConfigError` naming ``--history``) a path the server could never write:
    a folder, a file inside something that is not a folder, a folder or file without write
    permission. Nothing is created: this runs before the server loads anything."""
    path = path.expanduser()
    fix = "choose a writable --history path"
    if path.is_dir():
        raise ConfigError(
            f"--history {path} is a folder; give a file name, e.g. {path / 'history.sqlite3'}"
        )
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            raise ConfigError(f"--history {path}: the file is not writable by this user; {fix}")
        return
    parent = path.parent
    while not parent.exists() and parent.parent != parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"--history {path}: {parent} is a file, not a folder; {fix}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--history {path}: the folder {parent} is not writable; {fix}")


@dataclass(frozen=True)
class Retention:
    """How long sessions are kept: ``days`` since their start, and the newest ``max_sessions``
    (None: no limit of that kind)."""

    days: float | None = None
    max_sessions: int | None = None

    def __post_init__(self) -> None:
        if self.days is not None and not 0 < self.days <= _MAX_DAYS:
            raise ConfigError(
                f"--history-days {self.days:g} is not between 0 (exclusive) and {_MAX_DAYS:g} "
                "(100 years); leave it out to keep sessions of any age"
            )
        if self.max_sessions is not None and not 1 <= self.max_sessions <= _MAX_SESSIONS:
            raise ConfigError(
                f"--history-max-sessions {self.max_sessions} is not between 1 and "
                f"{_MAX_SESSIONS}; leave it out to keep any number"
            )


def _info(row: Sequence[object]) -> SessionInfo:
    sid, started, ended, model, language, transport, source = row[:7]
    assert source in ("stream", "file")
    return SessionInfo(
        id=str(sid),
        started_at=float(started),  # type: ignore[arg-type]
        ended_at=None if ended is None else float(ended),  # type: ignore[arg-type]
        model=str(model),
        language=str(language),
        transport=str(transport),
        source=source,
    )


def _summary(row: Sequence[object]) -> SessionSummary:
    return SessionSummary(
        info=_info(row),
        segments=int(row[7]),  # type: ignore[call-overload]
        duration_s=float(row[8]),  # type: ignore[arg-type]
        preview=preview(str(row[9] or "")),
    )


def _final(row: Sequence[object]) -> Final:
    seq, start, end, text, words, origin = row
    assert origin in ("server", "local")
    return Final(
        seq=int(seq),  # type: ignore[call-overload]
        start_s=float(start),  # type: ignore[arg-type]
        end_s=float(end),  # type: ignore[arg-type]
        text=str(text),
        words=tuple(Word(str(t), float(a), float(b)) for t, a, b in json.loads(str(words)))
        if words
        else (),
        origin=origin,
    )


def _fts_query(query: str) -> str:
    """The user's words as an FTS5 query that cannot be a syntax error: each word quoted (a
    phrase of its tokens), all required; ``word*`` stays a prefix search."""
    parts = []
    for term in search_terms(query):
        prefix = term.endswith("*")
        quoted = '"' + term.strip("*").replace('"', '""') + '"'
        parts.append(quoted + ("*" if prefix else ""))
    return " ".join(parts)


class HistoryStore:
    """One connection to the history file. Not thread-safe: one thread uses one store (the
    server's writer thread has its own; readers open theirs)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._origin = "origin"  # the column read as a final's origin ('server' in a v1 file)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: Path, *, create: bool = True, read_only: bool = False) -> HistoryStore:
        """Open (and with ``create`` make) the history file, or raise
        :class:`HistoryUnavailableError` naming the path and the cause."""
        path = path.expanduser()
        if not path.exists():
            if not create:
                raise HistoryUnavailableError(
                    f"no history at {path}: the server keeps one with `serve --history "
                    f"{path}` (./run.sh does), or pass --history PATH"
                )
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise HistoryUnavailableError(
                    f"cannot create the folder of the history file {path}: "
                    f"{exc.strerror or exc}; choose a writable --history path"
                ) from exc
        elif path.is_dir():
            raise HistoryUnavailableError(
                f"the history path {path} is a folder; give a file name, e.g. "
                f"{path / 'history.sqlite3'}"
            )
        mode = "ro" if read_only else ("rwc" if create else "rw")
        try:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode={mode}",
                uri=True,
                timeout=_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,  # transactions are explicit (BEGIN IMMEDIATE)
                check_same_thread=False,  # one thread at a time; the owner keeps it so
            )
        except sqlite3.Error as exc:
            raise unavailable(path, exc) from exc
        store = cls(conn, path)
        try:
            store._prepare(read_only)
        except sqlite3.Error as exc:
            conn.close()
            raise unavailable(path, exc) from exc
        return store

    def _prepare(self, read_only: bool) -> None:
        c = self._conn
        c.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        c.execute("PRAGMA foreign_keys = ON")
        # A row that INSERT OR REPLACE removes fires the delete trigger only with this on:
        # without it the search index would keep the replaced text.
        c.execute("PRAGMA recursive_triggers = ON")
        # Reading the schema is what finds a file that is not a database ("file is not a
        # database") before the first real query would.
        version = int(c.execute("PRAGMA user_version").fetchone()[0])
        self._origin = "origin" if version != 1 else "'server'"  # v1: server finals only
        if read_only:
            if version not in (1, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(
                    f"not an audiototext history (schema version {version}, "
                    f"expected {SCHEMA_VERSION})"
                )
            return
        mode = str(c.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        if mode.lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL mode (journal mode: {mode})")
        c.execute("PRAGMA synchronous = FULL")
        if version not in (0, 1, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(
                f"history schema version {version} is newer than this audiototext "
                f"knows ({SCHEMA_VERSION}); upgrade audiototext"
            )
        if version == 1:
            c.executescript(f"BEGIN IMMEDIATE; {_TO_V2} PRAGMA user_version = 2; COMMIT;")
            self._origin = "origin"
        if version == 0:
            if c.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]:
                raise sqlite3.DatabaseError("the file is a database of another program")
            c.executescript(
                f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )
        # Damage inside a page is not seen until the page is read: look once, at open.
        check = str(c.execute("PRAGMA quick_check(1)").fetchone()[0])
        if check != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed: {check}")

    def close(self) -> None:
        self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE: the write lock is taken at the start, so a
        busy file fails here, not halfway)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @property
    def journal_mode(self) -> str:
        return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0])

    # ------------------------------------------------------------------ writes (in a transaction)

    def add_final(self, info: SessionInfo, final: Final) -> None:
        """Record one final segment; its session row is made with the first."""
        c = self._conn
        c.execute(
            "INSERT OR IGNORE INTO sessions (id, started_at, ended_at, model, language, "
            "transport, source) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                info.id,
                info.started_at,
                info.ended_at,
                info.model,
                info.language,
                info.transport,
                info.source,
            ),
        )
        words = (
            json.dumps([[w.text, round(w.start_s, 3), round(w.end_s, 3)] for w in final.words])
            if final.words
            else None
        )
        c.execute(
            "INSERT OR REPLACE INTO segments (session_id, seq, start_s, end_s, text, words, "
            "origin) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (info.id, final.seq, final.start_s, final.end_s, final.text, words, final.origin),
        )

    def add_local(
        self,
        session_id: str,
        segments: Sequence[tuple[str, Final]],
        info: SessionInfo | None = None,
    ) -> list[int | None]:
        """Append a page's locally transcribed segments ``(client_id, final)`` to a session,
        numbered after its last segment (each final's own ``seq`` is not used); ``info``
        makes the session's row when the file has none yet (a live session without a final).
        One already stored under its client id is skipped: the seq of each, None if skipped."""
        c = self._conn
        if c.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
            if info is None:
                raise SessionNotFoundError(
                    f"no session {session_id!r} in the history at {self.path}"
                )
            c.execute(
                "INSERT INTO sessions (id, started_at, ended_at, model, language, transport, "
                "source) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    info.id,
                    info.started_at,
                    info.ended_at,
                    info.model,
                    info.language,
                    info.transport,
                    info.source,
                ),
            )
        added: list[int | None] = []
        for client_id, final in segments:
            seq = int(
                c.execute(
                    "SELECT coalesce(max(seq), 0) + 1 FROM segments WHERE session_id = ?",
                    (session_id,),
                ).fetchone()[0]
            )
            cur = c.execute(
                "INSERT OR IGNORE INTO segments (session_id, seq, start_s, end_s, text, origin, "
                "client_id) VALUES (?, ?, ?, ?, ?, 'local', ?)",
                (session_id, seq, final.start_s, final.end_s, final.text, client_id),
            )
            added.append(seq if cur.rowcount == 1 else None)
        return added

    def next_seq(self, session_id: str) -> int:
        """The seq after the session's last segment (1 for a session not in the file)."""
        row = self._conn.execute(
            "SELECT coalesce(max(seq), 0) + 1 FROM segments WHERE session_id = ?", (session_id,)
        ).fetchone()
        return int(row[0])

    def end_session(self, session_id: str, ended_at: float) -> None:
        self._conn.execute("UPDATE sessions SET ended_at = ? WHERE id = ?", (ended_at, session_id))

    def delete(self, session_id: str) -> None:
        """Remove a session and its segments; :class:`SessionNotFoundError` if there is none."""
        cur = self._conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        if cur.rowcount == 0:
            raise SessionNotFoundError(f"no session {session_id!r} in the history at {self.path}")

    def prune(self, retention: Retention, now: float | None = None) -> int:
        """Apply ``retention``; the number of sessions removed."""
        removed = 0
        if retention.days is not None:
            cutoff = (time.time() if now is None else now) - retention.days * 86400
            cur = self._conn.execute("DELETE FROM sessions WHERE started_at < ?", (cutoff,))
            removed += cur.rowcount
        if retention.max_sessions is not None:
            cur = self._conn.execute(
                "DELETE FROM sessions WHERE id NOT IN "
                "(SELECT id FROM sessions ORDER BY started_at DESC, id LIMIT ?)",
                (retention.max_sessions,),
            )
            removed += cur.rowcount
        return removed

    def delete_now(self, session_id: str) -> None:
        """:meth:`delete` in its own transaction (the CLI's ``history rm``)."""
        try:
            with self.transaction():
                self.delete(session_id)
        except sqlite3.OperationalError as exc:
            raise unavailable(self.path, exc) from exc

    # ------------------------------------------------------------------ reads

    def page(self, limit: int, offset: int = 0, when: TimeRange = ANY_TIME) -> Page:
        """Sessions started in ``when``, newest first; ``total`` counts those in ``when``."""
        since = -math.inf if when.since is None else when.since
        until = math.inf if when.until is None else when.until
        where = " WHERE s.started_at >= ? AND s.started_at < ?"
        with self._reading():
            total = int(
                self._conn.execute(
                    "SELECT count(*) FROM sessions s" + where, (since, until)
                ).fetchone()[0]
            )
            # The page's sessions first, then their summaries: summarised in one query with
            # OFFSET, every skipped session was summarised too (a deep page took 20x longer).
            newest = " ORDER BY s.started_at DESC, s.id"
            page = f"(SELECT * FROM sessions s{where}{newest} LIMIT ? OFFSET ?)"
            rows = self._conn.execute(
                _SUMMARY_OF.format(page) + newest, (since, until, limit, offset)
            ).fetchall()
        return Page(tuple(_summary(r) for r in rows), total, limit, offset)

    def search(self, query: str, limit: int) -> list[SearchHit]:
        """Final segments that hold every word of ``query``, best match first."""
        fts = _fts_query(query)
        with self._reading():
            rows = self._conn.execute(
                "SELECT g.session_id, g.seq, g.start_s, g.end_s, g.text, g.words, "
                f"{'g.' if self._origin == 'origin' else ''}{self._origin}, "
                "snippet(segments_fts, 0, '[', ']', '…', 16) "
                "FROM segments_fts JOIN segments g ON g.id = segments_fts.rowid "
                "WHERE segments_fts MATCH ? ORDER BY rank LIMIT ?",
                (fts, limit),
            ).fetchall()
            summaries = {
                sid: self._summary_of(sid) for sid in dict.fromkeys(str(r[0]) for r in rows)
            }
        return [
            SearchHit(session=summaries[str(r[0])], final=_final(r[1:7]), snippet=str(r[7]))
            for r in rows
        ]

    def get(self, session_id: str) -> Transcript:
        with self._reading():
            summary = self._summary_of(session_id)
            rows = self._conn.execute(
                f"SELECT seq, start_s, end_s, text, words, {self._origin} FROM segments "
                "WHERE session_id = ? ORDER BY seq",
                (session_id,),
            ).fetchall()
        return Transcript(summary.info, tuple(_final(r) for r in rows))

    def _summary_of(self, session_id: str) -> SessionSummary:
        row = self._conn.execute(_SUMMARY + " WHERE s.id = ?", (session_id,)).fetchone()
        if row is None:
            raise SessionNotFoundError(f"no session {session_id!r} in the history at {self.path}")
        return _summary(row)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        # One read transaction per query: its parts see one snapshot of the file.
        try:
            self._conn.execute("BEGIN")
            try:
                yield
            finally:
                self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise unavailable(self.path, exc) from exc


def unavailable(path: Path, exc: sqlite3.Error) -> HistoryUnavailableError:
    """The error a person can act on for what SQLite said about ``path``."""
    text = str(exc)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        why = (
            f"the history file {path} is locked by another program ({text}); close it, "
            "or pass another --history path"
        )
    elif "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        why = (
            f"the history file {path} is not a readable SQLite database ({text}); move it "
            "away (a new one is made) or pass another --history path"
        )
    elif "readonly" in lowered or "unable to open" in lowered or "read-only" in lowered:
        why = (
            f"cannot open the history file {path} for writing ({text}); check its "
            "permissions and its folder's, or pass another --history path"
        )
    else:
        why = f"the history file {path} cannot be used: {text}"
    return HistoryUnavailableError(why)
