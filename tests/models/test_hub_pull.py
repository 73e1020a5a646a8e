"""Pulls through the real huggingface_hub client against a local Hub-compatible server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from audiototext.errors import NotWhisperError, RevisionNotFoundError, UnknownModelError
from audiototext.models.cache import ModelCache
from audiototext.models.manager import pull
from models.conftest import make_random_whisper
from support.hf_server import FakeHub


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as h:
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        yield h


def _dir_files(path: Path) -> dict[str, bytes | Path]:
    return {p.name: p for p in path.iterdir() if p.is_file()}


def _gets(hub: FakeHub, filename: str) -> list[dict[str, str]]:
    return [
        r.headers for r in hub.requests if r.method == "GET" and r.path.endswith("/" + filename)
    ]


@pytest.fixture
def ct2_tiny_en(hub: FakeHub, tiny_en_source: Path) -> str:
    return hub.add_repo("Systran/faster-whisper-tiny.en", _dir_files(tiny_en_source))


def test_short_name_falls_through_to_the_ctranslate2_repo(
    hub: FakeHub, ct2_tiny_en: str, cache: ModelCache
) -> None:
    result = pull("tiny.en", precision="fp32", cache=cache)
    src = result.entry.source
    assert (src["kind"], src["repo_id"], src["commit"]) == (
        "ctranslate2",
        "Systran/faster-whisper-tiny.en",
        ct2_tiny_en,
    )
    assert "onnx-community/whisper-tiny.en" in result.attempts[0]
    assert "openai/whisper-tiny.en" in result.attempts[1]
    assert result.entry.version_id == f"ctranslate2-{ct2_tiny_en[:12]}"


def test_a_dropped_connection_mid_file_resumes(
    hub: FakeHub, ct2_tiny_en: str, cache: ModelCache
) -> None:
    hub.fail_next("model.bin", after_bytes=25 * 2**20)
    result = pull("tiny.en", precision="fp32", cache=cache)
    assert result.entry.source["kind"] == "ctranslate2"
    gets = _gets(hub, "model.bin")
    assert len(gets) == 2
    # huggingface_hub resumes from the last whole 10 MiB chunk it wrote.
    assert gets[1].get("range", "").startswith("bytes=20971520-")


def test_a_corrupted_download_is_detected_and_fetched_again(
    hub: FakeHub, ct2_tiny_en: str, cache: ModelCache
) -> None:
    hub.corrupt_next("model.bin")
    result = pull("tiny.en", precision="fp32", cache=cache)
    assert result.entry.source["kind"] == "ctranslate2"
    assert len(_gets(hub, "model.bin")) == 2


def test_a_corrupted_cached_blob_is_detected_offline(
    hub: FakeHub, ct2_tiny_en: str, cache: ModelCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    pull("tiny.en", precision="fp32", cache=cache)
    blob = next(p for p in (cache.hub_dir).rglob("model.bin")).resolve()
    data = bytearray(blob.read_bytes())
    data[100] ^= 1
    blob.write_bytes(bytes(data))
    for e in cache.entries():
        cache.remove(e)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # The Hub copy is refused; the packaged copy of tiny.en is used instead.
    result = pull("tiny.en", precision="fp32", cache=cache)
    assert result.entry.source["kind"] == "package"
    assert any("corrupt" in a for a in result.attempts), result.attempts


def test_offline_mode_uses_the_download_cache(
    hub: FakeHub, ct2_tiny_en: str, cache: ModelCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    pull("tiny.en", precision="fp32", cache=cache)
    for e in cache.entries():
        cache.remove(e)
    hub.stop()
    hub.clear_requests()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = pull("tiny.en", precision="fp32", cache=cache)
    assert result.entry.source == {
        "kind": "ctranslate2",
        "repo_id": "Systran/faster-whisper-tiny.en",
        "revision": "main",
        "commit": ct2_tiny_en,
    }
    assert hub.requests == []


def test_repo_id_pinning_and_coexisting_versions(
    hub: FakeHub, cache: ModelCache, tmp_path: Path, tiny_en_source: Path
) -> None:
    tok = tiny_en_source / "tokenizer.json"
    old = hub.add_repo(
        "lab/whisper-mini", _dir_files(make_random_whisper(tmp_path / "a", tok, seed=1))
    )
    new = hub.add_repo(
        "lab/whisper-mini", _dir_files(make_random_whisper(tmp_path / "b", tok, seed=2))
    )
    latest = pull("lab/whisper-mini", precision="fp32", cache=cache)
    assert latest.entry.commit == new and latest.entry.source["kind"] == "transformers"
    pinned = pull("lab/whisper-mini", revision=old, precision="fp32", cache=cache)
    assert pinned.entry.commit == old and not pinned.cached
    assert {e.commit for e in cache.entries("lab/whisper-mini")} == {old, new}
    # Pulling the pinned revision again is a cache hit.
    assert pull("lab/whisper-mini", revision=old, precision="fp32", cache=cache).cached
    assert cache.find("lab/whisper-mini", "fp32", old[:12]).commit == old


def test_revision_not_found(hub: FakeHub, random_whisper_dir: Path, cache: ModelCache) -> None:
    hub.add_repo("lab/whisper-mini", _dir_files(random_whisper_dir))
    with pytest.raises(RevisionNotFoundError, match="no-such-branch"):
        pull("lab/whisper-mini", revision="no-such-branch", cache=cache)


def test_unknown_repo(hub: FakeHub, cache: ModelCache) -> None:
    with pytest.raises(UnknownModelError, match="lab/nothing-here"):
        pull("lab/nothing-here", cache=cache)


def test_a_repo_of_another_architecture_is_refused_before_downloading_weights(
    hub: FakeHub, cache: ModelCache
) -> None:
    hub.add_repo(
        "lab/bert",
        {
            "config.json": json.dumps({"model_type": "bert"}).encode(),
            "model.safetensors": b"\0" * 4096,
            "tokenizer.json": b"{}",
        },
    )
    with pytest.raises(NotWhisperError, match="bert"):
        pull("lab/bert", cache=cache)
    assert _gets(hub, "model.safetensors") == []


def test_private_repo_needs_the_token(
    hub: FakeHub, random_whisper_dir: Path, cache: ModelCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo(
        "lab/secret-whisper", _dir_files(random_whisper_dir), private=True, token="hf_test_token"
    )
    with pytest.raises(UnknownModelError, match="HF_TOKEN"):
        pull("lab/secret-whisper", cache=cache)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    assert (
        pull("lab/secret-whisper", precision="fp32", cache=cache).entry.source["repo_id"]
        == "lab/secret-whisper"
    )


class _Recorder:
    """A ProgressSink that remembers totals, counts and finished tasks."""

    def __init__(self) -> None:
        self.totals: dict[str, float | None] = {}
        self.counts: dict[str, float] = {}
        self.finished: set[str] = set()

    def task(self, key: str, description: str, total: float | None, unit: str = "B") -> None:
        self.totals[key] = total
        self.counts.setdefault(key, 0.0)

    def advance(self, key: str, amount: float) -> None:
        self.counts[key] += amount

    def done(self, key: str) -> None:
        self.finished.add(key)

    def note(self, message: str) -> None:
        pass


def test_progress_reports_bytes_and_build_steps(
    hub: FakeHub, ct2_tiny_en: str, cache: ModelCache, tiny_en_source: Path
) -> None:
    rec = _Recorder()
    pull("tiny.en", precision="fp32", cache=cache, progress=rec)
    key = "download:Systran/faster-whisper-tiny.en:model.bin"
    size = (tiny_en_source / "model.bin").stat().st_size
    assert rec.totals[key] == size and rec.counts[key] == size
    assert rec.totals["build"] == 4 and rec.counts["build"] == 4
    assert {key, "build"} <= rec.finished
