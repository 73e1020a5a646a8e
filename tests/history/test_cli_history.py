"""``audiototext history list | search | export | rm`` on a history file."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from audiototext.cli import main
from audiototext.history.records import Final, SessionInfo, Word
from audiototext.history.store import HistoryStore

NOW = 1_800_000_000.0


def _make(path: Path) -> None:
    store = HistoryStore.open(path)
    a = SessionInfo("sessA", NOW, NOW + 9, "tiny.en", "en", "websocket", "stream")
    b = SessionInfo("sessB", NOW + 60, None, "tiny.en", "en", "grpc", "file")
    with store.transaction():
        store.add_final(a, Final(1, 0.5, 2.0, " Please call Stella.", (Word(" Please", 0.5, 0.8),)))
        store.add_final(a, Final(2, 3.0, 4.0, " Bring these things."))
        store.add_final(b, Final(1, 0.0, 1.5, " The train station tomorrow."))
    store.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "history.sqlite3"
    _make(path)
    return path


def test_list_shows_sessions_newest_first(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "list", "--history", str(db)]) == 0
    out = capsys.readouterr().out
    assert out.index("sessB") < out.index("sessA")
    assert "file/grpc" in out and "(unfinished)" in out and "Please call Stella." in out
    assert main(["history", "list", "--history", str(db), "--json", "--limit", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"] == 2 and [s["info"]["id"] for s in doc["sessions"]] == ["sessB"]


def test_list_uses_the_default_path_of_run_sh(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _make(Path(os.environ["AUDIOTOTEXT_HOME"]) / "history.sqlite3")
    assert main(["history", "list"]) == 0
    assert "sessA" in capsys.readouterr().out


def test_search_prints_hits_and_exits_1_on_none(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "search", "stella", "--history", str(db)]) == 0
    out = capsys.readouterr().out
    assert "sessA" in out and "[Stella]" in out and "sessB" not in out
    assert main(["history", "search", "tomorr*", "--history", str(db), "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert [h["session"]["info"]["id"] for h in hits] == ["sessB"]
    assert main(["history", "search", "zebra", "--history", str(db)]) == 1


@pytest.mark.parametrize(
    ("fmt", "start"),
    [
        ("txt", "Please call Stella.\nBring these things.\n"),
        ("srt", "1\n00:00:00,500 --> 00:00:02,000\nPlease call Stella.\n"),
        ("vtt", "WEBVTT\n\n00:00:00.500 --> 00:00:02.000\nPlease call Stella.\n"),
    ],
)
def test_export_formats(db: Path, capsys: pytest.CaptureFixture[str], fmt: str, start: str) -> None:
    assert main(["history", "export", "sessA", "--format", fmt, "--history", str(db)]) == 0
    assert capsys.readouterr().out.startswith(start)


def test_export_json_to_a_file(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    args = ["history", "export", "sessA", "--format", "json", "-o", str(out), "--history", str(db)]
    assert main(args) == 0
    doc = json.loads(out.read_text())
    assert doc["text"] == "Please call Stella. Bring these things."
    assert doc["segments"][0]["words"][0]["text"] == " Please"


def test_rm_deletes_and_a_second_rm_is_an_error(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "rm", "sessA", "--history", str(db)]) == 0
    assert "removed session sessA" in capsys.readouterr().out
    assert main(["history", "rm", "sessA", "--history", str(db)]) == 1
    assert "no session 'sessA'" in capsys.readouterr().err
    assert main(["history", "export", "sessA", "--history", str(db)]) == 1


def test_missing_corrupt_and_locked_files_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.sqlite3"
    assert main(["history", "list", "--history", str(missing)]) == 1
    err = capsys.readouterr().err
    assert f"no history at {missing}" in err and "--history" in err
    assert not missing.exists()

    corrupt = tmp_path / "corrupt.sqlite3"
    corrupt.write_bytes(b"\x00garbage" * 1000)
    for cmd in (["list"], ["search", "x"], ["export", "a"], ["rm", "a"]):
        assert main(["history", *cmd, "--history", str(corrupt)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and str(corrupt) in err and "not a readable" in err

    locked = tmp_path / "locked.sqlite3"
    _make(locked)
    holder = sqlite3.connect(locked, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for cmd in (["rm", "sessA"], ["list"]):
            assert main(["history", *cmd, "--history", str(locked)]) == 1
            err = capsys.readouterr().err
            assert "locked" in err and str(locked) in err
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_bad_arguments(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "list", "--limit", "0", "--history", str(db)]) == 1
    assert "--limit" in capsys.readouterr().err
    assert main(["history", "search", "  ", "--history", str(db)]) == 1
    assert "blank" in capsys.readouterr().err
    assert main(["history"]) == 2


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--history-days", "0"], "--history-days"),
        (["--history-days", "nan"], "--history-days"),
        (["--history-days", "1e9"], "--history-days"),
        (["--history-max-sessions", "-1"], "--history-max-sessions"),
    ],
)
def test_serve_refuses_absurd_retention_before_loading_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    db = tmp_path / "h.sqlite3"
    assert main(["serve", "--port", "0", "--no-web", "--history", str(db), *flags]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in err
    assert not db.exists()


def test_serve_refuses_an_unwritable_history_path_before_loading_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    for path, why in (
        (tmp_path, "is a folder"),
        (blocker / "h.sqlite3", "is a file, not a folder"),
    ):
        assert main(["serve", "--port", "0", "--no-web", "--history", str(path)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: --history ") and why in err, err
    assert blocker.read_text() == "x" and list(tmp_path.iterdir()) == [blocker]
