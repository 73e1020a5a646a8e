"""``/docs``: Swagger UI for the OpenAPI document, served from the package (no CDN).

FastAPI's own ``/docs`` loads Swagger UI from a CDN, a blank page offline, and ReDoc the
same way; this module serves the files of ``swagger-ui-dist`` vendored in
``server/http/swagger_ui/`` (version :data:`SWAGGER_UI_VERSION`, Apache-2.0, see
THIRD_PARTY_NOTICES.md) at ``/docs/assets/``, so the docs make no request to another site.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_DIR", "DOCS_PATH", "SWAGGER_UI_VERSION", "declare_bearer_token", "install_docs"]

SWAGGER_UI_VERSION = "5.36.0"
ASSETS_DIR = Path(__file__).with_name("swagger_ui")
DOCS_PATH = "/docs"
_ASSETS = f"{DOCS_PATH}/assets"


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and its assets; the app must be made with ``docs_url=None`` and
    ``redoc_url=None`` (FastAPI's CDN pages). Call before the page's mount at ``/``."""
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{_ASSETS}/favicon-32x32.png",
            # No badge asking validator.swagger.io about the document.
            swagger_ui_parameters={"validatorUrl": None},
        )

    app.mount(_ASSETS, StaticFiles(directory=ASSETS_DIR, check_dir=False), name="docs-assets")


def declare_bearer_token(app: FastAPI, *, open_paths: tuple[str, ...]) -> None:
    """With ``serve --token``: the document says every operation but ``open_paths`` needs
    ``Authorization: Bearer``, so /docs offers "Authorize" and sends the token."""
    base: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = base()
        schemes = doc.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["bearerToken"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "the server's --token",
        }
        for path, operations in doc.get("paths", {}).items():
            if path in open_paths:
                continue
            for operation in operations.values():
                operation["security"] = [{"bearerToken": []}]
        app.openapi_schema = doc
        return doc

    setattr(app, "openapi", openapi)  # noqa: B010 (a method of the instance, replaced)
