"""Read-only bundled models (what the one-file executable carries) are found beside the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiototext.errors import CacheError
from audiototext.models.cache import ModelCache
from audiototext.models.versions import GRAPH_VERSION


def _entry(root: Path) -> Path:
    """A minimal tiny.en int8 entry in a cache at ``root``; returns its models folder."""
    cache = ModelCache(root)
    with cache.staging() as staging:
        (staging / "encoder.onnx").write_bytes(b"graph")
        manifest = {
            "name": "tiny.en",
            "precision": "int8",
            "source": {"kind": "package", "repo_id": "package:x", "commit": "x==1"},
            "graph_version": GRAPH_VERSION,
            "created_at": "2026-01-01T00:00:00+00:00",
        }
        cache.install(staging, manifest, cache.entry_dir("tiny.en", "package", "x==1", "int8"))
    return cache.models_dir


def test_a_bundled_entry_is_found_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = _entry(tmp_path / "bundle")
    cache = ModelCache(tmp_path / "home")
    assert cache.entries("tiny.en") == []
    monkeypatch.setenv("AUDIOTOTEXT_BUNDLED_MODELS", str(bundled))
    entry = cache.find("tiny.en", "int8")
    assert bundled in entry.path.parents
    assert cache.verify_files(entry) == []
    with pytest.raises(CacheError, match="bundled"):
        cache.remove(entry)
    assert entry.path.is_dir()
    # Nothing was written into the bundled folder or the cache home by reading.
    assert not (tmp_path / "home").exists()


def test_missing_or_empty_bundled_dirs_are_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIOTOTEXT_BUNDLED_MODELS", f"{tmp_path / 'nowhere'}:")
    assert ModelCache(tmp_path / "home").entries() == []
