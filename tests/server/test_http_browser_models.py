"""``GET /api/v1/models/{name}/browser`` and its files: a cached model's graphs and decoding
data for the page, each as the manifest hashed it, versioned by the manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from audiototext.models.cache import ModelCache
from server.fake_engine import FakeRecognizer
from server.grpc_harness import run
from server.ws_harness import http_get, http_server

Fetched = tuple[int, dict[str, str], bytes]


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def test_listing_and_files_match_the_manifest(built_cache: Path) -> None:
    async def main() -> tuple[Fetched, dict[str, Fetched]]:
        async with http_server(FakeRecognizer(), cache_root=built_cache) as srv:
            listing = await http_get(srv, "/api/v1/models/tiny.en/browser")
            files = {
                f["name"]: await http_get(srv, f["url"]) for f in json.loads(listing[2])["files"]
            }
            return listing, files

    (status, _, body), files = run(main(), 120)
    assert status == 200
    doc: dict[str, Any] = json.loads(body)
    assert doc["model"] == "tiny.en" and doc["precision"] == "int8"
    names = [f["name"] for f in doc["files"]]
    assert names == [
        "encoder.onnx",
        "decoder.onnx",
        "decoder.onnx.data",
        "decoder.onnx.tables.json",
        "tokenizer.json",
        "model_config.json",
    ]
    assert doc["total_bytes"] == sum(f["size"] for f in doc["files"])
    entry = ModelCache(built_cache).find("tiny.en", "int8").path
    manifest = json.loads((entry / "manifest.json").read_text())
    assert doc["version"] == manifest["checksum"][:16]
    for f in doc["files"]:
        assert f["url"] == f"/api/v1/models/tiny.en/browser/{doc['version']}/{f['name']}"
        status, headers, content = files[f["name"]]
        assert status == 200, f
        assert len(content) == f["size"] == manifest["files"][f["name"]]["size"]
        assert hashlib.sha256(content).hexdigest() == f["sha256"]
        assert _lower(headers)["cache-control"] == "public, max-age=31536000, immutable"


def test_refusals_say_what_to_do(built_cache: Path) -> None:
    async def main() -> dict[str, tuple[int, Any]]:
        async with http_server(FakeRecognizer(), cache_root=built_cache) as srv:
            version = json.loads((await http_get(srv, "/api/v1/models/tiny.en/browser"))[2])[
                "version"
            ]
            paths = {
                "stale": "/api/v1/models/tiny.en/browser/0123456789abcdef/encoder.onnx",
                "private": f"/api/v1/models/tiny.en/browser/{version}/selfcheck.npz",
                "uncached": "/api/v1/models/base/browser",
                "unknown": "/api/v1/models/no-such-model/browser",
            }
            return {
                k: ((r := await http_get(srv, p))[0], json.loads(r[2])) for k, p in paths.items()
            }

    out = run(main(), 120)
    for name, (status, body) in out.items():
        assert status == 404, name
        assert body["error"]["code"] == "NOT_FOUND", name
    assert "read GET /api/v1/models/tiny.en/browser again" in out["stale"][1]["error"]["message"]
    assert "not a browser file" in out["private"][1]["error"]["message"]
    assert "audiototext models pull base" in out["uncached"][1]["error"]["message"]


def test_the_token_guards_them(built_cache: Path) -> None:
    async def main() -> tuple[int, int]:
        async with http_server(FakeRecognizer(), cache_root=built_cache, token="s3cret") as srv:
            bare = await http_get(srv, "/api/v1/models/tiny.en/browser")
            good = await http_get(
                srv, "/api/v1/models/tiny.en/browser", {"Authorization": "Bearer s3cret"}
            )
            return bare[0], good[0]

    assert run(main(), 60) == (401, 200)
