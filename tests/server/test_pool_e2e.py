"""Two models served at once, end to end: while a stream on tiny.en (the real engine) runs at
the pace of speech, a second model (random weights, from the fake Hub) is pulled through the
REST API, loaded into the pool and serves a stream of its own; tiny.en's finals still come."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from server.grpc_harness import run
from server.real_engine import SENTENCES, long_speech, settled, words
from server.ws_harness import (
    PCM16_CONFIG,
    WsRun,
    WsStreamer,
    http_get,
    http_server,
    sse_events,
    ws_url,
)
from support.hf_server import FakeHub
from support.speech import SpeechSynthesizer

if TYPE_CHECKING:
    from audiototext.streaming import StreamingRecognizer

pytestmark = [pytest.mark.slow, pytest.mark.realtime]

REPO = "lab/whisper-mini"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, random_whisper_dir: Path) -> Iterator[FakeHub]:
    with FakeHub() as h:
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        h.add_repo(REPO, {p.name: p for p in random_whisper_dir.iterdir() if p.is_file()})
        yield h


def test_a_pulled_second_model_serves_a_stream_while_tiny_en_keeps_running(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer, hub: FakeHub
) -> None:
    audio = long_speech(speech, 16.0)
    short = speech.speak("Please call Stella.").audio

    async def main() -> tuple[WsRun, WsRun, list[tuple[str, Any]], dict[str, Any]]:
        async with http_server(recognizer) as srv:
            await settled(recognizer)
            tiny = asyncio.create_task(WsStreamer(ws_url(srv)).run(audio, speed=1.0))
            await asyncio.sleep(1.0)  # tiny.en's stream is under way
            status, _, body = await http_get(
                srv, f"/api/v1/models/{REPO}/pull?precision=int8", method="POST"
            )
            assert status == 200
            pulled = sse_events(body)
            assert not tiny.done(), "the tiny.en stream ended before the second model came"
            other = await WsStreamer(ws_url(srv), {**PCM16_CONFIG, "model": REPO}).run(
                short, speed=None
            )
            health = json.loads((await http_get(srv, "/api/v1/health"))[2])
            return await tiny, other, pulled, health

    tiny, other, pulled, health = run(main(), 600)
    assert pulled[-1][0] == "done", pulled[-1]
    assert [s["model"] for s in other.started] == [REPO]
    assert other.close_codes == [1000]
    assert [s["model"] for s in tiny.started] == ["tiny.en"]
    assert tiny.close_codes == [1000]
    assert len(tiny.finals) >= 3
    heard = words(" ".join(f["text"] for f in tiny.finals))
    spoken = words(" ".join(SENTENCES))
    assert len(heard & spoken) >= len(spoken) // 2, sorted(heard)
    loaded = {m["name"]: m for m in health["models"]}
    assert set(loaded) == {"tiny.en", REPO}
    assert loaded[REPO]["state"] == "loaded" and loaded[REPO]["precision"] == "int8"
