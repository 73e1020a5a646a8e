"""The page: static files of the package folder ``audiototext/web/`` (or one passed in).

The folder is served at ``/`` (``index.html`` for ``/``) and also at ``/static/``, so the
page may link its files either way (:mod:`.web_files`: precompressed files, cache headers,
the VAD model at ``vad/``; :mod:`.offline`: the service worker). Without an ``index.html``
the paths answer 404 with a JSON error saying so; the API still works.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.middleware.base import RequestResponseEndpoint

from audiototext.audio.vad import bundled_model_path
from audiototext.server.http.offline import offline_router
from audiototext.server.http.web_files import WebFiles

__all__ = ["VAD_MODEL_URL", "mount_web", "package_web_dir", "page_extras"]

# Where the page's VAD worker fetches the model the server's VAD runs (js/vad-worker.js).
VAD_MODEL_URL = "vad/silero_vad.onnx"

# Cross-origin isolation lets ONNX Runtime Web use threads in the page; the page loads
# nothing from other origins, so it costs nothing.
_ISOLATION = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
}

# The API and /docs (Swagger UI, its own page) need no isolation.
_NOT_THE_PAGE = ("/api/", "/docs", "/redoc", "/openapi.json")


def _trustworthy(request: Request) -> bool:
    """Whether browsers take the page's origin as secure (https, or a loopback host): they
    ignore cross-origin isolation elsewhere, with an error in the console for each page."""
    if request.url.scheme == "https":
        return True
    host = (request.url.hostname or "").lower()
    return (
        host == "localhost"
        or host.endswith(".localhost")
        or host == "::1"
        or (host.startswith("127."))
    )


def package_web_dir() -> Path | None:
    """The package's ``web`` folder on disk (None when the install has no such folder)."""
    folder = resources.files("audiototext").joinpath("web")
    return folder if isinstance(folder, Path) and folder.is_dir() else None


def _has_page(folder: Path | None) -> bool:
    return folder is not None and (folder / "index.html").is_file()


def mount_web(app: FastAPI, folder: Path | None) -> None:
    """Serve ``folder`` at ``/`` and ``/static``; call last (the mount at ``/`` takes every
    path no route matched)."""
    if not _has_page(folder):
        where = str(folder) if folder is not None else "audiototext/web in the package"

        @app.get("/", include_in_schema=False)
        async def no_page() -> JSONResponse:
            return JSONResponse(
                {
                    "error": {
                        "code": "NOT_FOUND",
                        "message": f"the web page is not installed ({where} has no "
                        "index.html); reinstall audiototext, or use the API under /api/v1 "
                        "(see /docs)",
                    }
                },
                status_code=404,
            )

        return
    assert folder is not None

    @app.middleware("http")
    async def isolate(request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        if not request.url.path.startswith(_NOT_THE_PAGE) and _trustworthy(request):
            response.headers.update(_ISOLATION)
        return response

    extra = page_extras()
    app.include_router(offline_router(folder, extra))
    app.mount("/static", WebFiles(directory=folder, html=False, extra=extra), name="static")
    app.mount("/", WebFiles(directory=folder, html=True, extra=extra), name="web")


def page_extras() -> dict[str, Path]:
    """Files of the page that live elsewhere in the package, by their path on the page."""
    vad = bundled_model_path()
    return {VAD_MODEL_URL: vad} if vad is not None else {}
