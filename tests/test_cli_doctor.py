"""``audiototext doctor`` end to end: the real tiny.en timed here within a small budget, the
profile stored, reused, rebuilt when stale or corrupt."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from audiototext.cli import main
from audiototext.models.cache import ModelCache


def _doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(["doctor", "--json", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else None, err


def test_benchmark_stores_a_profile_and_recommends(
    filled_cache: ModelCache, capsys: pytest.CaptureFixture[str]
) -> None:
    code, data, err = _doctor(capsys, "--benchmark", "--budget-s", "6", "--max-threads", "1")
    assert code == 0, err
    path = filled_cache.root / "profile.json"
    assert data["profile"]["state"] == "fresh" and data["profile"]["path"] == str(path)
    stored = json.loads(path.read_text())
    rows = {(m["model"], m["precision"], m["threads"]) for m in stored["measurements"]}
    skipped = stored["skipped"]
    # both cached precisions, one thread each, timed or skipped for the budget by name
    assert len(rows) + len(skipped) == 2 and ("tiny.en", "int8", 1) in rows
    assert all(m["final_s"] > 0 and m["runs"] >= 1 for m in stored["measurements"])
    rec = data["recommendation"]
    assert rec["model"] == "tiny.en" and rec["threads"] == 1
    assert rec["partial_interval_ms"] >= 300 and set(rec["reasons"]) == {
        "model",
        "threads",
        "streams",
        "partial_interval_ms",
    }
    assert "profile" in err and str(path) in err  # where it went

    # --if-stale keeps a fresh profile
    before = path.read_text()
    code, again, _ = _doctor(capsys, "--benchmark", "--if-stale", "--budget-s", "6")
    assert code == 0 and path.read_text() == before
    assert again["recommendation"] == rec

    # the cached models change (fp32 removed): the fingerprint no longer matches
    for entry in filled_cache.entries("tiny.en", "fp32"):
        filled_cache.remove(entry)
    code, stale, _ = _doctor(capsys)
    assert stale["profile"]["state"] == "stale" and stale["recommendation"] is None
    assert "models" in stale["profile"]["message"]
    code, rebuilt, _ = _doctor(
        capsys, "--benchmark", "--if-stale", "--budget-s", "4", "--max-threads", "1"
    )
    assert code == 0 and rebuilt["profile"]["state"] == "fresh"
    assert {m["precision"] for m in json.loads(path.read_text())["measurements"]} == {"int8"}


def test_a_corrupt_profile_is_named_and_rebuilt(
    filled_cache: ModelCache, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = filled_cache.root / "profile.json"
    path.write_text('{"format": 1, "measurements": "half a fil')
    with caplog.at_level(logging.WARNING):
        code, data, _ = _doctor(capsys)
    assert code == 0 and data["profile"]["state"] == "corrupt"
    assert str(path) in data["profile"]["message"]
    assert any(str(path) in r.getMessage() and "corrupt" in r.getMessage() for r in caplog.records)
    code, data, err = _doctor(
        capsys, "--benchmark", "--if-stale", "--budget-s", "4", "--max-threads", "1"
    )
    assert code == 0 and data["profile"]["state"] == "fresh"
    assert "corrupt" in err and str(path) in err
    json.loads(path.read_text())


def test_human_output_shows_the_machine_and_the_way_to_a_profile(
    cache: ModelCache, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for words in ("instruction_sets", "container: cgroup", "disk free", "nvidia", "device cpu"):
        assert words in out
    assert "doctor --benchmark" in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--budget-s", "0"], "--budget-s must be positive"),
        (["--max-threads", "0"], "--max-threads must be at least 1"),
        ([], "no models are cached"),
    ],
)
def test_refusals_say_what_to_do(
    cache: ModelCache, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    assert main(["doctor", "--benchmark", *args]) == 1
    assert words in capsys.readouterr().err
