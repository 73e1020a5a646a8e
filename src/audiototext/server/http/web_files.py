"""The page's files as Starlette's ``StaticFiles`` serves them, plus what the page needs more:

* Precompressed files: ``X.gz`` beside (or instead of) ``X`` is sent for ``X`` with
  ``Content-Encoding: gzip`` to clients that accept gzip; a client that does not gets ``X``
  (decompressed here when only ``X.gz`` is stored: the vendored runtime's .wasm).
* Long-cache headers under ``vendor/``: those folders are named by version, so a URL there
  never changes its bytes (``immutable``, a year).
* Files from elsewhere in the package at fixed paths (the VAD model at ``vad/``), revalidated
  on every use (no version in the URL).
* Media types that do not depend on the machine's ``/etc/mime.types`` (module scripts must be
  JavaScript, WebAssembly streaming compilation needs ``application/wasm``).
"""

from __future__ import annotations

import gzip
import mimetypes
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import anyio
from starlette.datastructures import Headers
from starlette.responses import FileResponse, Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Scope

__all__ = ["IMMUTABLE_PREFIX", "MEDIA_TYPES", "WebFiles"]

IMMUTABLE_PREFIX = "vendor/"
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"

MEDIA_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".webmanifest": "application/manifest+json",
    ".json": "application/json",
    ".onnx": "application/octet-stream",
    ".svg": "image/svg+xml",
    ".css": "text/css",
    ".html": "text/html",
}


def media_type(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    return MEDIA_TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"


def _accepts_gzip(scope: Scope) -> bool:
    for part in Headers(scope=scope).get("accept-encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class WebFiles(StaticFiles):
    """``StaticFiles`` over the page's folder with precompressed and extra files."""

    def __init__(self, *, directory: Path, html: bool, extra: Mapping[str, Path]) -> None:
        super().__init__(directory=directory, html=html)
        self._extra = dict(extra)

    async def get_response(self, path: str, scope: Scope) -> Response:
        key = path.replace(os.sep, "/")
        if scope["method"] in ("GET", "HEAD"):
            extra = self._extra.get(key)
            if extra is not None:
                return self._send(str(extra), os.stat(extra), key, scope, {})
            if not key.endswith(".gz"):
                gz_path, gz_stat = await anyio.to_thread.run_sync(self.lookup_path, path + ".gz")
                if gz_stat is not None and stat.S_ISREG(gz_stat.st_mode):
                    return await self._precompressed(path, key, gz_path, gz_stat, scope)
        return await super().get_response(path, scope)

    async def _precompressed(
        self, path: str, key: str, gz_path: str, gz_stat: os.stat_result, scope: Scope
    ) -> Response:
        vary = {"Vary": "Accept-Encoding"}
        if _accepts_gzip(scope):
            return self._send(gz_path, gz_stat, key, scope, {"Content-Encoding": "gzip", **vary})
        plain_path, plain_stat = await anyio.to_thread.run_sync(self.lookup_path, path)
        if plain_stat is not None and stat.S_ISREG(plain_stat.st_mode):
            return self._send(plain_path, plain_stat, key, scope, vary)
        body = await anyio.to_thread.run_sync(_gunzip, gz_path)
        headers = {"Cache-Control": _cache_control(key), **vary}
        return Response(body, media_type=media_type(key), headers=headers)

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        key = os.path.relpath(full_path, str(self.directory)).replace(os.sep, "/")
        return self._send(str(full_path), stat_result, key, scope, {}, status_code)

    def _send(
        self,
        full_path: str,
        stat_result: os.stat_result,
        key: str,
        scope: Scope,
        headers: dict[str, str],
        status_code: int = 200,
    ) -> Response:
        response = FileResponse(
            full_path,
            status_code=status_code,
            stat_result=stat_result,
            media_type=media_type(key),
            headers={"Cache-Control": _cache_control(key), **headers},
        )
        if self.is_not_modified(response.headers, Headers(scope=scope)):
            return NotModifiedResponse(response.headers)
        return response


def _cache_control(key: str) -> str:
    return _IMMUTABLE if key.startswith(IMMUTABLE_PREFIX) else _REVALIDATE


def _gunzip(path: str) -> bytes:
    with gzip.open(path, "rb") as f:
        return f.read()
