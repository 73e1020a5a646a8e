"""Property-based tests of the REST API from its own OpenAPI document (schemathesis).

Requests generated from ``/openapi.json`` (valid ones and, for each operation, ones that break
its schema) go to the real HTTP listener over a socket: uvicorn, the middleware (body limits,
Origin), the routes, the error handlers. None may get a server error, and every answer must
match the document (status codes, content types, JSON schemas). The engine is the test double;
uploads are decoded by the real decoder (:class:`DecodingTranscriber`). Bounded: a fixed seed
and a few examples per operation.
"""

from __future__ import annotations

import asyncio
import io
import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.result import Ok

from audiototext.server.app import GrpcServer
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config
from server.upload_harness import DecodingTranscriber

MAX_EXAMPLES = 25


TOKEN = "s3cret"


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(tmp_path_factory, token=None)


@pytest.fixture(scope="module")
def token_api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(tmp_path_factory, token=TOKEN)


def _serve(tmp_path_factory: pytest.TempPathFactory, token: str | None) -> Iterator[str]:
    """The server on its own event loop in a thread (schemathesis calls it synchronously)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    cache: Path = tmp_path_factory.mktemp("cache")
    cfg = config(http_port=0, cache_root=cache, max_upload_bytes=256 << 10, token=token)

    async def start() -> GrpcServer:
        server = GrpcServer(cfg, recognizer=FakeRecognizer(), transcribe_file=DecodingTranscriber())
        await server.start()
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    assert server.http is not None
    try:
        yield f"http://127.0.0.1:{server.http.port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(2.0), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


Operation = schemathesis.APIOperation[Any, Any, Any, Any]


def _operations(api_url: str) -> list[Operation]:
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"an operation the document cannot describe: {result}"
        operations.append(result.ok())
    return operations


# schemathesis.pytest.from_fixture does not run on pytest 9 (it reads a private attribute of
# pytest's test items): the operations are taken from the document and driven by Hypothesis here.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_error_and_answers_match_the_document(api_url: str, mode: GenerationMode) -> None:
    operations = _operations(api_url)
    labels = sorted(op.label for op in operations)
    assert "POST /api/v1/transcriptions" in labels and "GET /api/v1/health" in labels, labels
    assert {"POST /v1/audio/transcriptions", "POST /v1/audio/translations"} <= set(labels)
    assert {"GET /v1/models", "GET /v1/models/{model_id}"} <= set(labels), labels
    unbreakable: list[str] = []
    for operation in operations:
        has_inputs = bool(
            list(operation.iter_parameters()) or operation.get_request_payload_content_types()
        )
        if mode is GenerationMode.NEGATIVE and not has_inputs:
            continue  # nothing to break: no parameters, no body

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,  # the same examples every run
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case[Operation]) -> None:
            # Valid documents with random bytes as the file are valid requests the server
            # must refuse (not audio): "valid data is accepted" does not hold for uploads.
            case.call_and_validate(base_url=api_url, excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Unsatisfiable:
            # Every input of the operation accepts any string (e.g. a model name in the path):
            # no request can break its schema.
            assert mode is GenerationMode.NEGATIVE, operation.label
            unbreakable.append(operation.label)
    if mode is GenerationMode.NEGATIVE:
        assert len(unbreakable) < len(operations) // 2, unbreakable


def test_a_real_upload_matches_the_document(api_url: str) -> None:
    """The fuzzed uploads are refused (random bytes are not audio); one real WAV file in
    each format checks the success answers against the document too."""
    upload = next(op for op in _operations(api_url) if op.label == "POST /api/v1/transcriptions")
    t = np.arange(16_000) / 16_000
    wav = io.BytesIO()
    with wave.open(wav, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes())
    for fmt in ("json", "txt", "srt", "vtt"):
        body: dict[str, Any] = {"file": wav.getvalue(), "format": fmt}
        case = upload.Case(body=body, media_type="multipart/form-data")
        response = case.call_and_validate(base_url=api_url)
        assert response.status_code == 200, response.text
    openai_upload = next(
        op for op in _operations(api_url) if op.label == "POST /v1/audio/transcriptions"
    )
    for fmt in ("json", "text", "srt", "vtt", "verbose_json"):
        body = {"file": wav.getvalue(), "model": "whisper-1", "response_format": fmt}
        case = openai_upload.Case(body=body, media_type="multipart/form-data")
        response = case.call_and_validate(base_url=api_url)
        assert response.status_code == 200, response.text


def test_with_a_token_guarded_operations_refuse_requests_without_it(token_api_url: str) -> None:
    """The document of a server with --token declares bearer auth: generated requests with
    the token get no server error, and the same requests without it are refused (401)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    operations = _operations(token_api_url)
    assert any("security" in op.definition.raw for op in operations)
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=10,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case[Operation]) -> None:
            case.call_and_validate(
                base_url=token_api_url,
                headers=headers,
                excluded_checks=[positive_data_acceptance],
            )

        check()
