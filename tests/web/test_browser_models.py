"""The page's model selector in Chromium (driven by Playwright): choosing a model the server
has not downloaded pulls it (progress bar fed by Server-Sent Events), and the next session
runs on it.

The model is a random-weights Whisper served by the fake Hugging Face server under the
transformers repo of base.en; the pool's loader builds the engine double, so no speech is
decoded (the real-engine page test is test_browser.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from audiototext.models.cache import ModelCache
from audiototext.server.app import GrpcServer
from audiototext.server.engine import Engine
from audiototext.server.pool import ModelChoice
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run
from server.ws_harness import http_get
from support.fixture_cache import ROOT
from support.hf_server import FakeHub
from web.browser import NEEDS_CHROMIUM, chromium

pytestmark = [pytest.mark.slow]

ARTIFACTS = ROOT / ".cache" / "test-artifacts"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, random_whisper_dir: Path) -> Iterator[FakeHub]:
    with FakeHub() as h:
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        files = {p.name: p for p in random_whisper_dir.iterdir() if p.is_file()}
        h.add_repo("openai/whisper-base.en", files)
        yield h


def _fake_engine(choice: ModelChoice) -> Engine:
    engine = FakeRecognizer()
    engine.model = SimpleNamespace(path=choice.path)
    return engine


@NEEDS_CHROMIUM
def test_choosing_an_undownloaded_model_pulls_it_and_the_next_session_uses_it(
    hub: FakeHub,
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {"status": [], "progress": []}
        srv = GrpcServer(
            config(http_port=0), recognizer=FakeRecognizer(), engine_loader=_fake_engine
        )
        await srv.start()
        try:
            assert srv.http is not None
            async with chromium(url=f"http://127.0.0.1:{srv.http.port}/") as tab:
                page = tab.page
                options = "[...document.querySelectorAll('#model-select option')]"
                for _ in range(100):
                    names = await page.evaluate(f"{options}.map(o => o.value).join(' ')")
                    if names and "base.en" in str(names):
                        break
                    await asyncio.sleep(0.1)
                seen["languages"] = await page.evaluate(
                    "[...document.querySelectorAll('#language-select option')].length"
                )
                await page.evaluate(
                    "(() => { const s = document.getElementById('model-select');"
                    " s.value = 'base.en'; s.dispatchEvent(new Event('change')); })()"
                )
                for _ in range(1200):
                    status = str(
                        await page.evaluate("document.getElementById('pull-status').textContent")
                    )
                    if status and (not seen["status"] or seen["status"][-1] != status):
                        seen["status"].append(status)
                    seen["progress"].append(
                        await page.evaluate("document.getElementById('pull-progress').value")
                    )
                    if "ready" in status or "Could not" in status:
                        break
                    await asyncio.sleep(0.05)
                seen["selected"] = await page.evaluate(
                    "document.getElementById('model-select').value"
                )
                seen["disabled"] = await page.evaluate(
                    "document.getElementById('model-select').disabled"
                )
                await tab.screenshot(
                    ARTIFACTS / "page-model-pulled.png", width=1280, height=900, dark=False
                )
                await page.click("#start")
                for _ in range(200):
                    health = json.loads((await http_get(srv, "/api/v1/health"))[2])
                    loaded = {m["name"]: m for m in health["models"]}
                    if loaded.get("base.en", {}).get("sessions"):
                        seen["health"] = loaded
                        break
                    await asyncio.sleep(0.05)
                await page.click("#start")  # Stop
                await asyncio.sleep(0.5)
                seen["errors"] = list(tab.errors)
        finally:
            await srv.stop(2.0)
        return seen

    seen = run(main(), 300)
    statuses = seen["status"]
    assert statuses[-1] == "base.en is ready: the next session uses it.", statuses
    assert any(s.startswith("Downloading") for s in statuses), statuses
    assert any(s.startswith("Converting") for s in statuses), statuses
    assert any(isinstance(v, int | float) and 0 < v <= 100 for v in seen["progress"])
    assert seen["selected"] == "base.en" and seen["disabled"] is False
    assert "health" in seen, "no session ran on base.en"
    assert seen["health"]["base.en"]["state"] == "loaded"
    assert not seen["errors"], seen["errors"]


CHOOSE = """(name) => {
  const s = document.getElementById('model-select');
  s.value = name;
  s.dispatchEvent(new Event('change'));
}"""
STATUS = "document.getElementById('pull-status').textContent"


def _file_gets(hub: FakeHub) -> list[str]:
    """The file names whose bodies the pulls fetched from the Hub, in order."""
    return [
        r.path.split("/resolve/", 1)[1].split("/", 1)[1].split("?")[0]
        for r in hub.requests
        if r.method == "GET" and "/resolve/" in r.path
    ]


@NEEDS_CHROMIUM
def test_cancel_stops_a_pull_and_choosing_the_model_again_resumes_it(hub: FakeHub) -> None:
    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        srv = GrpcServer(
            config(http_port=0), recognizer=FakeRecognizer(), engine_loader=_fake_engine
        )
        await srv.start()
        try:
            assert srv.http is not None
            # Nothing running: a clear 404, before and after.
            seen["idle"] = await http_get(srv, "/api/v1/models/base.en/pull/cancel", method="POST")
            async with chromium(url=f"http://127.0.0.1:{srv.http.port}/") as tab:
                page = tab.page
                await page.wait_for_function(
                    "[...document.querySelectorAll('#model-select option')]"
                    ".some((o) => o.value === 'base.en')"
                )
                await page.evaluate(CHOOSE, "base.en")
                # Cancel once the pull reports progress (downloading or converting).
                await page.wait_for_function(
                    f"/^(Downloading|Converting)/.test({STATUS})", polling=50
                )
                seen["at_cancel"] = await page.evaluate(STATUS)
                await page.click("#pull-cancel")
                await page.wait_for_function(f"/cancelled|ready|Could not/.test({STATUS})")
                seen["cancelled"] = await page.evaluate(STATUS)
                seen["button_hidden"] = await page.evaluate(
                    "document.getElementById('pull-cancel').hidden"
                )
                seen["selected"] = await page.evaluate(
                    "document.getElementById('model-select').value"
                )
                seen["info"] = json.loads((await http_get(srv, "/api/v1/models/base.en"))[2])
                seen["staging"] = list(ModelCache().models_dir.glob(".staging-*"))
                seen["health"] = (await http_get(srv, "/api/v1/health"))[0]
                seen["first_gets"] = _file_gets(hub)
                hub.clear_requests()
                # Chosen again: the pull starts over from what the first one downloaded.
                await page.evaluate(CHOOSE, "base.en")
                await page.wait_for_function(f"/ready|Could not/.test({STATUS})", timeout=120_000)
                seen["second"] = await page.evaluate(STATUS)
                seen["second_gets"] = _file_gets(hub)
                seen["after"] = await http_get(
                    srv, "/api/v1/models/base.en/pull/cancel", method="POST"
                )
                seen["errors"] = list(tab.errors)
        finally:
            await srv.stop(2.0)
        return seen

    seen = run(main(), 300)
    status, _, body = seen["idle"]
    assert status == 404 and "no download of base.en is running" in body.decode(), body
    assert seen["after"][0] == 404
    assert seen["cancelled"] == (
        "Download of base.en cancelled. The files downloaded so far are kept: choosing it "
        "again resumes."
    ), seen
    assert seen["button_hidden"] is True and seen["selected"] != "base.en"
    # Not in the cache (the conversion under way was discarded, staging folder and all), and
    # the server goes on serving.
    assert seen["info"]["cached"] == [], seen["info"]
    assert seen["staging"] == []
    assert seen["health"] == 200
    # Resumed: a file fetched in full before the cancel is not fetched again (at most the
    # one under way at the cancel continues).
    first, second = seen["first_gets"], seen["second_gets"]
    assert first, "the first pull fetched nothing before the cancel"
    assert len(set(first) & set(second)) <= 1, (seen["at_cancel"], first, second)
    assert seen["second"] == "base.en is ready: the next session uses it.", seen["second"]
    assert not seen["errors"], seen["errors"]
