"""Headless Debian Chromium driven by Playwright, its microphone playing a WAV file.

    async with chromium(wav, url="http://127.0.0.1:8080/") as tab:
        await tab.page.click("#start")
        ...
        assert not tab.errors, tab.errors

Playwright's node driver launches ``/usr/bin/chromium`` (``executable_path``; never
``playwright install``: CI has no internet) with a fresh profile, Chromium's fake media device
playing ``microphone`` in a loop, and every console error and uncaught exception of the page
collected in ``tab.errors``. The driver is a child of the calling thread, and Chromium a child
of the driver, so a test whose thread entered a network namespace (``support.netns``) gets a
browser inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
from playwright.async_api import CDPSession, ConsoleMessage, Error, Page, async_playwright

from support.speech import SAMPLE_RATE_HZ, SpeechSynthesizer, silence, write_wav

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NEEDS_CHROMIUM = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (./test.sh installs it)"
)
# Real-time audio into the real engine, and a browser: alone on the machine.
REALTIME_BROWSER = [pytest.mark.slow, pytest.mark.realtime, NEEDS_CHROMIUM]
# The closed network of CI refuses Chromium's background connections: keep them off.
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
)
BROWSER_RATE_HZ = 48_000  # what Chromium's fake capture is happiest with
PHONE_WIDTH_PX = 600  # narrower screens are emulated as a phone (mobile viewport)


def microphone_wav(
    synth: SpeechSynthesizer,
    path: Path,
    sentences: Sequence[str],
    *,
    gap_s: float = 1.5,
    tail_s: float = 0.0,
    lead_s: float = 0.5,
) -> Path:
    """The fake microphone's file: ``lead_s`` of silence, then each sentence followed by
    ``gap_s`` of silence, then ``tail_s`` more (Chromium loops the file), at 48 kHz."""
    parts = [silence(lead_s)]
    for text in sentences:
        parts += [synth.speak(text).audio, silence(gap_s)]
    parts.append(silence(tail_s))
    audio = soxr.resample(np.concatenate(parts), SAMPLE_RATE_HZ, BROWSER_RATE_HZ)
    return write_wav(path, np.clip(audio, -1.0, 1.0), BROWSER_RATE_HZ)


@dataclass
class Tab:
    """The browser's one tab, what went wrong in it, and the browser's process."""

    page: Page
    profile: Path
    errors: list[str] = field(default_factory=list)
    _cdp: CDPSession | None = None

    @property
    def pid(self) -> int:
        """The browser process (its renderers, GPU and utility processes are its children)."""
        for proc in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                args = (proc / "cmdline").read_bytes().split(b"\0")
                if f"--user-data-dir={self.profile}".encode() in args and not any(
                    a.startswith(b"--type=") for a in args
                ):
                    return int(proc.name)
        raise RuntimeError(f"no Chromium process with the profile {self.profile}")

    async def cdp(self) -> CDPSession:
        """A DevTools session on the tab, for what Playwright does not say (metrics, bytes)."""
        if self._cdp is None:
            self._cdp = await self.page.context.new_cdp_session(self.page)
        return self._cdp

    async def text(self, element_id: str) -> str:
        """The element's innerText; empty while the page is still loading."""
        value = await self.page.evaluate(f"document.getElementById({element_id!r})?.innerText")
        return str(value or "")

    async def screen(self, width: int, height: int, *, dark: bool | None = None) -> None:
        """Emulate a screen (below ``PHONE_WIDTH_PX``: a phone's) and the colour scheme."""
        # Playwright's viewport (its screenshots clip to it), then the same metrics with the
        # phone flag, which Playwright sets only per context.
        await self.page.set_viewport_size({"width": width, "height": height})
        cdp = await self.cdp()
        await cdp.send(
            "Emulation.setDeviceMetricsOverride",
            {
                "width": width,
                "height": height,
                "deviceScaleFactor": 1,
                "mobile": width < PHONE_WIDTH_PX,
            },
        )
        if dark is not None:
            await self.page.emulate_media(color_scheme="dark" if dark else "light")

    async def screenshot(self, path: Path, *, width: int, height: int, dark: bool) -> None:
        await self.screen(width, height, dark=dark)
        await self.page.wait_for_timeout(500)  # transitions and a repaint
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=path)


@contextlib.asynccontextmanager
async def chromium(
    microphone: Path | None = None,
    *,
    url: str | None = None,
    init_scripts: Sequence[str] = (),
) -> AsyncIterator[Tab]:
    """A fresh headless Chromium whose microphone plays ``microphone`` (default: a second of
    silence) in a loop; its tab, having run ``init_scripts`` before each document's own
    scripts and (``url``) opened ``url``."""
    if CHROMIUM is None:
        raise RuntimeError("needs Debian's chromium (./test.sh installs it)")
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    if microphone is None:
        microphone = write_wav(profile / "silence.wav", silence(1.0), SAMPLE_RATE_HZ)
    try:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=[*FLAGS, f"--use-file-for-fake-audio-capture={microphone}"],
                accept_downloads=True,
            )
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                tab = Tab(page, profile)
                page.on("console", lambda m: _note_console(tab, m))
                page.on("pageerror", lambda e: _note_exception(tab, e))
                for script in init_scripts:
                    await page.add_init_script(script)
                if url is not None:
                    await page.goto(url)
                yield tab
            finally:
                await context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _note_console(tab: Tab, message: ConsoleMessage) -> None:
    if message.type == "error":
        where = message.location
        tab.errors.append(f"{message.text} ({where.get('url')}:{where.get('lineNumber')})"[:500])


def _note_exception(tab: Tab, error: Error) -> None:
    tab.errors.append(f"{error.name}: {error.message}\n{error.stack}"[:500])


async def state_until(
    page: Page, script: str, predicate: Callable[[dict[str, Any]], Any], tries: int = 300
) -> dict[str, Any]:
    """Evaluate ``script`` (an expression giving an object) every 0.1 s until ``predicate``
    holds for it; bounded by tries, not by a clock threshold."""
    state: dict[str, Any] = {}
    for _ in range(tries):
        state = await page.evaluate(script)
        if predicate(state):
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"the page never got there: {state}")


async def value_when_truthy(page: Page, expression: str, timeout_s: float = 20.0) -> Any:
    """Evaluate ``expression`` every 0.1 s until it is truthy, at most ``timeout_s`` worth of
    tries (a bound, not a threshold); the last value either way, for the test to assert."""
    value: Any = None
    for _ in range(int(timeout_s * 10)):
        value = await page.evaluate(expression)
        if value:
            return value
        await asyncio.sleep(0.1)
    return value


async def open_when_ready(page: Page, port: int, model: str = "tiny.en") -> None:
    """Open the page served on ``port`` and wait until its health line names ``model`` (the
    server is up and the page has read it), at most 30 s."""
    await page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
    shown = await value_when_truthy(
        page, f"/{model}/.test(document.getElementById('health-text').innerText)", 30
    )
    assert shown, f"the page never showed {model} as ready"
