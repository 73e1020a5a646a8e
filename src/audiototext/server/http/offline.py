"""What the page's service worker needs: its script with this build's asset version in it,
and the list of files to keep for use with no server.

The version is the package version and a hash of every file the page may load, so any change
of a file gives the worker new bytes: the browser installs it, it fills a cache of that name
and deletes the older ones. The list has one URL per file (the uncompressed name for
``X.gz``), relative to the worker's scope.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response

from audiototext._version import __version__

__all__ = ["ASSETS_PATH", "WORKER_PATH", "OfflineAssets", "offline_assets", "offline_router"]

WORKER_PATH = "sw.js"
ASSETS_PATH = "offline-assets.json"
_PLACEHOLDER = '"__ASSET_VERSION__"'
# Kept out of the list: the worker itself, checksum and licence files, js/'s Node marker.
_NOT_ASSETS = frozenset({WORKER_PATH, "SHA256SUMS", "LICENSE", "package.json"})


@dataclass(frozen=True)
class OfflineAssets:
    version: str
    files: tuple[str, ...]  # relative URLs; "./" is the page itself


def _urls(folder: Path) -> list[str]:
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    urls = set()
    for name in names:
        if name.rsplit("/", 1)[-1] in _NOT_ASSETS:
            continue
        urls.add(name[: -len(".gz")] if name.endswith(".gz") else name)
    return sorted(urls)


@functools.lru_cache(maxsize=4)
def _offline_assets(folder: Path, extra: tuple[tuple[str, Path], ...]) -> OfflineAssets:
    digest = hashlib.sha256(__version__.encode())
    sources = [(p.relative_to(folder).as_posix(), p) for p in folder.rglob("*") if p.is_file()]
    for name, path in sorted([*sources, *extra]):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    files = ("./", *_urls(folder), *sorted(name for name, _ in extra))
    return OfflineAssets(f"{__version__}-{digest.hexdigest()[:12]}", files)


def offline_assets(folder: Path, extra: Mapping[str, Path]) -> OfflineAssets:
    """The version and file list of the page in ``folder`` (read once per process: the
    package's files do not change while it runs)."""
    return _offline_assets(folder, tuple(sorted(extra.items())))


def offline_router(folder: Path, extra: Mapping[str, Path]) -> APIRouter:
    """``/sw.js`` (and ``/static/sw.js``) with the version filled in, and the asset list."""
    router = APIRouter(include_in_schema=False)
    headers = {"Cache-Control": "no-cache"}

    async def worker() -> Response:
        assets = offline_assets(folder, extra)
        text = (folder / WORKER_PATH).read_text(encoding="utf-8")
        body = text.replace(_PLACEHOLDER, json.dumps(assets.version), 1)
        return Response(body, media_type="text/javascript", headers=headers)

    async def listing(request: Request) -> Response:
        assets = offline_assets(folder, extra)
        files = list(assets.files)
        if request.url.path.startswith("/static/"):
            files.remove("./")  # /static/ has no index: the page there is static/index.html
        body = json.dumps({"version": assets.version, "files": files})
        return Response(body, media_type="application/json", headers=headers)

    if (folder / WORKER_PATH).is_file():
        for prefix in ("/", "/static/"):
            router.add_api_route(prefix + WORKER_PATH, worker, methods=["GET"])
            router.add_api_route(prefix + ASSETS_PATH, listing, methods=["GET"])
    return router
