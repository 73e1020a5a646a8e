"""The vendored ONNX Runtime Web is the npm package's files, unchanged, one build only."""

from __future__ import annotations

import gzip
import hashlib

from web.ort_vendor import WEB_DIR, checksums, ort_dir, ort_version, upstream_bytes

BUILD = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")


def test_one_version_is_vendored_and_it_is_the_pinned_one() -> None:
    folders = sorted(p.name for p in (WEB_DIR / "vendor").glob("ort-*"))
    assert folders == [f"ort-{ort_version()}"]


def test_the_files_match_the_checksum_list() -> None:
    sums = checksums()
    assert sorted(sums) == sorted(BUILD), "SHA256SUMS must list the WASM-only build, no other"
    for name, digest in sums.items():
        assert hashlib.sha256(upstream_bytes(name)).hexdigest() == digest, name


def test_nothing_else_is_in_the_folder_and_every_gz_is_its_file() -> None:
    folder = ort_dir()
    allowed = (
        {"SHA256SUMS", "LICENSE"}
        | {f"{n}.gz" for n in BUILD}
        | {n for n in BUILD if not n.endswith(".wasm")}
    )
    assert {p.name for p in folder.iterdir()} == allowed
    for name in BUILD:
        assert gzip.decompress((folder / f"{name}.gz").read_bytes()) == upstream_bytes(name), name


def test_the_checksum_list_names_the_registry_tarball() -> None:
    header = (ort_dir() / "SHA256SUMS").read_text().splitlines()[0]
    assert header.startswith(f"# onnxruntime-web {ort_version()} from the npm registry (sha512-")
