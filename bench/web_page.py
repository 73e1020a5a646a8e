"""The page in Chromium: weight on first load, Start → first partial, CPU idle and transcribing.

    PYTHONPATH=src .venv/bin/python bench/web_page.py [--trials 5] [--shots DIR]

One in-process server (gRPC and HTTP on 127.0.0.1, tiny.en int8 from ``--cache``, by default
the test fixtures' converted model) and Debian's headless Chromium over the DevTools protocol
(``tests/web/cdp.py``), whose fake microphone loops espeak-ng speech (0.5 s of silence, then
sentences with 1.5 s between them). Printed:

* **Weight**: every response of a first load with a fresh profile (no cache), in bytes over
  the wire (CDP ``Network.loadingFinished``: headers and body) and body bytes, per kind of
  file; the API calls the page makes on load apart; then what Start adds (the audio worklet).
  The server does not compress: body bytes are the files' sizes.
* **Start → first partial**, over ``--trials`` fresh page loads: from the click on Start to
  the first binary WebSocket frame (the first audio chunk), and from that chunk to the first
  partial text in the DOM (a MutationObserver; painted one frame later at most). The same
  figure over the WebSocket from Python is in ``bench/web_latency.py``.
* **CPU**, ``--cpu-s`` seconds idle after load and as long transcribing: the renderer's main
  thread (CDP ``Performance.getMetrics``: TaskDuration, ScriptDuration, Layout and style) per
  second of wall, and each Chromium process's CPU per second from ``/proc`` (renderer, GPU
  process, audio and network services, browser).
* Console errors and exceptions seen (CDP Runtime and Log events), and screenshots at 1280×800
  and 390×844, light and dark, to ``--shots``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import wave
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from support.speech import SpeechSynthesizer  # noqa: E402
from web.cdp import CHROMIUM, Page, chromium  # noqa: E402

SENTENCES = (
    "Please call Stella and ask her to bring these things.",
    "We will meet at the train station tomorrow morning.",
    "She sells sea shells by the sea shore.",
)
BROWSER_RATE_HZ = 48_000
WEB = ROOT / "src" / "audiototext" / "web"

# Installed before the page's own scripts: when the first audio chunk leaves, and when the
# first partial and final text appear in the DOM (performance.now(), ms).
PROBE = """
window.__bench = {click: null, firstChunk: null, firstPartial: null, firstFinal: null};
(() => {
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (window.__bench.firstChunk === null && typeof data !== "string") {
      window.__bench.firstChunk = performance.now();
    }
    return send.call(this, data);
  };
  const watch = () => {
    const b = window.__bench;
    const partials = document.getElementById("partials");
    const finals = document.getElementById("finals");
    new MutationObserver(() => {
      if (b.click === null) return;
      const now = performance.now();
      if (b.firstPartial === null && partials.textContent.trim()) b.firstPartial = now;
      if (b.firstFinal === null && finals.textContent.trim()) b.firstFinal = now;
    }).observe(document.body, {subtree: true, childList: true, characterData: true});
  };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", watch);
  } else {
    watch();
  }
})();
"""


# --no-webgl: the page's waveform falls back to its 2D canvas renderer.
NO_WEBGL = """
(() => {
  const get = HTMLCanvasElement.prototype.getContext;
  HTMLCanvasElement.prototype.getContext = function (kind, ...rest) {
    return /webgl/.test(kind) ? null : get.call(this, kind, ...rest);
  };
})();
"""

# Which WebGL the browser gives (headless without a GPU: a software one, SwiftShader), and
# whether it gives one to a page that refuses a software one (as the waveform does).
GL_RENDERER = """(() => {
  const gl = document.createElement('canvas').getContext('webgl');
  if (!gl) return 'none';
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  const name = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
  const hard = document.createElement('canvas')
    .getContext('webgl', {failIfMajorPerformanceCaveat: true});
  return name + (hard ? '; also without a performance caveat' : '; refused without a caveat');
})()"""


class RecordingPage(Page):
    """A tab that also keeps the protocol's events (network responses)."""

    def __init__(self, ws: Any) -> None:
        super().__init__(ws)
        self.events: list[dict[str, Any]] = []

    def _note(self, msg: dict[str, Any]) -> None:
        super()._note(msg)
        if "method" in msg and msg["method"].startswith("Network."):
            self.events.append(msg)

    async def drain(self) -> None:
        """Read the events queued so far (they are read while waiting for a call's answer)."""
        await self.call("Runtime.evaluate", expression="0")


@dataclass
class Browser:
    page: RecordingPage
    pid: int
    errors: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def browser(microphone_wav: Path, *, webgl: bool = True) -> AsyncIterator[Browser]:
    """``web.cdp.chromium`` with the network events kept and the browser's pid at hand."""
    domains = ("Runtime", "Log", "Page", "Network", "Performance")
    async with chromium(microphone_wav, page_type=RecordingPage, domains=domains) as page:
        assert isinstance(page, RecordingPage)
        await page.call("Network.setCacheDisabled", cacheDisabled=True)
        await page.call("Page.addScriptToEvaluateOnNewDocument", source=PROBE)
        if not webgl:
            await page.call("Page.addScriptToEvaluateOnNewDocument", source=NO_WEBGL)
        yield Browser(page, page.pid)


# ---- processes -----------------------------------------------------------------------------


def process_tree(root: int) -> dict[int, str]:
    """pid → kind (browser, renderer, gpu-process, audio, network, zygote, …) under ``root``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    kinds: dict[int, str] = {}
    for pid in tree:
        try:
            # Zygote-forked children rewrite their title: one string, arguments spaced.
            args = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        text = args.decode(errors="replace")
        kind = "browser"
        if m := re.search(r"--type=(\S+)", text):
            kind = m.group(1)
        if m := re.search(r"--utility-sub-type=(\S+)", text):
            kind = {
                "audio.mojom.AudioService": "audio",
                "network.mojom.NetworkService": "network",
                "storage.mojom.StorageService": "storage",
            }.get(m.group(1), m.group(1).split(".")[0])
        kinds[pid] = kind
    return kinds


def cpu_by_pid(root: int) -> dict[int, tuple[str, float]]:
    """pid → (kind, CPU seconds so far, user + system) of each process under ``root``."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    for pid, kind in process_tree(root).items():
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (Path("/proc") / str(pid) / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            out[pid] = (kind, (int(fields[11]) + int(fields[12])) / tick)
    return out


async def main_thread_metrics(page: Page) -> dict[str, float]:
    got = await page.call("Performance.getMetrics")
    return {m["name"]: float(m["value"]) for m in got["metrics"]}


async def cpu_window(b: Browser, seconds: float) -> dict[str, float]:
    """Per second of wall over ``seconds``: main-thread durations and processes' CPU."""
    m0, c0, t0 = await main_thread_metrics(b.page), cpu_by_pid(b.pid), time.monotonic()
    await asyncio.sleep(seconds)
    m1, c1, t1 = await main_thread_metrics(b.page), cpu_by_pid(b.pid), time.monotonic()
    wall = t1 - t0
    out = {
        f"main:{k}": (m1.get(k, 0.0) - m0.get(k, 0.0)) / wall
        for k in ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")
    }
    for pid, (kind, cpu) in c1.items():  # a process that started meanwhile: all its CPU
        key = f"proc:{kind}"
        out[key] = out.get(key, 0.0) + (cpu - c0.get(pid, (kind, 0.0))[1]) / wall
    out["proc:all"] = sum(v for k, v in out.items() if k.startswith("proc:"))
    return out


# ---- the page ------------------------------------------------------------------------------


def microphone_wav(synth: SpeechSynthesizer, path: Path) -> Path:
    import soxr

    parts: list[Any] = [np.zeros(8000, np.float32)]
    for text in SENTENCES:
        parts += [synth.speak(text).audio, np.zeros(24000, np.float32)]
    audio = soxr.resample(np.concatenate(parts), 16_000, BROWSER_RATE_HZ)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(BROWSER_RATE_HZ)
        out.writeframes(pcm.tobytes())
    return path


async def open_page(b: Browser, url: str) -> None:
    await b.page.call("Page.navigate", url=url)
    for _ in range(200):
        text = await b.page.evaluate("document.getElementById('health-text')?.innerText || ''")
        models = await b.page.evaluate("document.querySelectorAll('#model-list li').length")
        if "tiny.en" in str(text) and models:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the page did not show the server's health and models within 10 s")


def kind_of(url: str, mime: str) -> str:
    path = url.split("?", 1)[0]
    if "/api/" in path:
        return "api " + path.split("/api/v1", 1)[-1]
    for ext, kind in ((".js", "js"), (".css", "css"), (".json", "json (i18n)"), (".svg", "svg")):
        if path.endswith(ext):
            return kind
    return "html" if "html" in mime or path.endswith("/") else mime or "other"


def weights(events: list[dict[str, Any]]) -> list[tuple[str, str, int, int]]:
    """(kind, url, wire bytes, body bytes) of each finished response among ``events``."""
    urls: dict[str, tuple[str, str]] = {}
    body: dict[str, int] = defaultdict(int)
    rows: list[tuple[str, str, int, int]] = []
    for e in events:
        p = e["params"]
        if e["method"] == "Network.responseReceived":
            urls[p["requestId"]] = (p["response"]["url"], p["response"].get("mimeType", ""))
        elif e["method"] == "Network.dataReceived":
            body[p["requestId"]] += int(p.get("dataLength", 0))
        elif e["method"] == "Network.loadingFinished" and p["requestId"] in urls:
            url, mime = urls[p["requestId"]]
            rows.append(
                (kind_of(url, mime), url, int(p["encodedDataLength"]), body[p["requestId"]])
            )
    return rows


def print_weights(title: str, rows: list[tuple[str, str, int, int]]) -> None:
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for kind, _, wire, size in rows:
        k = by_kind[kind]
        k[0] += 1
        k[1] += wire
        k[2] += size
    print(title)
    for kind, (n, wire, size) in sorted(by_kind.items(), key=lambda kv: -kv[1][1]):
        print(f"  {kind:<22} {n:>3} files {wire / 1024:>8.1f} KB wire {size / 1024:>8.1f} KB body")
    wire = sum(r[2] for r in rows)
    size = sum(r[3] for r in rows)
    print(
        f"  {'total':<22} {len(rows):>3} files {wire / 1024:>8.1f} KB wire "
        f"{size / 1024:>8.1f} KB body"
    )


async def start_to_partial(b: Browser, url: str) -> dict[str, float]:
    """One fresh load: Start → first chunk → first partial (ms, the page's clock)."""
    await open_page(b, url)
    await b.page.evaluate(
        "window.__bench.click = performance.now(); document.getElementById('start').click()"
    )
    marks: dict[str, Any] = {}
    for _ in range(300):
        await asyncio.sleep(0.05)
        marks = await b.page.evaluate("window.__bench")
        if marks.get("firstPartial") is not None:
            break
    await b.page.evaluate("document.getElementById('start').click()")  # Stop
    for _ in range(200):
        await asyncio.sleep(0.05)
        if await b.page.evaluate("document.getElementById('start').dataset.recording") == "false":
            break
    click, chunk, partial = marks.get("click"), marks.get("firstChunk"), marks.get("firstPartial")
    nan = float("nan")
    return {
        "click_to_chunk_ms": chunk - click if chunk is not None else nan,
        "chunk_to_partial_ms": partial - chunk
        if partial is not None and chunk is not None
        else nan,
        "click_to_partial_ms": partial - click if partial is not None else nan,
    }


def default_cache() -> Path:
    from support.model_fixtures import tiny_en_cache

    return tiny_en_cache()


async def main_async(args: argparse.Namespace) -> None:
    from audiototext._blas import limit_blas_threads
    from audiototext.server.app import GrpcServer, ServerConfig

    limit_blas_threads(1)
    speech_dir = Path("/tmp/audiototext-bench-espeak")
    speech_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-web-page-"))
    wav = microphone_wav(SpeechSynthesizer(speech_dir), folder / "microphone.wav")
    cache = args.cache or default_cache()
    server = GrpcServer(ServerConfig(port=0, http_port=0, precision="int8", cache_root=cache))
    await server.start()
    assert server.http is not None
    url = f"http://127.0.0.1:{server.http.port}/"
    one, five, _ = os.getloadavg()
    print(
        f"server {url} (tiny.en int8 from {cache}); Chromium {CHROMIUM}; load {one:.2f} {five:.2f}"
    )
    try:
        async with browser(wav, webgl=not args.no_webgl) as b:
            # -- weight of a first load, and what Start adds
            await open_page(b, url)
            await asyncio.sleep(1.0)
            await b.page.drain()
            rows = weights(b.page.events)
            seen: set[str] = set()
            first: list[tuple[str, str, int, int]] = []
            for r in rows:
                if r[1] not in seen:  # the health and system polls repeat
                    seen.add(r[1])
                    first.append(r)
            print_weights(
                "first load, page files:", [r for r in first if not r[0].startswith("api")]
            )
            print_weights("first load, API calls:", [r for r in first if r[0].startswith("api")])
            print(f"console errors on load: {len(b.page.errors)}")
            print(f"WebGL for the waveform: {await b.page.evaluate(GL_RENDERER)}")
            for e in b.page.errors:
                print(f"  {e}")
            # -- CPU idle (the page's polls and nothing else)
            await asyncio.sleep(2.0)
            idle = await cpu_window(b, args.cpu_s)
            # -- CPU transcribing
            b.page.events.clear()
            await b.page.evaluate("document.getElementById('start').click()")
            await asyncio.sleep(3.0)
            await b.page.drain()
            start_rows = [r for r in weights(b.page.events) if not r[0].startswith("api")]
            if start_rows:
                print_weights("Start adds:", start_rows)
            else:  # the audio worklet's fetches do not show among the page's Network events
                worklet = [WEB / "js" / "capture-worklet.js", WEB / "js" / "resampler.js"]
                size = sum(f.stat().st_size for f in worklet)
                print(
                    f"Start adds the audio worklet ({', '.join(f.name for f in worklet)}): "
                    f"{size / 1024:.1f} KB on disk (its fetches are not among the page's "
                    "Network events)"
                )
            busy = await cpu_window(b, args.cpu_s)
            finals = await b.page.evaluate("document.getElementById('finals').innerText")
            print(f"transcript after {args.cpu_s + 3:.0f} s: {finals!r}")
            live = await b.page.evaluate("document.getElementById('live').innerText")
            print("the page's live indicators: " + " | ".join(str(live).split("\n")))
            stats = server.recognizer.stats()
            print(
                f"the engine's final latency from the end of speech: p50 "
                f"{stats.final_latency_ms_p50:.0f} ms, p95 {stats.final_latency_ms_p95:.0f} ms"
            )
            if args.shots:
                args.shots.mkdir(parents=True, exist_ok=True)
                for width, height, name in ((1280, 800, "desktop"), (390, 844, "phone")):
                    for dark in (False, True):
                        shade = "dark" if dark else "light"
                        await b.page.screenshot(
                            args.shots / f"page-{name}-{shade}.png",
                            width=width,
                            height=height,
                            dark=dark,
                        )
                await b.page.call("Emulation.clearDeviceMetricsOverride")
                print(f"screenshots in {args.shots}")
            await b.page.evaluate("document.getElementById('start').click()")
            await asyncio.sleep(2.0)
            print(f"\nCPU per second of wall ({args.cpu_s:g} s each): idle / transcribing")
            for key in sorted(set(idle) | set(busy)):
                print(f"  {key:<26} {idle.get(key, 0.0):>7.3f} {busy.get(key, 0.0):>7.3f}")
            # -- Start → first partial, fresh loads
            trials = [await start_to_partial(b, url) for _ in range(args.trials)]
            print(f"\nStart → first partial in the browser ({args.trials} fresh loads; ms):")
            for key in ("click_to_chunk_ms", "chunk_to_partial_ms", "click_to_partial_ms"):
                values = [t[key] for t in trials]
                print(
                    f"  {key:<22} median {statistics.median(values):>6.0f}  all "
                    + ", ".join(f"{v:.0f}" for v in values)
                )
            print(f"console errors in the whole run: {len(b.page.errors)}")
            for e in b.page.errors:
                print(f"  {e}")
    finally:
        await server.stop(5.0)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=5, help="fresh loads timed Start → partial")
    p.add_argument("--cpu-s", type=float, default=10.0, help="seconds of each CPU window")
    p.add_argument("--cache", type=Path, default=None, help="model cache root")
    p.add_argument("--shots", type=Path, default=None, help="folder for screenshots")
    p.add_argument("--no-webgl", action="store_true", help="the waveform on its 2D canvas renderer")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
