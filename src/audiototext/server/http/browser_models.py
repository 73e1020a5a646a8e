"""A cached model's files for the page to keep and run in the browser (ONNX Runtime Web).

* ``GET /api/v1/models/{name}/browser`` → ``{model, precision, version, total_bytes, files:
  [{name, size, sha256, url}]}``: the entry's graphs (``encoder.onnx``, ``decoder.onnx`` and its
  external data and row-table description) and what decoding needs (``tokenizer.json``: the
  vocabulary and merges; ``model_config.json``: special tokens, suppress lists, dims). The
  int8 entry when there is one, else fp32 (fp16 is for GPUs). ``version`` is the start of the
  entry's manifest checksum, so a new conversion is a new version.
* ``GET /api/v1/models/{name}/browser/{version}/{file}``: one of those files, immutable (a
  year's cache: the version is in the URL); another version is 404 NOT_FOUND saying to read
  the listing again.

The page checks each file against ``sha256`` before it keeps it. Token as the rest of the
API. Register before :mod:`.models` (its ``/models/{name:path}`` would take these paths).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel

from audiototext.models.cache import CacheEntry, ModelCache
from audiototext.server.http.context import HttpContext
from audiototext.server.http.errors import ERROR_RESPONSES
from audiototext.server.http.guard import check_token
from audiototext.server.status import Status, StatusError

__all__ = ["BROWSER_FILES", "BrowserFiles", "browser_models_router"]

# What the browser needs of an entry; selfcheck.npz and the manifest stay on the server.
BROWSER_FILES = (
    "encoder.onnx",
    "decoder.onnx",
    "decoder.onnx.data",
    "decoder.onnx.tables.json",
    "tokenizer.json",
    "model_config.json",
)
_PRECISIONS = ("int8", "fp32")  # in order of preference
_VERSION_CHARS = 16
_IMMUTABLE = "public, max-age=31536000, immutable"


class BrowserFile(BaseModel):
    name: str
    size: int
    sha256: str
    url: str


class BrowserFiles(BaseModel):
    model: str
    precision: str
    version: str
    total_bytes: int
    files: list[BrowserFile]


def _entry(cache: ModelCache, name: str) -> CacheEntry:
    entries = cache.entries(name)
    for precision in _PRECISIONS:
        found = [e for e in entries if e.precision == precision]
        if found:
            return max(found, key=lambda e: e.created_at)
    have = sorted({e.precision for e in entries})
    raise StatusError(
        Status.NOT_FOUND,
        f"model {name!r} has no int8 or fp32 conversion in the cache"
        + (f" (only {', '.join(have)})" if have else "")
        + f"; pull it first: audiototext models pull {name} --precision int8",
    )


def _version(entry: CacheEntry) -> str:
    return str(entry.manifest["checksum"])[:_VERSION_CHARS]


def browser_models_router(ctx: HttpContext) -> APIRouter:
    def token(request: Request) -> None:
        check_token(request, ctx.token)

    router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES, dependencies=[Depends(token)])

    def cache() -> ModelCache:
        return ModelCache(ctx.cache_root)

    @router.get(
        "/models/{name:path}/browser/{version}/{file}",
        summary="One file of a model for the browser",
        response_class=FileResponse,
    )
    async def browser_file(name: str, version: str, file: str) -> FileResponse:
        entry = await asyncio.to_thread(_entry, cache(), name)
        if version != _version(entry):
            raise StatusError(
                Status.NOT_FOUND,
                f"model {name!r} has no browser files of version {version!r} (now "
                f"{_version(entry)!r}): read GET /api/v1/models/{name}/browser again",
            )
        if file not in BROWSER_FILES or file not in entry.manifest["files"]:
            raise StatusError(
                Status.NOT_FOUND,
                f"{file!r} is not a browser file of {name!r}; the listing names them",
            )
        return FileResponse(
            entry.file(file),
            media_type="application/json" if file.endswith(".json") else "application/octet-stream",
            headers={"Cache-Control": _IMMUTABLE},
        )

    @router.get(
        "/models/{name:path}/browser",
        response_model=BrowserFiles,
        summary="A model's files for the browser",
    )
    async def browser_listing(name: str) -> BrowserFiles:
        entry = await asyncio.to_thread(_entry, cache(), name)
        version = _version(entry)
        files = [
            BrowserFile(
                name=f,
                size=int(entry.manifest["files"][f]["size"]),
                sha256=str(entry.manifest["files"][f]["sha256"]),
                url=f"/api/v1/models/{name}/browser/{version}/{f}",
            )
            for f in BROWSER_FILES
            if f in entry.manifest["files"]
        ]
        return BrowserFiles(
            model=name,
            precision=entry.precision,
            version=version,
            total_bytes=sum(f.size for f in files),
            files=files,
        )

    return router
