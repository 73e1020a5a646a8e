"""The page's runtime and offline files as the HTTP listener serves them: the vendored ONNX
Runtime Web (precompressed, the right media types, long-cache headers on its versioned URLs),
the VAD model the server runs, the service worker with this build's version, and the list of
files it keeps."""

from __future__ import annotations

import gzip
import hashlib
import json
from typing import Any

from audiototext.audio.vad import bundled_model_path
from server.fake_engine import FakeRecognizer
from server.grpc_harness import run
from server.ws_harness import http_get, http_server
from web.ort_vendor import checksums, ort_version

GZIP = {"Accept-Encoding": "gzip, deflate"}
WASM = "ort-wasm-simd-threaded.wasm"

Fetched = tuple[int, dict[str, str], bytes]


def _fetch_all(requests: list[tuple[str, dict[str, str]]]) -> list[Fetched]:
    async def main() -> list[Fetched]:
        async with http_server(FakeRecognizer()) as srv:
            return [await http_get(srv, path, headers) for path, headers in requests]

    return run(main(), 120)


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def test_runtime_is_sent_gzipped_with_wasm_type_and_long_cache() -> None:
    base = f"/vendor/ort-{ort_version()}/"
    sums = checksums()
    gz, plain, static, module, head304 = _fetch_all(
        [
            (base + WASM, GZIP),
            (base + WASM, {}),
            ("/static" + base + WASM, GZIP),
            (base + "ort.wasm.min.mjs", GZIP),
            (base + "ort.wasm.min.mjs", {}),
        ]
    )
    for status, headers, body in (gz, static):
        h = _lower(headers)
        assert status == 200
        assert h["content-type"] == "application/wasm"
        assert h["content-encoding"] == "gzip" and h["vary"] == "Accept-Encoding"
        assert h["cache-control"] == "public, max-age=31536000, immutable"
        assert len(body) < 5_000_000  # 15 MB of WebAssembly, about 3.8 MB on the wire
        assert hashlib.sha256(gzip.decompress(body)).hexdigest() == sums[WASM]
    status, headers, body = plain
    h = _lower(headers)
    assert status == 200 and "content-encoding" not in h
    assert h["content-type"] == "application/wasm"
    assert hashlib.sha256(body).hexdigest() == sums[WASM]
    status, headers, body = module
    h = _lower(headers)
    assert h["content-type"].startswith("text/javascript") and h["content-encoding"] == "gzip"
    assert hashlib.sha256(gzip.decompress(body)).hexdigest() == sums["ort.wasm.min.mjs"]
    assert head304[0] == 200 and hashlib.sha256(head304[2]).hexdigest() == sums["ort.wasm.min.mjs"]


def test_vad_model_is_the_servers_and_revalidates() -> None:
    path = bundled_model_path()
    assert path is not None

    async def main() -> tuple[Fetched, Fetched]:
        async with http_server(FakeRecognizer()) as srv:
            first = await http_get(srv, "/vad/silero_vad.onnx")
            etag = _lower(first[1])["etag"]
            again = await http_get(srv, "/vad/silero_vad.onnx", {"If-None-Match": etag})
            return first, again

    (status, headers, body), (again, _, _) = run(main(), 60)
    assert status == 200 and body == path.read_bytes()
    h = _lower(headers)
    assert h["cache-control"] == "no-cache" and h["content-type"] == "application/octet-stream"
    assert again == 304


def test_page_files_revalidate_and_keep_isolation() -> None:
    (status, headers, _), (js_status, js_headers, _) = _fetch_all([("/", {}), ("/js/main.js", {})])
    h = _lower(headers)
    assert status == 200 and h["cache-control"] == "no-cache"
    assert h["cross-origin-opener-policy"] == "same-origin"
    assert h["cross-origin-embedder-policy"] == "require-corp"
    assert js_status == 200 and _lower(js_headers)["cache-control"] == "no-cache"


def test_service_worker_carries_the_asset_version_and_lists_files_that_exist() -> None:
    async def main() -> tuple[Fetched, Fetched, dict[str, int]]:
        async with http_server(FakeRecognizer()) as srv:
            worker = await http_get(srv, "/sw.js")
            listing = await http_get(srv, "/offline-assets.json")
            files = json.loads(listing[2])["files"]
            statuses = {
                f: (await http_get(srv, "/" + f.removeprefix("./"), GZIP))[0] for f in files
            }
            return worker, listing, statuses

    worker, listing, statuses = run(main(), 120)
    doc: dict[str, Any] = json.loads(listing[2])
    version = doc["version"]
    assert worker[0] == 200 and _lower(worker[1])["content-type"].startswith("text/javascript")
    assert f'const ASSET_VERSION = "{version}";' in worker[2].decode()
    assert "__ASSET_VERSION__" not in worker[2].decode()
    assert _lower(worker[1])["cache-control"] == "no-cache"
    files = doc["files"]
    for wanted in (
        "./",
        "index.html",
        "js/main.js",
        "js/vad-worker.js",
        "manifest.webmanifest",
        "vad/silero_vad.onnx",
        f"vendor/ort-{ort_version()}/{WASM}",
    ):
        assert wanted in files, wanted
    assert not [f for f in files if f.endswith((".gz", "SHA256SUMS")) or f == "sw.js"]
    assert {s for s in statuses.values()} == {200}, statuses


def test_the_static_alias_lists_only_files_it_serves() -> None:
    async def main() -> tuple[list[str], dict[str, int]]:
        async with http_server(FakeRecognizer()) as srv:
            listing = json.loads((await http_get(srv, "/static/offline-assets.json"))[2])
            files = listing["files"]
            return files, {f: (await http_get(srv, "/static/" + f, GZIP))[0] for f in files}

    files, statuses = run(main(), 120)
    assert "./" not in files and "index.html" in files
    assert set(statuses.values()) == {200}, statuses
