"""The history file: WAL, FTS5 search, exports, retention, and files that cannot be used."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from audiototext.errors import ConfigError
from audiototext.history.errors import (
    BadQueryError,
    HistoryUnavailableError,
    SessionNotFoundError,
)
from audiototext.history.export import render_transcript
from audiototext.history.recent import RecentTranscripts
from audiototext.history.records import (
    MAX_PAGE,
    Final,
    SessionInfo,
    TimeRange,
    Word,
    check_limit,
)
from audiototext.history.store import HistoryStore, Retention
from audiototext.history.writer import HistoryWriter

NOW = 1_800_000_000.0


def info(sid: str, started_at: float = NOW, **kw: object) -> SessionInfo:
    fields: dict[str, object] = {
        "id": sid,
        "started_at": started_at,
        "ended_at": None,
        "model": "tiny.en",
        "language": "en",
        "transport": "websocket",
        "source": "stream",
    }
    fields.update(kw)
    return SessionInfo(**fields)  # type: ignore[arg-type]


FINALS = (
    Final(
        1,
        0.5,
        2.25,
        " The quick brown fox jumps.",
        (Word(" The", 0.5, 0.7), Word(" quick", 0.7, 1.0)),
    ),
    Final(2, 3.0, 4.5, " She sells sea shells --> by the shore."),
    Final(3, 5.0, 6.0, " Café au lait, s'il vous plaît."),
)


def filled(path: Path, *sessions: tuple[SessionInfo, tuple[Final, ...]]) -> HistoryStore:
    store = HistoryStore.open(path)
    with store.transaction():
        for i, finals in sessions:
            for f in finals:
                store.add_final(i, f)
    return store


def test_a_new_file_is_in_wal_mode_with_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "history.sqlite3"  # the folder is made
    store = HistoryStore.open(path)
    assert store.journal_mode == "wal"
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema")}
    assert {"sessions", "segments", "segments_fts"} <= tables


def test_sessions_are_listed_newest_first_with_paging(tmp_path: Path) -> None:
    store = filled(
        tmp_path / "h.db",
        (info("old", NOW - 100), FINALS[:1]),
        (info("new", NOW), FINALS),
        (info("mid", NOW - 50), FINALS[1:2]),
    )
    page = store.page(2)
    assert [s.info.id for s in page.sessions] == ["new", "mid"] and page.total == 3
    assert [s.info.id for s in store.page(2, 2).sessions] == ["old"]
    new = page.sessions[0]
    assert new.segments == 3 and new.duration_s == 6.0
    assert new.preview.startswith("The quick brown fox jumps. She sells")


def test_a_final_is_readable_by_another_connection_once_committed(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    writer = HistoryStore.open(path)
    reader = HistoryStore.open(path, create=False, read_only=True)
    with writer.transaction():
        writer.add_final(info("s"), FINALS[0])
        assert reader.page(10).total == 0  # WAL: uncommitted work is invisible
    assert reader.get("s").finals == FINALS[:1]


def test_search_finds_words_prefixes_and_never_fails_on_odd_input(tmp_path: Path) -> None:
    store = filled(tmp_path / "h.db", (info("a"), FINALS), (info("b", NOW - 1), FINALS[1:2]))
    hits = store.search("quick fox", 10)
    assert [(h.session.info.id, h.final.seq) for h in hits] == [("a", 1)]
    assert "[quick]" in hits[0].snippet and "[fox]" in hits[0].snippet
    assert {h.session.info.id for h in store.search("shell*", 10)} == {"a", "b"}
    assert [h.final.seq for h in store.search("cafe", 10)] == [3]  # diacritics folded
    assert store.search("quick dog", 10) == []  # every word is needed
    for odd in ('"a', "AND (", "NEAR(x y", "a:b", "'); DROP TABLE sessions; --", "fox -"):
        store.search(odd, 10)  # no FTS5 syntax error reaches the caller
    # A term without letters or digits is left out (it could only make every hit fail).
    assert [h.final.seq for h in store.search("quick ( fox", 10)] == [1]
    assert store.page(10).total == 2


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("", "blank"),
        ("   ", "blank"),
        ('"', "no word"),
        ("* () -", "no word"),
        ("quick\x00", "control character"),
        ("a" * 501, "under 500"),
    ],
)
def test_a_query_with_nothing_to_search_for_is_refused_by_both_stores(
    tmp_path: Path, query: str, says: str
) -> None:
    store = filled(tmp_path / "h.db", (info("a"), FINALS))
    recent = RecentTranscripts()
    recent.add_final(info("a"), FINALS[0])
    for reader in (store, recent):
        with pytest.raises(BadQueryError, match=says):
            reader.search(query, 10)


def test_pages_keep_to_a_time_range_in_both_stores(tmp_path: Path) -> None:
    starts = {"s0": NOW - 30, "s1": NOW - 20, "s2": NOW - 10, "s3": NOW}
    store = filled(tmp_path / "h.db", *((info(k, v), FINALS[:1]) for k, v in starts.items()))
    recent = RecentTranscripts()
    for k, v in starts.items():
        recent.add_final(info(k, v), FINALS[0])
    for reader in (store, recent):
        page = reader.page(10, when=TimeRange(since=NOW - 20, until=NOW))
        assert [s.info.id for s in page.sessions] == ["s2", "s1"] and page.total == 2
        page = reader.page(1, 1, when=TimeRange(since=NOW - 20))
        assert [s.info.id for s in page.sessions] == ["s2"] and page.total == 3
        assert [s.info.id for s in reader.page(10, when=TimeRange(until=NOW - 20)).sessions] == [
            "s0"
        ]


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"since": 10.0, "until": 10.0}, "empty"),
        ({"since": -1.0}, "Unix time"),
        ({"until": float("nan")}, "Unix time"),
    ],
)
def test_a_time_range_that_cannot_hold_a_session_is_refused(
    kwargs: dict[str, float], says: str
) -> None:
    with pytest.raises(BadQueryError, match=says):
        TimeRange(**kwargs)


@pytest.mark.parametrize(("limit", "offset"), [(0, 0), (-1, 0), (MAX_PAGE + 1, 0), (10, -1)])
def test_page_sizes_outside_the_limits_are_refused(limit: int, offset: int) -> None:
    with pytest.raises(BadQueryError, match=str(limit if offset == 0 else offset)):
        check_limit(limit, offset)


def test_a_final_recorded_again_replaces_its_search_entry(tmp_path: Path) -> None:
    store = filled(tmp_path / "h.db", (info("a"), FINALS[:1]))
    with store.transaction():
        store.add_final(info("a"), Final(1, 0.5, 2.25, " A slow green turtle."))
    assert store.search("quick", 10) == []
    assert [h.final.text for h in store.search("turtle", 10)] == [" A slow green turtle."]
    assert store.get("a").finals[0].text == " A slow green turtle."
    store.close()
    conn = sqlite3.connect(tmp_path / "h.db")  # the index holds no trace of the old text
    stale = conn.execute("SELECT rowid FROM segments_fts WHERE segments_fts MATCH 'quick'")
    assert stale.fetchall() == []


def test_exports_reuse_the_subtitle_writers_and_json_keeps_words(tmp_path: Path) -> None:
    store = filled(tmp_path / "h.db", (info("a"), FINALS))
    t = store.get("a")
    assert render_transcript(t, "txt").splitlines()[0] == "The quick brown fox jumps."
    srt = render_transcript(t, "srt")
    assert srt.startswith("1\n00:00:00,500 --> 00:00:02,250\nThe quick brown fox jumps.\n")
    assert "sea shells -> by" in srt  # an arrow in the text cannot break a cue
    vtt = render_transcript(t, "vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.500 --> 00:00:02.250\n")
    doc = json.loads(render_transcript(t, "json"))
    assert doc["session"]["id"] == "a" and doc["session"]["source"] == "stream"
    assert doc["segments"][0]["words"] == [
        {"text": " The", "start_s": 0.5, "end_s": 0.7},
        {"text": " quick", "start_s": 0.7, "end_s": 1.0},
    ]
    assert doc["segments"][1]["words"] == []
    with pytest.raises(ValueError, match="unknown format"):
        render_transcript(t, "docx")


def test_delete_removes_the_session_its_segments_and_its_search_entries(tmp_path: Path) -> None:
    store = filled(tmp_path / "h.db", (info("a"), FINALS), (info("b"), FINALS[:1]))
    store.delete_now("a")
    with pytest.raises(SessionNotFoundError, match="'a'"):
        store.get("a")
    assert [h.session.info.id for h in store.search("quick", 10)] == ["b"]
    with pytest.raises(SessionNotFoundError):
        store.delete_now("a")


def test_retention_by_age_and_by_count(tmp_path: Path) -> None:
    store = filled(
        tmp_path / "h.db",
        *((info(f"s{d}", NOW - d * 86400), FINALS[:1]) for d in range(10)),
    )
    with store.transaction():
        assert store.prune(Retention(days=4.5), now=NOW) == 5
    assert {s.info.id for s in store.page(20).sessions} == {f"s{d}" for d in range(5)}
    with store.transaction():
        assert store.prune(Retention(max_sessions=2), now=NOW) == 3
    assert [s.info.id for s in store.page(20).sessions] == ["s0", "s1"]
    assert store.search("quick", 10) and len(store.search("quick", 10)) == 2


@pytest.mark.parametrize(
    ("kw", "named"),
    [
        ({"days": 0}, "--history-days"),
        ({"days": -1}, "--history-days"),
        ({"days": 1e9}, "--history-days"),
        ({"max_sessions": 0}, "--history-max-sessions"),
        ({"max_sessions": -5}, "--history-max-sessions"),
    ],
)
def test_absurd_retention_is_refused_naming_the_setting(kw: dict[str, float], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Retention(**kw)  # type: ignore[arg-type]


def test_a_corrupt_file_is_refused_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    path.write_bytes(b"this is not a database\n" * 500)
    for read_only in (False, True):
        with pytest.raises(HistoryUnavailableError, match="not a readable SQLite") as err:
            HistoryStore.open(path, create=not read_only, read_only=read_only)
        assert str(path) in str(err.value)


def test_a_damaged_page_is_found_at_open(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    many = tuple(Final(n, n, n + 1, f"words number {n} " * 20) for n in range(1, 200))
    filled(path, (info("a"), many)).close()
    data = bytearray(path.read_bytes())
    conn = sqlite3.connect(path)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'segments'").fetchone()
    conn.close()
    at = (root - 1) * 4096
    data[at : at + 12] = b"\xff" * 12  # the segments table's b-tree header
    path.write_bytes(bytes(data))
    with pytest.raises(HistoryUnavailableError, match=str(path)):
        HistoryStore.open(path)


def test_another_programs_database_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE accounts (x)")
    conn.commit()
    with pytest.raises(HistoryUnavailableError, match="another program"):
        HistoryStore.open(path)


def test_a_locked_file_is_refused_as_locked(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    HistoryStore.open(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(HistoryUnavailableError, match="locked") as err:
            HistoryStore.open(path)
        assert str(path) in str(err.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_an_unwritable_path_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(HistoryUnavailableError, match="cannot create the folder") as err:
        HistoryStore.open(blocker / "history.sqlite3")
    assert str(blocker / "history.sqlite3") in str(err.value)
    with pytest.raises(HistoryUnavailableError, match="is a folder"):
        HistoryStore.open(tmp_path)


def test_a_missing_file_is_not_created_by_readers(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    with pytest.raises(HistoryUnavailableError, match="no history at"):
        HistoryStore.open(path, create=False, read_only=True)
    assert not path.exists()


def test_the_writer_commits_in_order_and_isolates_a_failing_operation(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    writer = HistoryWriter.open(path, Retention())
    futures = [
        writer.submit(partial(HistoryStore.add_final, info=info("a"), final=f)) for f in FINALS
    ]
    bad = writer.submit(lambda s: s.delete("nope"))
    after = writer.submit(lambda s: s.add_final(info("b"), FINALS[0]))
    for f in [*futures, after]:
        f.result(10)
    with pytest.raises(SessionNotFoundError):
        bad.result(10)
    writer.close()
    store = HistoryStore.open(path, create=False, read_only=True)
    assert store.get("a").finals == FINALS and store.get("b").finals == FINALS[:1]
    assert writer.submit(lambda s: None).exception(1) is not None  # closed


def test_the_writer_applies_retention_at_open(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    filled(path, (info("old", time.time() - 10 * 86400), FINALS), (info("new"), FINALS)).close()
    HistoryWriter.open(path, Retention(days=1)).close()
    assert [s.info.id for s in HistoryStore.open(path).page(10).sessions] == ["new"]


def test_recent_cache_is_bounded_and_searchable() -> None:
    recent = RecentTranscripts(max_sessions=2, max_finals=2)
    recent.add_final(info("a", NOW - 2, ended_at=NOW), FINALS[0])
    recent.add_final(info("b", NOW - 1), FINALS[0])
    for f in FINALS:
        recent.add_final(info("c", NOW), f)  # the oldest finished session makes room
    assert [s.info.id for s in recent.page(10).sessions] == ["c", "b"]
    assert [f.seq for f in recent.get("c").finals] == [2, 3]  # the oldest final went
    assert not recent.holds_whole("c")  # so reads of "c" go to the file when there is one
    assert recent.holds_whole("b") and not recent.holds_whole("a")
    hits = recent.search("SHELLS by", 10)
    assert [(h.session.info.id, h.final.seq) for h in hits] == [("c", 2)]
    assert hits[0].snippet == " She sells sea [shells] --> [by] the shore."
    assert recent.is_live("c")
    recent.end_session("c", NOW + 1)
    assert not recent.is_live("c")
    recent.delete("c")
    with pytest.raises(SessionNotFoundError):
        recent.get("c")


def test_reads_run_beside_the_writer_thread(tmp_path: Path) -> None:
    """WAL: a reader in another thread never waits for (or fails on) the writer's lock."""
    path = tmp_path / "h.db"
    writer = HistoryWriter.open(path, Retention())
    stop = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        reader = HistoryStore.open(path, create=False, read_only=True)
        try:
            while not stop.is_set():
                reader.page(5)
                reader.search("quick", 5)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=read)
    t.start()
    for n in range(200):
        final = Final(n, 0, 1, "quick")
        writer.submit(partial(HistoryStore.add_final, info=info(f"s{n % 7}"), final=final)).result(
            10
        )
    stop.set()
    t.join(10)
    writer.close()
    assert not errors


def test_a_version_1_file_gains_local_segments_and_keeps_its_finals(tmp_path: Path) -> None:
    # The schema as version 1 made it (before a page's local segments were kept).
    path = tmp_path / "v1.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE sessions (id TEXT PRIMARY KEY, started_at REAL NOT NULL, ended_at REAL,
            model TEXT NOT NULL, language TEXT NOT NULL, transport TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('stream', 'file')));
        CREATE TABLE segments (id INTEGER PRIMARY KEY, session_id TEXT NOT NULL
            REFERENCES sessions (id) ON DELETE CASCADE, seq INTEGER NOT NULL,
            start_s REAL NOT NULL, end_s REAL NOT NULL, text TEXT NOT NULL, words TEXT,
            UNIQUE (session_id, seq));
        CREATE VIRTUAL TABLE segments_fts USING fts5 (text, content = 'segments',
            content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2');
        CREATE TRIGGER segments_ai AFTER INSERT ON segments BEGIN
            INSERT INTO segments_fts (rowid, text) VALUES (new.id, new.text); END;
        INSERT INTO sessions VALUES ('old', 1.0, 2.0, 'tiny.en', 'en', 'grpc', 'stream');
        INSERT INTO segments (session_id, seq, start_s, end_s, text)
            VALUES ('old', 1, 0.0, 1.0, 'said to the server');
        PRAGMA user_version = 1;
        """
    )
    conn.close()
    reader = HistoryStore.open(path, create=False, read_only=True)  # the CLI, before a server
    assert [f.origin for f in reader.get("old").finals] == ["server"]
    reader.close()
    store = HistoryStore.open(path)
    with store.transaction():
        seqs = store.add_local("old", [("p1", Final(0, 1.5, 2.5, "said in the page"))])
    assert seqs == [2]
    with store.transaction():
        assert store.add_local("old", [("p1", Final(0, 1.5, 2.5, "said in the page"))]) == [None]
    finals = store.get("old").finals
    assert [(f.seq, f.text, f.origin) for f in finals] == [
        (1, "said to the server", "server"),
        (2, "said in the page", "local"),
    ]
    assert [h.final.origin for h in store.search("page", 5)] == ["local"]
    store.close()
