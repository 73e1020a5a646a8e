"""Where the vendored ONNX Runtime Web lives, and what its checksum list says (shared by the
tests that check, serve and load it)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

WEB_DIR = Path(__file__).resolve().parents[2] / "src" / "audiototext" / "web"
PIN = WEB_DIR / "js" / "ort-runtime.js"


def ort_version() -> str:
    match = re.search(r'^export const ORT_VERSION = "([^"]+)";$', PIN.read_text(), re.M)
    assert match, f"no ORT_VERSION in {PIN}"
    return match.group(1)


def ort_dir() -> Path:
    return WEB_DIR / "vendor" / f"ort-{ort_version()}"


def checksums() -> dict[str, str]:
    """Upstream file name → sha256, from SHA256SUMS."""
    out = {}
    for line in (ort_dir() / "SHA256SUMS").read_text().splitlines():
        if line and not line.startswith("#"):
            digest, name = line.split()
            out[name] = digest
    return out


def upstream_bytes(name: str) -> bytes:
    """The upstream file's bytes: stored plain, or only as ``name.gz``."""
    plain = ort_dir() / name
    return (
        plain.read_bytes()
        if plain.is_file()
        else gzip.decompress((plain.parent / f"{name}.gz").read_bytes())
    )
