"""The page's layout and load in Chromium (Playwright), with the fake engine (no real time).

At phone width the transcript's head (title, Copy, the downloads, Clear) takes two lines, not
three; nothing is wider than the screen; loading the page logs no console error; the model
list marks as current only the precision the server runs (the cache has tiny.en in two).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from audiototext.models.cache import ModelCache
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run
from server.ws_harness import http_server
from web.browser import NEEDS_CHROMIUM, Tab, chromium

pytestmark = NEEDS_CHROMIUM

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


async def _load(tab: Tab, url: str) -> None:
    await tab.page.goto(url)
    for _ in range(100):
        text = await tab.text("health-text")
        models = await tab.page.evaluate("document.querySelectorAll('#model-list li').length")
        if "Server ready" in text and models:
            return
        await asyncio.sleep(0.1)


def test_phone_width_keeps_the_transcript_head_to_two_lines_and_load_logs_no_error(
    built_cache: Path,
) -> None:
    engine = FakeRecognizer()
    engine.model = SimpleNamespace(path=ModelCache(built_cache).find("tiny.en", "int8").path)

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        cfg = config(http_port=0, cache_root=built_cache)
        async with http_server(engine, cfg) as srv, chromium() as tab:
            assert srv.http is not None
            await tab.screen(390, 844)
            await _load(tab, f"http://127.0.0.1:{srv.http.port}/")
            await asyncio.sleep(0.5)
            seen["phone"] = await tab.page.evaluate(LAYOUT)
            await tab.screen(1280, 800)
            await asyncio.sleep(0.3)
            seen["desktop"] = await tab.page.evaluate(LAYOUT)
            seen["current"] = await tab.page.evaluate(
                "[...document.querySelectorAll('#model-list li[aria-current=true]')]"
                ".map((li) => li.innerText)"
            )
            seen["errors"] = list(tab.errors)
        return seen

    seen = run(main(), 60)
    # Title with Copy and Clear, then the downloads: two rows (it was three, then the title).
    assert seen["phone"]["headRows"] <= 2, seen
    assert seen["phone"]["overflow"] <= 0, seen
    assert seen["desktop"]["headRows"] == 1, seen
    assert not seen["errors"], seen["errors"]
    # One entry, the int8 one that runs (the page marked both tiny.en entries by name).
    assert len(seen["current"]) == 1 and "int8" in seen["current"][0], seen["current"]
