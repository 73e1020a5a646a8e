"""The History panel and the alerts banner in Chromium (Playwright).

History: Chromium's microphone speaks into the real tiny.en engine of a server that keeps its
history in SQLite; after Stop the session is in the History panel, a word is searched from
the keyboard, the SRT export is a valid subtitle file of what was said, and the session is
deleted after the confirmation dialog (gone from the panel and from the REST API).

Alerts: a server whose free-memory threshold no machine meets raises ``memory_low`` at once;
the banner shows it with its severity, then shows it cleared once the threshold is lowered.

Screenshots of both panels at 1280 and 390 px, light and dark, go to .cache/test-artifacts/.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from audiototext.server.alerts import AlertSettings
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run
from server.real_engine import words
from server.ws_harness import http_get, http_server
from support.fixture_cache import ROOT
from support.speech import SpeechSynthesizer
from web.browser import NEEDS_CHROMIUM, Tab, chromium, microphone_wav
from web.test_browser import parse_srt

if TYPE_CHECKING:
    from audiototext.streaming import StreamingRecognizer

pytestmark = NEEDS_CHROMIUM

SENTENCES = ("Please call Stella and ask her to bring these things.", "We will meet at noon.")
EXPECTED = {"call", "bring", "things", "meet", "noon"}  # what tiny.en gets right here
ARTIFACTS = ROOT / ".cache" / "test-artifacts"
SCREENS = ((1280, 1100, "desktop"), (390, 2600, "phone"))


async def _until(what: str, probe: Callable[[], Awaitable[Any]], tries: int = 300) -> Any:
    """``probe()`` until it is truthy (bounded by tries, not by a clock threshold)."""
    value = None
    for _ in range(tries):
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: never happened (last: {value!r})")


async def _screens(tab: Tab, name: str, selector: str) -> None:
    for width, height, kind in SCREENS:
        for dark in (False, True):
            shade = "dark" if dark else "light"
            # The viewport itself (an element screenshot keeps Playwright's, not an emulated one).
            await tab.page.set_viewport_size({"width": width, "height": height})
            await tab.page.emulate_media(color_scheme="dark" if dark else "light")
            await tab.page.locator(selector).scroll_into_view_if_needed()
            await tab.page.wait_for_timeout(300)
            path = ARTIFACTS / f"{name}-{kind}-{shade}.png"
            await tab.page.locator(selector).screenshot(path=path)


@pytest.mark.slow
@pytest.mark.realtime
def test_a_spoken_session_is_found_searched_exported_and_deleted_in_the_history_panel(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer, tmp_path: Path
) -> None:
    wav = microphone_wav(speech, tmp_path / "microphone.wav", SENTENCES)
    db = tmp_path / "history.sqlite3"

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with http_server(recognizer, history_path=db) as srv:
            assert srv.http is not None
            url = f"http://127.0.0.1:{srv.http.port}/?transport=websocket"
            async with chromium(wav, url=url) as tab:
                page = tab.page
                await _until("the server is ready", lambda: tab.text("health-text"))
                await page.click("#start")
                await _until(
                    "the spoken words", lambda: _has(tab.text("finals"), EXPECTED), tries=600
                )
                await page.click("#start")  # Stop
                idle = "document.getElementById('start').dataset.recording === 'false'"
                await _until("the stream ended", lambda: page.evaluate(idle))
                seen["finals"] = await tab.text("finals")
                items = "#history-list li[data-id]"
                await _until("the session listed", lambda: page.locator(items).count())
                seen["note"] = await tab.text("history-note")
                seen["ids"] = await page.eval_on_selector_all(
                    items, "els => els.map(e => e.dataset.id)"
                )

                # Search from the keyboard: type in the field, Enter submits.
                await page.focus("#history-q")
                await page.keyboard.type("bring")
                await page.keyboard.press("Enter")
                await _until("a hit", lambda: page.locator("#history-list mark").count())
                seen["marks"] = await page.eval_on_selector_all(
                    "#history-list mark", "els => els.map(e => e.textContent)"
                )
                seen["status"] = await tab.text("history-status")

                # Open it with the keyboard: Tab to the hit, Enter.
                await page.focus("#history-list li[data-id] button")
                await page.keyboard.press("Enter")
                await _until("the transcript open", lambda: page.is_visible("#history-detail"))
                seen["focused"] = await page.evaluate("document.activeElement.id")
                seen["segments"] = await tab.text("history-segments")
                await _screens(tab, "history-panel", ".history")
                await tab.page.set_viewport_size({"width": 1280, "height": 1100})
                await tab.page.emulate_media(color_scheme="light")

                async with page.expect_download() as download:
                    await page.click("[data-history-format=srt]")
                saved = tmp_path / (await download.value).suggested_filename
                await (await download.value).save_as(saved)
                seen["srt_name"] = saved.name
                seen["srt"] = saved.read_text(encoding="utf-8")

                # Delete: the dialog asks; Cancel keeps it, Delete removes it.
                await page.click("#history-delete")
                await _until("the dialog", lambda: page.is_visible("#history-confirm"))
                seen["dialog"] = await tab.text("history-confirm")
                await page.screenshot(path=ARTIFACTS / "history-confirm-desktop-light.png")
                await page.keyboard.press("Escape")  # cancel
                await _until("the dialog closed", lambda: _not(page.is_visible("#history-confirm")))
                assert await page.is_visible("#history-detail")
                await page.click("#history-delete")
                await page.click("#history-confirm-delete")
                # The search is shown again, now without the deleted session.
                await _until("the hit gone", lambda: _not_count(page.locator(items).count()))
                seen["after_list"] = await tab.text("history-list")
                seen["after_status"] = await tab.text("history-status")
                status, _, body = await http_get(srv, f"/api/v1/history/{seen['ids'][0]}")
                seen["rest_after"] = (status, json.loads(body))
                seen["errors"] = list(tab.errors)
        return seen

    seen = run(main(), 240)
    assert words(seen["finals"]) >= EXPECTED, seen["finals"]
    assert len(seen["ids"]) == 1 and "history file" in seen["note"], seen
    assert seen["marks"] and {m.lower() for m in seen["marks"]} == {"bring"}, seen["marks"]
    assert "found" in seen["status"], seen["status"]
    assert seen["focused"] == "history-detail"  # focus moved to what was opened
    assert words(seen["segments"]) >= EXPECTED, seen["segments"]
    assert seen["srt_name"].endswith(".srt") and seen["srt_name"].startswith("transcript-")
    cues = parse_srt(seen["srt"])
    assert [c[0] for c in cues] == list(range(1, len(cues) + 1)), seen["srt"]
    assert all(start <= end for _, start, end, _ in cues), seen["srt"]
    assert words(" ".join(c[3] for c in cues)) >= EXPECTED, seen["srt"]
    assert "removed from the server" in seen["dialog"], seen["dialog"]
    assert seen["after_status"] == "Transcript deleted."
    assert "No transcript holds “bring”" in seen["after_list"], seen["after_list"]
    assert seen["rest_after"][0] == 404, seen["rest_after"]
    assert not seen["errors"], seen["errors"]


def test_an_alert_is_shown_raised_then_cleared() -> None:
    # No machine has 2^30 MB free: memory_low is raised at the server's first check.
    settings = AlertSettings(min_free_memory_mb=1 << 30, raise_after_s=0, clear_after_s=0)

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with http_server(FakeRecognizer(), config(http_port=0, alerts=settings)) as srv:
            assert srv.http is not None and srv.alerts is not None
            async with chromium(url=f"http://127.0.0.1:{srv.http.port}/") as tab:
                page = tab.page
                raised = "#alert-list li[data-name=memory_low][data-state=raised]"
                await _until("the alert shown", lambda: page.locator(raised).count())
                seen["raised"] = await page.inner_text(raised)
                seen["severity"] = await page.get_attribute(raised, "data-severity")
                await _screens(tab, "alerts-banner", "#alerts")
                await tab.page.emulate_media(color_scheme="light")
                for width, _height, kind in SCREENS:  # where the panels sit on the whole page
                    await tab.page.set_viewport_size({"width": width, "height": 900})
                    path = ARTIFACTS / f"panels-page-{kind}-light.png"
                    await tab.page.screenshot(path=path, full_page=True)
                await tab.page.set_viewport_size({"width": 1280, "height": 1100})
                await tab.page.emulate_media(color_scheme="light")
                # The operator lowers the threshold: the next check clears it.
                srv.alerts.settings = AlertSettings(min_free_memory_mb=0, clear_after_s=0)
                cleared = "#alert-list li[data-name=memory_low][data-state=cleared]"
                await _until("the alert cleared", lambda: page.locator(cleared).count())
                seen["cleared"] = await page.inner_text(cleared)
                await page.click("#alerts-dismiss")
                seen["hidden"] = await page.is_hidden("#alerts")
                seen["errors"] = list(tab.errors)
        return seen

    seen = run(main(), 90)
    assert seen["severity"] == "warning"
    assert "--alert-min-free-memory-mb" in seen["raised"] and "raised" in seen["raised"]
    assert seen["cleared"].startswith("CLEARED") and ", cleared " in seen["cleared"], seen[
        "cleared"
    ]
    assert seen["hidden"] is True
    assert not seen["errors"], seen["errors"]


async def _has(text: Awaitable[str], expected: set[str]) -> bool:
    return words(await text) >= expected


async def _not(value: Awaitable[bool]) -> bool:
    return not await value


async def _not_count(count: Awaitable[int]) -> bool:
    return await count == 0


def test_an_alert_arrives_with_the_stream_events_when_system_is_unreachable() -> None:
    """/api/v1/system refused to the page: the banner fills from the WebSocket's metrics."""
    settings = AlertSettings(min_free_memory_mb=1 << 30, raise_after_s=0)

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with http_server(FakeRecognizer(), config(http_port=0, alerts=settings)) as srv:
            assert srv.http is not None
            async with chromium() as tab:
                page = tab.page
                await page.route("**/api/v1/system", lambda route: route.abort())
                await page.goto(f"http://127.0.0.1:{srv.http.port}/?transport=websocket")
                await _until("the server is ready", lambda: tab.text("health-text"))
                seen["before"] = await page.locator("#alert-list li").count()
                await page.click("#start")
                raised = "#alert-list li[data-name=memory_low][data-state=raised]"
                await _until("the alert from the stream", lambda: page.locator(raised).count())
                seen["raised"] = await page.inner_text(raised)
                seen["transport"] = await tab.text("transport-text")
                await page.click("#start")  # Stop
        return seen

    seen = run(main(), 90)
    assert seen["before"] == 0  # nothing from /api/v1/system: it was refused
    assert "--alert-min-free-memory-mb" in seen["raised"], seen
    assert "WebSocket" in seen["transport"], seen
