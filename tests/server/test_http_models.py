"""The REST models API (info, pull with Server-Sent Events, delete) and per-stream model,
language and task choice, over real sockets with the engine double.

Pulls go to the fake Hugging Face server (`support.hf_server`) with a small random-weights
Whisper; streams on a pulled model run on the engine double (the pool's loader is
injected), so nothing here decodes speech.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
import websockets

from audiototext.models.cache import ModelCache
from audiototext.server.app import GrpcServer
from audiototext.server.engine import Engine
from audiototext.server.pool import ModelChoice
from audiototext.wire._proto import transcription_pb2 as pb
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, raw_stream, run, speech_like
from server.ws_harness import (
    PCM16_CONFIG,
    exchange,
    http_get,
    pcm16_frames,
    sse_events,
    ws_url,
)
from support.hf_server import FakeHub

REPO = "lab/whisper-mini"
FINISH = json.dumps({"control": {"action": "FINISH"}})


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, random_whisper_dir: Path) -> Iterator[FakeHub]:
    with FakeHub() as h:
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        h.add_repo(REPO, {p.name: p for p in random_whisper_dir.iterdir() if p.is_file()})
        yield h


class FakeLoader:
    """The pool's loader, building engine doubles (and recording what it loaded)."""

    def __init__(self) -> None:
        self.loaded: list[ModelChoice] = []

    def __call__(self, choice: ModelChoice) -> Engine:
        self.loaded.append(choice)
        engine = FakeRecognizer()
        engine.model = SimpleNamespace(path=choice.path)
        return engine


@contextlib.asynccontextmanager
async def server(
    recognizer: Engine | None = None, loader: FakeLoader | None = None, **changes: Any
) -> AsyncIterator[GrpcServer]:
    srv = GrpcServer(
        config(http_port=0, **changes),
        recognizer=recognizer or FakeRecognizer(),
        engine_loader=loader or FakeLoader(),
    )
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(2.0)


def _json(body: bytes) -> Any:
    return json.loads(body)


async def _pull(srv: GrpcServer, name: str, query: str = "") -> tuple[int, dict[str, str], bytes]:
    return await http_get(srv, f"/api/v1/models/{name}/pull{query}", method="POST")


def test_pull_streams_download_and_conversion_progress_then_info_and_delete(
    hub: FakeHub,
) -> None:
    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with server() as srv:
            out["before"] = _json((await http_get(srv, f"/api/v1/models/{REPO}"))[2])
            status, headers, body = await _pull(srv, REPO, "?precision=fp32")
            out["pull"] = (status, headers, sse_events(body))
            path = Path(out["pull"][2][-1][1]["model"]["path"])
            out["manifest"] = (path / "manifest.json").is_file()
            out["again"] = sse_events((await _pull(srv, REPO, "?precision=fp32"))[2])
            out["info"] = _json((await http_get(srv, f"/api/v1/models/{REPO}"))[2])
            out["list"] = _json((await http_get(srv, "/api/v1/models"))[2])
            out["delete"] = await http_get(srv, f"/api/v1/models/{REPO}", method="DELETE")
            out["after"] = _json((await http_get(srv, f"/api/v1/models/{REPO}"))[2])
        return out

    out = run(main(), 300)
    assert out["before"]["cached"] == [] and out["before"]["name"] == REPO
    status, headers, events = out["pull"]
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and "error" not in kinds
    progress = [data for kind, data in events if kind == "progress"]
    stages = [p["stage"] for p in progress]
    assert "download" in stages and "convert" in stages
    assert stages.index("convert") > stages.index("download")
    downloads = [p for p in progress if p["stage"] == "download" and p["total"] > 0]
    assert any(p["percent"] == 100.0 for p in downloads)
    assert all(0.0 <= p["percent"] <= 100.0 for p in downloads)
    convert = [p for p in progress if p["stage"] == "convert"]
    assert convert[-1]["percent"] == 100.0 and convert[-1]["unit"] == "step"
    done = events[-1][1]
    assert done["already_cached"] is False
    assert done["model"]["name"] == REPO and done["model"]["precision"] == "fp32"
    assert out["manifest"]
    assert [k for k, _ in out["again"]] == ["done"] and out["again"][0][1]["already_cached"]

    info = out["info"]
    assert [c["precision"] for c in info["cached"]] == ["fp32"]
    assert info["languages"] == ["en"] and info["cached"][0]["loaded"] is False
    row = next(m for m in out["list"]["models"] if m["name"] == REPO)
    assert row["cached"] and row["precision"] == "fp32" and not row["loaded"]
    assert out["list"]["memory_budget_mb"] > 0
    assert [m["name"] for m in out["list"]["loaded"]] == ["tiny.en"]

    status, _, body = out["delete"]
    assert status == 200, body
    assert [r["precision"] for r in _json(body)["removed"]] == ["fp32"]
    assert out["after"]["cached"] == []
    assert not Path(done["model"]["path"]).exists()


def test_unknown_models_and_bad_pulls_are_json_errors() -> None:
    async def main() -> dict[str, tuple[int, Any]]:
        out = {}
        async with server() as srv:
            for name, path, method in (
                ("info", "/api/v1/models/tiny.enn", "GET"),
                ("pull", "/api/v1/models/tiny.enn/pull", "POST"),
                ("delete", "/api/v1/models/tiny.enn", "DELETE"),
                ("delete uncached", "/api/v1/models/base.en", "DELETE"),
                ("bad precision", "/api/v1/models/tiny.en/pull?precision=int4", "POST"),
            ):
                status, _, body = await http_get(srv, path, method=method)
                out[name] = (status, _json(body))
        return out

    out = run(main(), 60)
    for name in ("info", "pull", "delete"):
        status, body = out[name]
        assert status == 404, name
        assert body["error"]["code"] == "NOT_FOUND"
        assert "Did you mean tiny.en" in body["error"]["message"]
        assert "Known models: tiny.en, tiny," in body["error"]["message"]
    assert out["delete uncached"][0] == 404
    assert "no cached entry of base.en" in out["delete uncached"][1]["error"]["message"]
    assert out["bad precision"][0] == 400
    assert out["bad precision"][1]["error"]["code"] == "INVALID_ARGUMENT"
    assert "precision" in out["bad precision"][1]["error"]["message"]


def test_a_pull_that_fails_midway_ends_with_an_error_event(hub: FakeHub) -> None:
    async def main() -> list[tuple[str, Any]]:
        async with server() as srv:
            return sse_events((await _pull(srv, "lab/nothing-here"))[2])

    events = run(main(), 120)
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["code"] == "NOT_FOUND"
    assert "lab/nothing-here" in events[-1][1]["error"]["message"]


def test_a_pulled_model_serves_new_streams_and_cannot_be_deleted_while_in_use(
    hub: FakeHub,
) -> None:
    loader = FakeLoader()
    audio = speech_like(3.0, seed=5)

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with server(loader=loader) as srv:
            assert srv.http is not None
            events = sse_events((await _pull(srv, REPO, "?precision=fp32"))[2])
            assert events[-1][0] == "done", events[-1]
            cfg = json.dumps({"config": {**PCM16_CONFIG, "model": REPO}})
            # A stream held open (no FINISH yet) while the model is deleted: refused.
            async with websockets.connect(ws_url(srv)) as ws:
                await ws.send(cfg)
                started = json.loads(await ws.recv())["started"]
                out["started"] = started
                out["health"] = _json((await http_get(srv, "/api/v1/health"))[2])
                own = f"http://127.0.0.1:{srv.http.port}"
                out["delete busy"] = await http_get(
                    srv, f"/api/v1/models/{REPO}", {"Origin": own}, method="DELETE"
                )
                for frame in pcm16_frames(audio):
                    await ws.send(frame)
                await ws.send(FINISH)
                messages = [json.loads(m) async for m in ws]
                out["finals"] = [
                    m["result"]["text"] for m in messages if m.get("result", {}).get("is_final")
                ]
            # The stream is over: the model is idle, so it is unloaded and deleted.
            for _ in range(100):
                loaded = _json((await http_get(srv, "/api/v1/health"))[2])["models"]
                if all(m["sessions"] == 0 for m in loaded):
                    break
                await asyncio.sleep(0.05)
            out["delete idle"] = await http_get(srv, f"/api/v1/models/{REPO}", method="DELETE")
            out["health after"] = _json((await http_get(srv, "/api/v1/health"))[2])
        return out

    out = run(main(), 300)
    assert out["started"]["model"] == REPO
    assert [c.key.name for c in loader.loaded] == [REPO]
    loaded = {m["name"]: m for m in out["health"]["models"]}
    assert loaded[REPO]["sessions"] == 1 and loaded[REPO]["state"] == "loaded"
    assert loaded["tiny.en"]["default"] and not loaded[REPO]["default"]
    status, _, body = out["delete busy"]
    assert status == 409 and _json(body)["error"]["code"] == "FAILED_PRECONDITION"
    assert "in use" in _json(body)["error"]["message"]
    assert len(out["finals"]) >= 1
    assert out["delete idle"][0] == 200, out["delete idle"][2]
    assert [m["name"] for m in out["health after"]["models"]] == ["tiny.en"]


def test_the_default_model_cannot_be_deleted(filled_cache: ModelCache) -> None:
    engine = FakeRecognizer()
    engine.model = SimpleNamespace(path=filled_cache.find("tiny.en", "int8").path)

    async def main() -> tuple[int, Any]:
        async with server(engine, cache_root=filled_cache.root) as srv:
            status, _, body = await http_get(
                srv, "/api/v1/models/tiny.en?precision=int8", method="DELETE"
            )
            return status, _json(body)

    status, body = run(main(), 60)
    assert status == 409 and "in use" in body["error"]["message"]
    assert filled_cache.find("tiny.en", "int8").path.is_dir()


CHOICE_REFUSALS: dict[str, tuple[dict[str, Any], str, str]] = {
    "translate on english-only": ({"task": "TRANSLATE"}, "INVALID_ARGUMENT", "cannot translate"),
    "german on english-only": ({"language": "de"}, "INVALID_ARGUMENT", "English-only"),
    "unknown model": ({"model": "tiny.xx"}, "NOT_FOUND", "Known models: tiny.en"),
    "not downloaded": ({"model": "base"}, "FAILED_PRECONDITION", "/api/v1/models/base/pull"),
    "bad task": ({"task": "SING"}, "INVALID_ARGUMENT", "StreamingRequest"),
}


@pytest.mark.parametrize("case", sorted(CHOICE_REFUSALS))
def test_stream_model_language_and_task_refusals(case: str) -> None:
    fields, code, words = CHOICE_REFUSALS[case]

    async def main() -> tuple[list[dict[str, Any]], int | None]:
        async with server() as srv:
            frames = [json.dumps({"config": {**PCM16_CONFIG, **fields}})]
            messages, close, _ = await exchange(ws_url(srv), frames)
            return messages, close

    messages, close = run(main(), 60)
    assert close == 1008
    assert messages[-1]["error"]["code"] == code
    assert words in messages[-1]["error"]["message"]


def test_auto_and_english_are_accepted_on_english_only_models() -> None:
    audio = speech_like(2.5, seed=6)

    async def main() -> list[int | None]:
        closes = []
        async with server() as srv:
            for fields in ({"language": "auto"}, {"language": "en", "task": "TRANSCRIBE"}):
                frames: list[str | bytes] = [
                    json.dumps({"config": {**PCM16_CONFIG, **fields}}),
                    *pcm16_frames(audio),
                    FINISH,
                ]
                _, close, _ = await exchange(ws_url(srv), frames)
                closes.append(close)
        return closes

    assert run(main(), 60) == [1000, 1000]


def test_grpc_stream_config_task_and_model_go_through_the_same_checks() -> None:
    async def main() -> list[tuple[grpc.StatusCode, str]]:
        out = []
        async with server() as srv:
            for cfg in (
                pb.StreamConfig(encoding=pb.PCM16, sample_rate_hz=16000, task=pb.TRANSLATE),
                pb.StreamConfig(encoding=pb.PCM16, sample_rate_hz=16000, model="small"),
            ):
                code, details, _ = await raw_stream(srv.port, [pb.StreamingRequest(config=cfg)])
                out.append((code, details))
        return out

    (translate, small) = run(main(), 60)
    assert translate[0] == grpc.StatusCode.INVALID_ARGUMENT and "translate" in translate[1]
    assert small[0] == grpc.StatusCode.FAILED_PRECONDITION and "pull it first" in small[1]


def test_a_file_request_names_a_pulled_model_and_shares_its_loaded_weights(
    hub: FakeHub, tmp_path: Path
) -> None:
    """Transcribe with ``model``: the pool loads the model (the real engine here) and the file
    is transcribed with its WhisperModel; translation on it (English-only) is refused."""
    from audiototext.server.files import FileTranscriber
    from audiototext.wire._proto import transcription_pb2_grpc
    from support.speech import write_wav

    wav = write_wav(tmp_path / "s.wav", speech_like(2.0, seed=7), 16_000).read_bytes()

    async def main() -> tuple[str, tuple[grpc.StatusCode, str], list[dict[str, Any]]]:
        srv = GrpcServer(
            config(http_port=0),
            recognizer=FakeRecognizer(),
            transcribe_file=FileTranscriber("tiny.en", "auto"),
        )
        await srv.start()
        try:
            events = sse_events((await _pull(srv, REPO, "?precision=int8"))[2])
            assert events[-1][0] == "done", events[-1]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
                stub = transcription_pb2_grpc.TranscriptionStub(channel)
                reply = await stub.Transcribe(
                    pb.TranscribeRequest(audio=wav, model=REPO, beam_size=1)
                )
                try:
                    await stub.Transcribe(
                        pb.TranscribeRequest(audio=wav, model=REPO, task=pb.TRANSLATE)
                    )
                    refused = (grpc.StatusCode.OK, "")
                except grpc.aio.AioRpcError as exc:
                    refused = (exc.code(), exc.details() or "")
            health = _json((await http_get(srv, "/api/v1/health"))[2])["models"]
            return reply.language, refused, health
        finally:
            await srv.stop(2.0)

    language, refused, loaded = run(main(), 300)
    assert language in ("en", "")
    assert refused[0] == grpc.StatusCode.INVALID_ARGUMENT and "cannot translate" in refused[1]
    by_name = {m["name"]: m for m in loaded}
    assert by_name[REPO]["sessions"] == 0 and by_name[REPO]["state"] == "loaded"
