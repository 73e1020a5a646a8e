"""The page's layout and load in Chromium, with the fake engine (no real time).

At phone width the transcript's head (title, Copy, the downloads, Clear) takes two lines, not
three; nothing is wider than the screen; loading the page logs no console error; the model
list marks as current only the precision the server runs (the cache has tiny.en in two).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from audiototext.models.cache import ModelCache
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run
from server.ws_harness import http_server
from support.speech import silence, write_wav
from web.cdp import CHROMIUM, Page, chromium

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (./test.sh installs it)"
)

# Rows of the transcript head's controls (vertical centres more than 12 px apart start a new
# one), and how far the page is wider than the screen.
LAYOUT = """(() => {
  const head = document.querySelector('.transcript-panel .panel-head');
  const centres = [...head.querySelectorAll('h2, button, .group-label')]
    .map((el) => { const r = el.getBoundingClientRect(); return (r.top + r.bottom) / 2; })
    .sort((a, b) => a - b);
  const rows = centres.filter((c, k) => k === 0 || c - centres[k - 1] > 12).length;
  return {
    headRows: rows,
    headHeight: head.getBoundingClientRect().height,
    overflow: document.documentElement.scrollWidth - window.innerWidth,
  };
})()"""


async def _load(page: Page, url: str) -> None:
    await page.call("Page.navigate", url=url)
    for _ in range(100):
        text = await page.evaluate("document.getElementById('health-text')?.innerText || ''")
        models = await page.evaluate("document.querySelectorAll('#model-list li').length")
        if "Server ready" in str(text) and models:
            return
        await asyncio.sleep(0.1)


def test_phone_width_keeps_the_transcript_head_to_two_lines_and_load_logs_no_error(
    tmp_path: Path, built_cache: Path
) -> None:
    wav = write_wav(tmp_path / "quiet.wav", silence(1.0), 16_000)
    engine = FakeRecognizer()
    engine.model = SimpleNamespace(path=ModelCache(built_cache).find("tiny.en", "int8").path)

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        cfg = config(http_port=0, cache_root=built_cache)
        async with http_server(engine, cfg) as srv, chromium(wav) as page:
            assert srv.http is not None
            await page.call(
                "Emulation.setDeviceMetricsOverride",
                width=390,
                height=844,
                deviceScaleFactor=1,
                mobile=True,
            )
            await _load(page, f"http://127.0.0.1:{srv.http.port}/")
            await asyncio.sleep(0.5)
            seen["phone"] = await page.evaluate(LAYOUT)
            await page.call(
                "Emulation.setDeviceMetricsOverride",
                width=1280,
                height=800,
                deviceScaleFactor=1,
                mobile=False,
            )
            await asyncio.sleep(0.3)
            seen["desktop"] = await page.evaluate(LAYOUT)
            seen["current"] = await page.evaluate(
                "[...document.querySelectorAll('#model-list li[aria-current=true]')]"
                ".map((li) => li.innerText)"
            )
            seen["errors"] = list(page.errors)
        return seen

    seen = run(main(), 60)
    # Title with Copy and Clear, then the downloads: two rows (it was three, then the title).
    assert seen["phone"]["headRows"] <= 2, seen
    assert seen["phone"]["overflow"] <= 0, seen
    assert seen["desktop"]["headRows"] == 1, seen
    assert not seen["errors"], seen["errors"]
    # One entry, the int8 one that runs (the page marked both tiny.en entries by name).
    assert len(seen["current"]) == 1 and "int8" in seen["current"][0], seen["current"]
