"""Headless Chromium driven over the Chrome DevTools Protocol (no browser download, no driver).

Debian's ``chromium`` with a fake microphone that plays a WAV file; the page is driven with
``Runtime.evaluate`` and photographed with ``Page.captureScreenshot``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import websockets

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The closed network of CI refuses Chromium's background connections: keep them off.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--remote-debugging-port=0",
)


class Page:
    """One tab: call CDP methods, evaluate JavaScript, collect console errors."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self.pid = 0  # the browser's process (set by chromium())
        self._next = 0
        self.errors: list[str] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        my = self._next
        await self._ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg: dict[str, Any] = json.loads(await self._ws.recv())
            self._note(msg)
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result

    def _note(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            self.errors.append(json.dumps(params.get("exceptionDetails", {}))[:500])
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(json.dumps(params.get("args", []))[:500])
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.errors.append(params["entry"].get("text", "")[:500])

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, userGesture=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, path: Path, *, width: int, height: int, dark: bool) -> None:
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=width < 600,
        )
        scheme = "dark" if dark else "light"
        await self.call(
            "Emulation.setEmulatedMedia",
            features=[{"name": "prefers-color-scheme", "value": scheme}],
        )
        await asyncio.sleep(0.5)
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def chromium(
    microphone_wav: Path,
    *,
    netns: str | None = None,
    page_type: type[Page] = Page,
    domains: Sequence[str] = ("Runtime", "Log", "Page"),
) -> AsyncIterator[Page]:
    """A fresh headless Chromium whose microphone plays ``microphone_wav`` in a loop
    (``netns``: inside that network namespace, as the test's thread must be), its tab as a
    ``page_type`` with ``domains`` enabled."""
    assert CHROMIUM is not None
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    prefix = ["ip", "netns", "exec", netns] if netns else []
    proc = subprocess.Popen(
        [
            *prefix,
            CHROMIUM,
            *FLAGS,
            f"--use-file-for-fake-audio-capture={microphone_wav}",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        tabs = await asyncio.to_thread(_json, f"http://127.0.0.1:{port}/json")
        target = next(t for t in tabs if t["type"] == "page")
        async with websockets.connect(target["webSocketDebuggerUrl"], max_size=None) as ws:
            page = page_type(ws)
            page.pid = proc.pid
            for domain in domains:
                await page.call(f"{domain}.enable")
            yield page
    finally:
        proc.kill()
        proc.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)


def _json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)
