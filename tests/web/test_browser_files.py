"""The page's file box, its token over the WebSocket subprotocol, and ``/docs``, in a real
browser (headless Chromium driven by Playwright) against a server that wants a token.

The engine is the test double and the file transcriber decodes for real but recognises
nothing (fast, no model): this is about the page and the HTTP adapter, not about accuracy.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run, speech_like
from server.upload_harness import DecodingTranscriber, upload_server
from support.fixture_cache import ROOT
from support.speech import SAMPLE_RATE_HZ, write_wav
from web.browser import NEEDS_CHROMIUM, chromium, value_when_truthy

pytestmark = [
    pytest.mark.slow,
    NEEDS_CHROMIUM,
]
ARTIFACTS = ROOT / ".cache" / "test-artifacts"


def test_upload_a_file_and_stream_with_the_token_as_a_subprotocol(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "talk.wav", speech_like(3.0, seed=7), SAMPLE_RATE_HZ)
    files = DecodingTranscriber()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        cfg = config(http_port=0, token="s3cret")
        # The token in the tab's session storage before the page's scripts run (as the
        # settings field keeps it), so not even its first requests go without it.
        token = "sessionStorage.setItem('audiototext.token', 's3cret')"
        async with (
            upload_server(FakeRecognizer(), files, cfg) as srv,
            chromium(wav, init_scripts=[token]) as tab,
        ):
            assert srv.http is not None
            page = tab.page
            origin = f"http://127.0.0.1:{srv.http.port}"
            # The WebSocket transport: the one whose token rides in a subprotocol (WebRTC needs
            # an address other than loopback; tests/web/test_browser_webrtc.py covers it).
            await page.goto(f"{origin}/?transport=websocket")
            await value_when_truthy(
                page, "document.getElementById('health-text')?.innerText.includes('tiny.en')"
            )
            # The file box: choose a file as the picker would.
            await page.set_input_files("#upload-input", wav)
            out["finals"] = await value_when_truthy(
                page,
                "(() => { const t = document.getElementById('finals').innerText;"
                " return t.includes('General Kenobi') ? t : ''; })()",
            )
            out["status"] = await page.evaluate(
                "document.getElementById('upload-status').innerText"
            )
            await tab.screenshot(
                ARTIFACTS / "page-file-upload.png", width=1280, height=1000, dark=False
            )
            # The microphone stream, with the token offered as a subprotocol.
            await page.click("#start")
            out["transport"] = await value_when_truthy(
                page,
                "(() => { const t = document.getElementById('transport-text').innerText;"
                " return t === 'WebSocket · Connected' ? t : ''; })()",
            )
            await page.click("#start")  # Stop
            await asyncio.sleep(1.0)
            out["capture_error"] = await page.evaluate(
                "document.getElementById('capture-error').innerText"
            )
            # /docs renders without any other site.
            await page.goto(f"{origin}/docs")
            out["docs"] = await value_when_truthy(
                page, "document.querySelector('.swagger-ui .info .title')?.innerText || ''"
            )
            out["errors"] = list(tab.errors)
        return out

    out = run(main(), 120)
    assert "Hello there." in out["finals"] and "General Kenobi." in out["finals"]
    assert "talk.wav" in out["status"] and "transcribed" in out["status"], out["status"]
    assert len(files.requests) == 1
    assert out["transport"] == "WebSocket · Connected"
    assert not out["capture_error"], out["capture_error"]
    assert "audiototext" in out["docs"]
    assert not out["errors"], out["errors"]


def test_on_a_plain_http_address_the_page_says_why_the_microphone_is_blocked(
    tmp_path: Path,
) -> None:
    """Opened over http:// at an address other than localhost the page is not a secure
    context: it says why the microphone is blocked and what to do (the https address,
    --self-signed), Start is disabled, and a file can still be transcribed."""
    from audiototext.server.addresses import machine_addresses

    addresses = [a for a in machine_addresses() if ":" not in a]
    if not addresses:
        pytest.skip("this machine has no non-loopback IPv4 address")
    wav = write_wav(tmp_path / "talk.wav", speech_like(2.0, seed=8), SAMPLE_RATE_HZ)

    async def main() -> dict[str, Any]:
        cfg = config(http_port=0, http_host="0.0.0.0")
        async with upload_server(FakeRecognizer(), DecodingTranscriber(), cfg) as srv:
            assert srv.http is not None
            host = f"{addresses[0]}:{srv.http.port}"
            async with chromium(wav, url=f"http://{host}/") as tab:
                page = tab.page
                await value_when_truthy(
                    page, "document.getElementById('health-text')?.innerText.includes('tiny.en')"
                )
                out: dict[str, Any] = {"host": host}
                out["secure"] = await page.evaluate("window.isSecureContext")
                out["shown"] = await page.evaluate("!document.getElementById('insecure').hidden")
                out["text"] = await page.evaluate("document.getElementById('insecure').innerText")
                out["start_disabled"] = await page.evaluate(
                    "document.getElementById('start').disabled"
                )
                await page.set_input_files("#upload-input", wav)
                out["finals"] = await value_when_truthy(
                    page,
                    "(() => { const t = document.getElementById('finals').innerText;"
                    " return t.includes('General Kenobi') ? t : ''; })()",
                )
                await tab.screenshot(
                    ARTIFACTS / "page-insecure-origin.png", width=1280, height=1000, dark=False
                )
                out["errors"] = list(tab.errors)
            return out

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = run(main(), 120)
    assert out["secure"] is False and out["shown"] and out["start_disabled"]
    text = out["text"]
    assert "blocked" in text and "HTTPS" in text and "localhost" in text
    assert "--self-signed" in text and f"https://{out['host']}/" in text
    assert "General Kenobi." in out["finals"]
    assert not out["errors"], out["errors"]
