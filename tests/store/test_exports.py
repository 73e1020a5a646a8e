"""Transcript writers: exact documents for known segments, atomic writes, bad formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audiototext.inference import Segment, Word
from audiototext.store.exports import render, write_transcript


def seg(
    i: int, start: float, end: float, text: str, words: tuple[Word, ...] | None = None
) -> Segment:
    return Segment(i, start, end, text, (1, 2), -0.25, 0.01, 1.2, 0.0, words)


SEGMENTS = [
    seg(1, 0.0, 2.5, " Hello there."),
    seg(2, 3661.042, 3662.5, " A --> B\n\nnext"),
    seg(3, 4.0, 4.0, "  "),
]


def test_txt() -> None:
    assert render(SEGMENTS, "txt") == "Hello there.\nA --> B\n\nnext\n"


def test_srt() -> None:
    assert render(SEGMENTS, "srt") == (
        "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n"
        "2\n01:01:01,042 --> 01:01:02,500\nA -> B next\n"
    )


def test_vtt() -> None:
    assert render(SEGMENTS, "vtt") == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello there.\n\n"
        "01:01:01.042 --> 01:01:02.500\nA -> B next\n"
    )


def test_json_has_times_and_scores() -> None:
    words = (Word(0.1, 0.5, " Hello", 0.9), Word(0.5, 0.9, " there.", 0.8))
    doc = json.loads(
        render([seg(1, 0.0, 2.5, " Hello there.", words)], "json", metadata={"file": "a.wav"})
    )
    assert doc["file"] == "a.wav" and doc["text"] == "Hello there."
    s = doc["segments"][0]
    assert (s["start_s"], s["end_s"], s["avg_logprob"], s["no_speech_prob"]) == (
        0.0,
        2.5,
        -0.25,
        0.01,
    )
    assert [w["word"] for w in s["words"]] == [" Hello", " there."]


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="docx"):
        render(SEGMENTS, "docx")


def test_write_is_atomic(tmp_path: Path) -> None:
    out = write_transcript(SEGMENTS, tmp_path / "a.srt", "srt")
    assert out.read_text(encoding="utf-8").startswith("1\n")
    assert [p.name for p in tmp_path.iterdir()] == ["a.srt"]  # no temporary left behind
    with pytest.raises(OSError):
        write_transcript(SEGMENTS, tmp_path / "missing-dir" / "a.srt", "srt")
