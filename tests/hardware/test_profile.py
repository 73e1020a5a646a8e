"""The stored performance profile: round trip, fingerprint, stale and corrupt files."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from audiototext.hardware.detect import detect
from audiototext.hardware.profile import (
    Measurement,
    PerformanceProfile,
    fingerprint,
    load_profile,
    save_profile,
)


def _profile(fp: dict[str, str]) -> PerformanceProfile:
    return PerformanceProfile(
        fingerprint=fp,
        created_at="2026-12-07T12:00:00+00:00",
        elapsed_s=12.5,
        budget_s=45.0,
        usable_cores=4,
        measurements=(
            Measurement("tiny.en", "int8", "package-x", 2, 4.0, 0.05, 0.03, 5, 39.0, 200),
            Measurement("base.en", "fp32", "onnx-abc", 4, 4.0, 0.4, 0.2, 3),
        ),
        skipped=("small.en int8 with 1 thread(s): the 45-s budget was spent",),
    )


def test_round_trip(tmp_path: Path) -> None:
    fp = fingerprint(detect(), [])
    path = tmp_path / "sub" / "profile.json"
    save_profile(_profile(fp), path)
    loaded = load_profile(path, fp)
    assert loaded.state == "fresh" and not loaded.needs_rebuild
    assert loaded.profile == _profile(fp)
    assert [p.name for p in path.parent.iterdir()] == ["profile.json"]  # no temporary left


def test_fingerprint_names_what_the_figures_depend_on() -> None:
    import onnxruntime as ort

    from audiototext._version import __version__

    hw = detect()
    fp = fingerprint(hw, [])
    assert fp["onnxruntime"] == ort.__version__ and fp["audiototext"] == __version__
    assert fp["cpu_model"] == hw.cpu_model
    assert fingerprint(replace(hw, cpu_model="another CPU"), []) != fp


def test_a_changed_fingerprint_is_stale_and_says_what_changed(tmp_path: Path) -> None:
    fp = fingerprint(detect(), [])
    path = tmp_path / "profile.json"
    save_profile(_profile(fp), path)
    loaded = load_profile(path, {**fp, "onnxruntime": "9.9.9"})
    assert loaded.state == "stale" and loaded.profile is None and loaded.needs_rebuild
    assert "onnxruntime" in loaded.message and str(path) in loaded.message


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"format": 99}',
        '{"format": 1, "fingerprint": {}, "measurements": [{"model": "x"}]}',
        b"\xff\xfe\x00garbage",
    ],
)
def test_a_corrupt_file_is_a_warning_naming_it(
    tmp_path: Path, content: str | bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "profile.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with caplog.at_level(logging.WARNING, logger="audiototext.hardware.profile"):
        loaded = load_profile(path, fingerprint(detect(), []))
    assert loaded.state == "corrupt" and loaded.profile is None
    assert str(path) in loaded.message
    assert any(str(path) in r.getMessage() for r in caplog.records)


def test_impossible_figures_are_corrupt(tmp_path: Path) -> None:
    fp = fingerprint(detect(), [])
    doc = _profile(fp).to_json()
    doc["measurements"][0]["threads"] = 0
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(doc))
    assert load_profile(path, fp).state == "corrupt"


def test_missing(tmp_path: Path) -> None:
    loaded = load_profile(tmp_path / "profile.json", {})
    assert loaded.state == "missing" and "doctor --benchmark" in loaded.message
