"""``/docs`` works offline: Swagger UI from the package, no request to another site."""

from __future__ import annotations

import re
from pathlib import Path

from audiototext.server.http.docs import ASSETS_DIR, SWAGGER_UI_VERSION
from server.fake_engine import FakeRecognizer
from server.grpc_harness import run
from server.ws_harness import http_get, http_server

REPO = Path(__file__).resolve().parents[2]


def test_docs_reference_no_external_url_and_their_assets_are_served() -> None:
    async def main() -> dict[str, tuple[int, dict[str, str], bytes]]:
        async with http_server(FakeRecognizer()) as srv:
            out = {"/docs": await http_get(srv, "/docs")}
            html = out["/docs"][2].decode()
            for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
                out[ref] = await http_get(srv, ref)
            out["/redoc"] = await http_get(srv, "/redoc")
            return out

    out = run(main(), 60)
    status, headers, body = out["/docs"]
    html = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert not re.search(r"(?:https?:)?//[a-z0-9]", html, re.I), "an external URL in /docs"
    assert "'/openapi.json'" in html and "SwaggerUIBundle" in html
    refs = [r for r in out if r not in ("/docs", "/redoc")]
    assert sorted(refs) == [
        "/docs/assets/favicon-32x32.png",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
    ]
    for ref in refs:
        assert out[ref][0] == 200, ref
    assert "javascript" in out["/docs/assets/swagger-ui-bundle.js"][1]["content-type"]
    assert len(out["/docs/assets/swagger-ui-bundle.js"][2]) > 500_000
    assert out["/redoc"][0] == 404  # ReDoc would load from a CDN: not offered


def test_the_vendored_swagger_ui_is_the_pinned_version_with_its_licence_noted() -> None:
    names = sorted(p.name for p in ASSETS_DIR.iterdir())
    assert names == [
        "LICENSE",
        "NOTICE",
        "favicon-32x32.png",
        "swagger-ui-bundle.js",
        "swagger-ui-bundle.js.LICENSE.txt",
        "swagger-ui.css",
    ]
    assert f"swagger-ui-dist {SWAGGER_UI_VERSION}" in (REPO / "THIRD_PARTY_NOTICES.md").read_text()
    assert "Apache License" in (ASSETS_DIR / "LICENSE").read_text()


def test_with_a_token_the_document_declares_bearer_auth_for_the_docs_authorize_button() -> None:
    import json

    from server.grpc_harness import config

    async def main() -> tuple[object, object]:
        async with http_server(FakeRecognizer(), config(http_port=0, token="s3cret")) as srv:
            with_token = json.loads((await http_get(srv, "/openapi.json"))[2])
        async with http_server(FakeRecognizer()) as srv:
            without = json.loads((await http_get(srv, "/openapi.json"))[2])
        return with_token, without

    with_token, without = run(main(), 60)
    assert isinstance(with_token, dict) and isinstance(without, dict)
    scheme = with_token["components"]["securitySchemes"]["bearerToken"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    paths = with_token["paths"]
    assert paths["/api/v1/models"]["get"]["security"] == [{"bearerToken": []}]
    assert paths["/api/v1/transcriptions"]["post"]["security"] == [{"bearerToken": []}]
    assert "security" not in paths["/api/v1/health"]["get"]
    assert "securitySchemes" not in without.get("components", {})
