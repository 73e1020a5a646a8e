"""Local transcription in a real browser (headless Chromium, Playwright): the page keeps
tiny.en's browser files in the Cache API, the local-transcription worker loads them from
there into ONNX Runtime Web (two threads: the page is cross-origin isolated) and transcribes
an espeak-ng clip with the server engine's words.

The server's engine is the test double: the words come from the browser alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from audiototext.evaluation import wer
from server.fake_engine import FakeRecognizer
from server.grpc_harness import run
from server.ws_harness import http_server
from support.speech import espeak_available
from web.browser import NEEDS_CHROMIUM, chromium
from web.local_asr_reference import PAGE_BAD_MESSAGES, PAGE_TRANSCRIBE, audio_b64, clips

pytestmark = [
    pytest.mark.slow,
    NEEDS_CHROMIUM,
    pytest.mark.skipif(not espeak_available(), reason="needs espeak-ng"),
]


def test_the_worker_transcribes_from_the_kept_model(built_cache: Path, tmp_path: Path) -> None:
    sentence, audio = clips(tmp_path)[0]

    async def main() -> dict[str, Any]:
        async with (
            http_server(FakeRecognizer(), cache_root=built_cache) as srv,
            chromium() as tab,
        ):
            assert srv.http is not None
            page = tab.page
            await page.goto(f"http://127.0.0.1:{srv.http.port}/", wait_until="load")
            out: dict[str, Any] = await page.evaluate(
                PAGE_TRANSCRIBE, [[audio_b64(audio)], 2, True]
            )
            out["refusals"] = await page.evaluate(PAGE_BAD_MESSAGES)
            out["errors"] = list(tab.errors)
            return out

    out = run(main(), 600)
    print(out)
    assert out["isolated"] is True and out["ready"]["threads"] == 2, out["ready"]
    assert out["precision"] == "int8"
    (clip,) = out["runs"]
    text = " ".join(s["text"] for s in clip["segments"])
    assert wer(sentence, text) <= 0.2, text
    first, last = clip["segments"][0], clip["segments"][-1]
    assert 0 <= first["start"] < 1.0 and last["end"] <= clip["audioS"] + 0.05, clip
    assert all(s["tokens"] and s["utterance"] == 0 for s in clip["segments"])
    assert clip["info"]["audioS"] == pytest.approx(clip["audioS"])
    assert not out["errors"], out["errors"]
    messages = [(r["type"], r["fatal"], r["message"]) for r in out["refusals"]]
    assert messages == [
        ("error", False, "audio before the model is ready: wait for ready"),
        ("error", False, 'unknown message type "bogus"'),
        (
            "error",
            True,
            "init needs the model's listing (GET /api/v1/models/NAME/browser) or its files",
        ),
        ("error", True, "encoder.onnx of nope is not kept in this browser: keep the model first"),
        ("error", False, "audio samples must be a Float32Array of 16-kHz mono samples"),
    ], messages
