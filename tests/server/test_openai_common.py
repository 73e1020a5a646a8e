"""The OpenAI-compatible routes' shared parts: the error object and the token check (the
bearer header, and OpenAI's WebSocket subprotocol for browsers)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import HTTPConnection

from audiototext.server.http.openai_common import (
    OpenAIError,
    check_bearer,
    openai_error,
    openai_subprotocol_key,
)
from audiototext.server.status import Status, StatusError


def _conn(kind: str, headers: dict[str, str], protocols: list[str]) -> HTTPConnection:
    scope: dict[str, Any] = {
        "type": kind,
        "path": "/v1/realtime",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "subprotocols": protocols,
    }
    return HTTPConnection(scope)


def test_the_error_object_has_openais_four_fields() -> None:
    assert openai_error("no such model", 404, param="model", code="model_not_found") == {
        "error": {
            "message": "no such model",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    assert openai_error("busy", 429)["error"]["type"] == "rate_limit_error"
    assert openai_error("down", 503)["error"]["type"] == "server_error"
    busy = OpenAIError.of(StatusError(Status.UNAVAILABLE, "stopping", try_later=True))
    assert busy.status == 503


@pytest.mark.parametrize(
    ("kind", "headers", "protocols", "ok"),
    [
        ("http", {"Authorization": "Bearer s3"}, [], True),
        ("http", {"Authorization": "Bearer nope"}, [], False),
        ("http", {}, [], False),
        ("websocket", {}, ["realtime", "openai-insecure-api-key.s3"], True),
        ("websocket", {}, ["realtime", "openai-insecure-api-key.nope"], False),
        ("websocket", {"Authorization": "Bearer s3"}, ["realtime"], True),
        ("websocket", {}, ["realtime"], False),
    ],
)
def test_the_token_as_bearer_or_openais_subprotocol(
    kind: str, headers: dict[str, str], protocols: list[str], ok: bool
) -> None:
    conn = _conn(kind, headers, protocols)
    if ok:
        check_bearer(conn, "s3")
    else:
        with pytest.raises(OpenAIError) as caught:
            check_bearer(conn, "s3")
        assert caught.value.status == 401 and caught.value.code == "invalid_api_key"
    check_bearer(conn, None)  # a server without --token takes anyone


def test_the_subprotocol_key_is_found_among_others() -> None:
    assert openai_subprotocol_key(["realtime", "openai-insecure-api-key.k-1"]) == "k-1"
    assert openai_subprotocol_key(["realtime"]) is None
