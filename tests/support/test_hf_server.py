"""The real huggingface_hub client against `FakeHub` (no network besides 127.0.0.1).

Every call passes ``endpoint=hub.endpoint``: huggingface_hub reads ``HF_ENDPOINT`` at import time,
so setting the variable inside a test would have no effect.  Anonymous calls pass ``token=False``
so that a token saved on the developer machine (or ``HF_TOKEN``) cannot leak into the result.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from huggingface_hub import (
    HfApi,
    constants,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder

from .hf_server import FakeHub, RecordedRequest

REPO = "org/tiny-model"
MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _isolated_client(monkeypatch: pytest.MonkeyPatch) -> None:
    # Both are read from the environment at import time, hence patched on the module.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # With telemetry on, the first request fetches {HF_ENDPOINT}/api/agent-harnesses from
    # huggingface.co (3 s timeout) to build the user agent.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        yield fake


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "hf-cache"


def _download(hub: FakeHub, cache_dir: Path, filename: str, **kwargs: Any) -> Path:
    kwargs.setdefault("token", False)
    path = hf_hub_download(REPO, filename, cache_dir=cache_dir, endpoint=hub.endpoint, **kwargs)
    return Path(path)


def _file_gets(hub: FakeHub, filename: str) -> list[RecordedRequest]:
    return [
        r
        for r in hub.requests
        if r.method == "GET" and r.path.split("?")[0].endswith(f"/{filename}")
    ]


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _open(request: urllib.request.Request) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


# -- happy paths ---------------------------------------------------------------------------------


def test_snapshot_download_fetches_only_allowed_files(hub: FakeHub, cache_dir: Path) -> None:
    files = {
        "config.json": b'{"d_model": 4}',
        "tokenizer.json": b'{"vocab": {}}',
        "onnx/encoder.onnx": os.urandom(50_000),
        "model.bin": os.urandom(10_000),
        "README.md": b"# tiny",
    }
    sha = hub.add_repo(REPO, files)

    snapshot = Path(
        snapshot_download(
            REPO,
            revision="main",
            cache_dir=cache_dir,
            endpoint=hub.endpoint,
            allow_patterns=["*.json", "onnx/*"],
            token=False,
        )
    )

    assert snapshot.name == sha
    downloaded = {
        p.relative_to(snapshot).as_posix(): p.read_bytes()
        for p in snapshot.rglob("*")
        if p.is_file()
    }
    assert downloaded == {
        name: files[name] for name in ("config.json", "tokenizer.json", "onnx/encoder.onnx")
    }
    # snapshot_download resolves the branch with repo_info, then lists the commit's tree.
    paths = [r.path for r in hub.requests]
    assert "/api/models/org/tiny-model/revision/main" in paths
    assert any(p.startswith(f"/api/models/org/tiny-model/tree/{sha}?recursive=true") for p in paths)
    assert not _file_gets(hub, "model.bin")


def test_hf_hub_download_small_and_lfs_file_from_disk(
    hub: FakeHub, cache_dir: Path, tmp_path: Path
) -> None:
    weights = tmp_path / "encoder.onnx"
    weights.write_bytes(os.urandom(2 * MiB))
    config = b'{"n_mels": 80}'
    sha = hub.add_repo(REPO, {"config.json": config, "onnx/encoder.onnx": weights})

    config_path = _download(hub, cache_dir, "config.json")
    weights_path = _download(hub, cache_dir, "onnx/encoder.onnx")

    assert config_path.read_bytes() == config
    assert weights_path.read_bytes() == weights.read_bytes()
    # The cache names blobs after the ETag: git blob sha1 for regular files, sha256 for LFS files.
    assert config_path.resolve().name == _git_blob_sha1(config)
    assert weights_path.resolve().name == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert config_path.parent.name == sha

    meta = get_hf_file_metadata(
        hf_hub_url(REPO, "onnx/encoder.onnx", endpoint=hub.endpoint),
        token=False,
        endpoint=hub.endpoint,
    )
    assert (meta.commit_hash, meta.size, meta.xet_file_data) == (sha, 2 * MiB, None)


def test_repo_info_and_tree_expose_file_metadata(hub: FakeHub) -> None:
    model = os.urandom(1000)
    sha = hub.add_repo(REPO, {"config.json": b"{}", "model.safetensors": model, "a/b/c.txt": b"c"})
    api = HfApi(endpoint=hub.endpoint, token=False)

    info = api.model_info(REPO, files_metadata=True)
    assert info.sha == sha
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert set(siblings) == {"config.json", "model.safetensors", "a/b/c.txt"}
    lfs = siblings["model.safetensors"].lfs
    assert lfs is not None and lfs.sha256 == hashlib.sha256(model).hexdigest() and lfs.size == 1000
    assert siblings["config.json"].lfs is None
    assert siblings["config.json"].blob_id == _git_blob_sha1(b"{}")

    top = {(type(e).__name__, e.path) for e in api.list_repo_tree(REPO, revision=sha)}
    assert top == {
        ("RepoFile", "config.json"),
        ("RepoFile", "model.safetensors"),
        ("RepoFolder", "a"),
    }
    deep = list(api.list_repo_tree(REPO, "a", recursive=True, revision="main"))
    assert {e.path for e in deep if isinstance(e, RepoFolder)} == {"a/b"}
    assert [e.path for e in deep if isinstance(e, RepoFile)] == ["a/b/c.txt"]


def test_new_commit_moves_branch_while_pinned_sha_and_tag_keep_old_content(
    hub: FakeHub, cache_dir: Path
) -> None:
    v1 = hub.add_repo(REPO, {"config.json": b'{"v": 1}'})
    hub.add_tag(REPO, "v1.0", v1)
    v2 = hub.add_repo(REPO, {"config.json": b'{"v": 2}'})

    assert v1 != v2 and hub.resolve(REPO, "main") == v2
    assert _download(hub, cache_dir, "config.json").read_bytes() == b'{"v": 2}'
    assert _download(hub, cache_dir, "config.json", revision=v1).read_bytes() == b'{"v": 1}'
    assert _download(hub, cache_dir, "config.json", revision="v1.0").read_bytes() == b'{"v": 1}'
    pinned = snapshot_download(
        REPO, revision=v1, cache_dir=cache_dir / "snap", endpoint=hub.endpoint, token=False
    )
    assert Path(pinned, "config.json").read_bytes() == b'{"v": 1}'


# -- errors --------------------------------------------------------------------------------------


def test_missing_repo_revision_and_file_raise_typed_errors(hub: FakeHub, cache_dir: Path) -> None:
    hub.add_repo(REPO, {"config.json": b"{}"})

    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(
            "org/nope", "config.json", cache_dir=cache_dir, endpoint=hub.endpoint, token=False
        )
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("org/nope", cache_dir=cache_dir, endpoint=hub.endpoint, token=False)
    with pytest.raises(RevisionNotFoundError):
        _download(hub, cache_dir, "config.json", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(
            REPO, revision="v9", cache_dir=cache_dir, endpoint=hub.endpoint, token=False
        )
    with pytest.raises(RemoteEntryNotFoundError) as excinfo:
        _download(hub, cache_dir, "missing.bin")
    assert isinstance(excinfo.value, EntryNotFoundError)
    assert excinfo.value.response.headers["X-Error-Code"] == "EntryNotFound"


def test_private_repo_requires_matching_token(hub: FakeHub, cache_dir: Path) -> None:
    hub.add_repo(REPO, {"config.json": b"{}"}, private=True, token="hf_secret")

    assert _download(hub, cache_dir, "config.json", token="hf_secret").read_bytes() == b"{}"
    assert Path(
        snapshot_download(
            REPO, cache_dir=cache_dir / "s", endpoint=hub.endpoint, token="hf_secret"
        ),
        "config.json",
    ).is_file()
    assert hub.requests[0].headers["authorization"] == "Bearer hf_secret"

    with pytest.raises(RepositoryNotFoundError) as anonymous:
        _download(hub, cache_dir / "anon", "config.json", token=False)
    assert anonymous.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError) as wrong:
        _download(hub, cache_dir / "wrong", "config.json", token="hf_other")
    assert wrong.value.response.status_code == 404

    # A new commit keeps the repo private unless `private=False` is passed explicitly.
    hub.add_repo(REPO, {"config.json": b"{}", "extra.txt": b"x"})
    with pytest.raises(RepositoryNotFoundError):
        _download(hub, cache_dir / "anon", "extra.txt", token=False)


# -- faults --------------------------------------------------------------------------------------


def test_dropped_connection_is_retried_from_scratch_with_default_chunk_size(
    hub: FakeHub, cache_dir: Path
) -> None:
    """huggingface_hub 2.4.0, dropped connection before the first 10 MiB: retried, no Range.

    ``http_get`` retries *inside the same* ``hf_hub_download`` call when the body stream fails
    with ``httpx2.RemoteProtocolError`` (peer closed early), ``ConnectError`` or a timeout: it
    sleeps 1 s and re-sends the GET with ``Range: bytes=<bytes written>-``.  But it reads the body
    with ``iter_bytes(chunk_size=constants.DOWNLOAD_CHUNK_SIZE)`` (10 MiB) and only counts bytes
    once a whole chunk has been yielded, so a drop after 1 MB of a 3 MB file loses that
    megabyte: the retry asks for the whole file again, without a Range header.
    """
    payload = os.urandom(3 * MiB)
    hub.add_repo(REPO, {"model.bin": payload})
    hub.fail_next("model.bin", after_bytes=1 * MiB)

    assert _download(hub, cache_dir, "model.bin").read_bytes() == payload

    gets = _file_gets(hub, "model.bin")
    assert len(gets) == 2
    assert "range" not in gets[0].headers and "range" not in gets[1].headers


def test_dropped_connection_resumes_with_range_inside_one_call(
    hub: FakeHub, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same drop (3 MB file, 1 MB sent) with a 256 KiB read chunk: resumed in the same call.

    Every byte received before the drop has been written to the temp file, so the retry sends
    ``Range: bytes=1048576-``, the server answers 206 and the file is complete and correct.
    """
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 256 * 1024)
    payload = os.urandom(3 * MiB)
    hub.add_repo(REPO, {"model.bin": payload})
    hub.fail_next("model.bin", after_bytes=1 * MiB)

    assert _download(hub, cache_dir, "model.bin").read_bytes() == payload

    gets = _file_gets(hub, "model.bin")
    assert len(gets) == 2
    assert "range" not in gets[0].headers
    assert gets[1].headers["range"] == f"bytes={1 * MiB}-"


def test_dropped_connection_resumes_at_last_full_chunk_with_defaults(
    hub: FakeHub, cache_dir: Path
) -> None:
    """Default settings, 12 MiB file dropped after 11 MiB: resumes from the 10 MiB boundary."""
    payload = os.urandom(12 * MiB)
    hub.add_repo(REPO, {"model.bin": payload})
    hub.fail_next("model.bin", after_bytes=11 * MiB)

    assert _download(hub, cache_dir, "model.bin").read_bytes() == payload

    gets = _file_gets(hub, "model.bin")
    assert [g.headers.get("range") for g in gets] == [
        None,
        f"bytes={constants.DOWNLOAD_CHUNK_SIZE}-",
    ]


def test_connection_reset_fails_the_call_and_next_call_starts_over(
    hub: FakeHub, cache_dir: Path
) -> None:
    """huggingface_hub 2.4.0 does not resume across ``hf_hub_download`` calls.

    A TCP reset surfaces as ``httpx2.ReadError``, which ``http_get`` does not retry, so the call
    fails.  The partial data lived in a per-call ``<etag>.<uuid>.incomplete`` file that is deleted
    on failure, hence the next call downloads the whole file again (GET without Range).
    """
    payload = os.urandom(3 * MiB)
    hub.add_repo(REPO, {"model.bin": payload})
    hub.fail_next("model.bin", after_bytes=1 * MiB, reset=True)

    with pytest.raises(httpx2.ReadError):
        _download(hub, cache_dir, "model.bin")
    assert not list(cache_dir.rglob("*.incomplete"))

    assert _download(hub, cache_dir, "model.bin").read_bytes() == payload
    assert [g.headers.get("range") for g in _file_gets(hub, "model.bin")] == [None, None]


def test_corrupted_body_is_not_detected_by_the_client(hub: FakeHub, cache_dir: Path) -> None:
    """hf_hub_download does not hash what it downloads: callers must verify sha256 themselves."""
    payload = os.urandom(100_000)
    hub.add_repo(REPO, {"model.bin": payload})
    hub.corrupt_next("model.bin")

    corrupted = _download(hub, cache_dir, "model.bin").read_bytes()
    assert len(corrupted) == len(payload) and corrupted != payload

    repaired = _download(hub, cache_dir, "model.bin", force_download=True)
    assert repaired.read_bytes() == payload


def test_offline_hub_falls_back_to_cache_then_recovers(hub: FakeHub, cache_dir: Path) -> None:
    """While offline, connections are refused (``httpx2.ConnectError``).

    Not exercised here because it is slow: ``hf_hub_download`` of a file that is *not* cached
    retries the HEAD with backoff (1+2+4+8+8 s) before raising ``LocalEntryNotFoundError``.
    """
    hub.add_repo(REPO, {"config.json": b"{}"})
    hub.add_repo("org/other", {"config.json": b"{}"})
    cached = _download(hub, cache_dir, "config.json")

    hub.set_offline(True)
    assert _download(hub, cache_dir, "config.json") == cached
    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download("org/other", cache_dir=cache_dir, endpoint=hub.endpoint, token=False)

    hub.set_offline(False)
    assert Path(
        snapshot_download("org/other", cache_dir=cache_dir, endpoint=hub.endpoint, token=False),
        "config.json",
    ).is_file()


# -- wire level ----------------------------------------------------------------------------------


def test_resolve_headers_and_byte_ranges(hub: FakeHub) -> None:
    payload = bytes(range(10))
    sha = hub.add_repo(REPO, {"weights.npz": payload, "notes.txt": b"hello"})
    url = f"{hub.endpoint}/{REPO}/resolve/main"

    status, headers, body = _open(urllib.request.Request(f"{url}/weights.npz", method="HEAD"))
    digest = hashlib.sha256(payload).hexdigest()
    assert (status, body) == (200, b"")
    assert headers["ETag"] == headers["X-Linked-Etag"] == f'"{digest}"'
    assert (headers["X-Linked-Size"], headers["Content-Length"]) == ("10", "10")
    assert headers["X-Repo-Commit"] == sha
    assert not any(key.lower().startswith("x-xet") for key in headers)

    status, headers, _ = _open(urllib.request.Request(f"{url}/notes.txt", method="HEAD"))
    assert headers["ETag"] == f'"{_git_blob_sha1(b"hello")}"' and "X-Linked-Etag" not in headers

    ranges = {
        "bytes=4-": (206, payload[4:]),
        "bytes=2-3": (206, payload[2:4]),
        "bytes=-3": (206, payload[7:]),
    }
    for header, expected in ranges.items():
        status, headers, body = _open(
            urllib.request.Request(f"{url}/weights.npz", headers={"Range": header})
        )
        assert (status, body) == expected
    assert headers["Content-Range"] == "bytes 7-9/10"

    status, headers, _ = _open(
        urllib.request.Request(f"{url}/weights.npz", headers={"Range": "bytes=10-"})
    )
    assert (status, headers["Content-Range"]) == (416, "bytes */10")

    status, headers, _ = _open(urllib.request.Request(f"{url}/missing.txt"))
    assert status == 404
    assert (headers["X-Error-Code"], headers["X-Repo-Commit"]) == ("EntryNotFound", sha)


def test_stop_refuses_connections(hub: FakeHub) -> None:
    hub.add_repo(REPO, {"config.json": b"{}"})
    endpoint = hub.endpoint
    hub.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{endpoint}/api/models/{REPO}", timeout=2)
