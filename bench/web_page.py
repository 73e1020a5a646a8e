"""The page in Chromium: weight on first load, Start → first partial, CPU idle and transcribing.

    PYTHONPATH=src .venv/bin/python bench/web_page.py [--trials 5] [--shots DIR]

One in-process server (gRPC and HTTP on 127.0.0.1, tiny.en int8 from ``--cache``, by default
the test fixtures' converted model) and Debian's headless Chromium driven by Playwright
(``tests/web/browser.py``; a DevTools session for network bytes and main-thread metrics), whose
fake microphone loops espeak-ng speech (0.5 s of silence, then sentences with 1.5 s between
them). Printed:

* **Weight**: every response of a first load with a fresh profile (no cache), in bytes over
  the wire (CDP ``Network.loadingFinished``: headers and body) and body bytes, per kind of
  file; the API calls the page makes on load apart; then what Start adds (the audio worklet).
  The server does not compress: body bytes are the files' sizes.
* **Start → first partial**, over ``--trials`` fresh page loads per transport (WebRTC, the
  page's default, and ``?transport=websocket``, alternating): from the click on Start to the
  first audio the server takes from the page (its stream observer, on either transport; the
  page's and the server's clocks are both the system's wall clock), and from there to the
  first partial text in the DOM (a MutationObserver; painted one frame later at most). The
  same figure over the WebSocket from Python is in ``bench/web_latency.py``.
* **CPU**, ``--cpu-s`` seconds idle after load and as long transcribing: the renderer's main
  thread (CDP ``Performance.getMetrics``: TaskDuration, ScriptDuration, Layout and style) per
  second of wall, and each Chromium process's CPU per second from ``/proc`` (renderer, GPU
  process, audio and network services, browser).
* Console errors and exceptions seen, and screenshots at 1280×800
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
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from support.speech import SpeechSynthesizer  # noqa: E402
from web.browser import CHROMIUM, Tab, chromium, microphone_wav  # noqa: E402

if TYPE_CHECKING:
    from audiototext.server.observer import ObservedSession, StreamObserver
    from audiototext.streaming import SpeechEvent, StreamResult

SENTENCES = (
    "Please call Stella and ask her to bring these things.",
    "We will meet at the train station tomorrow morning.",
    "She sells sea shells by the sea shore.",
)
WEB = ROOT / "src" / "audiototext" / "web"

# Installed before the page's own scripts: when the first partial and final text appear in
# the DOM (ms of the wall clock, as the server's time.time(): both are the system's clock).
PROBE = """
window.__bench = {click: null, firstPartial: null, firstFinal: null};
(() => {
  const watch = () => {
    const b = window.__bench;
    const partials = document.getElementById("partials");
    const finals = document.getElementById("finals");
    new MutationObserver(() => {
      if (b.click === null) return;
      const now = performance.timeOrigin + performance.now();
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


class FirstAudio:
    """The server's stream observer, passed through, noting when each session first took
    audio from a page (ms of the wall clock): the same moment on WebRTC and the WebSocket."""

    def __init__(self, inner: StreamObserver) -> None:
        self.inner = inner
        self.first_ms: dict[str, float] = {}

    def opened(self, session: ObservedSession) -> None:
        self.inner.opened(session)

    def audio(self, session: ObservedSession) -> None:
        self.first_ms.setdefault(session.id, time.time() * 1000)
        self.inner.audio(session)

    def event(self, session: ObservedSession, event: StreamResult | SpeechEvent) -> None:
        self.inner.event(session, event)

    def removed(self, session: ObservedSession) -> None:
        self.inner.removed(session)

    def error(self, kind: str, code: str) -> None:
        self.inner.error(kind, code)


@dataclass
class Browser:
    """The tab, the DevTools session on it, and the network events it saw."""

    tab: Tab
    cdp: Any
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return self.tab.errors

    async def evaluate(self, expression: str) -> Any:
        return await self.tab.page.evaluate(expression)

    def keeper(self, method: str) -> Callable[[dict[str, Any]], None]:
        """A handler keeping ``method``'s events as the protocol sends them."""
        return lambda params: self.events.append({"method": method, "params": params})

    async def drain(self) -> None:
        """Events sent before this round trip have been handled when it returns."""
        await self.cdp.send("Runtime.evaluate", {"expression": "0"})


NETWORK_EVENTS = ("Network.responseReceived", "Network.dataReceived", "Network.loadingFinished")


@contextlib.asynccontextmanager
async def browser(microphone: Path, *, webgl: bool = True) -> AsyncIterator[Browser]:
    """``web.browser.chromium`` with the probe installed and the network events kept."""
    scripts = [PROBE] if webgl else [PROBE, NO_WEBGL]
    async with chromium(microphone, init_scripts=scripts) as tab:
        cdp = await tab.cdp()
        b = Browser(tab, cdp)
        for name in NETWORK_EVENTS:
            cdp.on(
                name, lambda params, name=name: b.events.append({"method": name, "params": params})
            )
        await cdp.send("Network.enable")
        await cdp.send("Performance.enable")
        await cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        yield b


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


async def main_thread_metrics(b: Browser) -> dict[str, float]:
    got = await b.cdp.send("Performance.getMetrics")
    return {m["name"]: float(m["value"]) for m in got["metrics"]}


async def cpu_window(b: Browser, seconds: float) -> dict[str, float]:
    """Per second of wall over ``seconds``: main-thread durations and processes' CPU."""
    pid = b.tab.pid
    m0, c0, t0 = await main_thread_metrics(b), cpu_by_pid(pid), time.monotonic()
    await asyncio.sleep(seconds)
    m1, c1, t1 = await main_thread_metrics(b), cpu_by_pid(pid), time.monotonic()
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


async def open_page(b: Browser, url: str) -> None:
    await b.tab.page.goto(url)
    for _ in range(200):
        text = await b.tab.text("health-text")
        models = await b.evaluate("document.querySelectorAll('#model-list li').length")
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


TRANSPORTS = {"webrtc": "", "websocket": "?transport=websocket"}  # the page's query


async def start_to_partial(
    b: Browser, url: str, first_audio: FirstAudio, transport: str
) -> dict[str, float]:
    """One fresh load on ``transport``: Start → the server's first audio → first partial (ms)."""
    await open_page(b, url + TRANSPORTS[transport])
    sessions = set(first_audio.first_ms)
    await b.evaluate(
        "window.__bench.click = performance.timeOrigin + performance.now();"
        " document.getElementById('start').click()"
    )
    marks: dict[str, Any] = {}
    for _ in range(300):
        await asyncio.sleep(0.05)
        marks = await b.evaluate("window.__bench")
        if marks.get("firstPartial") is not None:
            break
    shown = await b.tab.text("transport-text")
    if not shown.lower().startswith(transport):
        print(f"  (asked for {transport}, the page streamed on: {shown!r})")
    await b.evaluate("document.getElementById('start').click()")  # Stop
    for _ in range(200):
        await asyncio.sleep(0.05)
        if await b.evaluate("document.getElementById('start').dataset.recording") == "false":
            break
    new = [ms for sid, ms in first_audio.first_ms.items() if sid not in sessions]
    nan = float("nan")
    click = float(marks.get("click") or nan)
    partial = float(marks.get("firstPartial") or nan)
    audio = min(new) if new else nan  # nan: missing, and so is every difference with it
    return {
        "click_to_server_audio_ms": audio - click,
        "server_audio_to_partial_ms": partial - audio,
        "click_to_partial_ms": partial - click,
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
    wav = microphone_wav(SpeechSynthesizer(speech_dir), folder / "microphone.wav", SENTENCES)
    cache = args.cache or default_cache()
    server = GrpcServer(ServerConfig(port=0, http_port=0, precision="int8", cache_root=cache))
    await server.start()
    assert server.http is not None and server.store is not None
    first_audio = FirstAudio(server.store.observer)
    server.store.observer = first_audio
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
            await b.drain()
            rows = weights(b.events)
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
            print(f"console errors on load: {len(b.errors)}")
            print(f"WebGL for the waveform: {await b.evaluate(GL_RENDERER)}")
            for e in b.errors:
                print(f"  {e}")
            # -- CPU idle (the page's polls and nothing else)
            await asyncio.sleep(2.0)
            idle = await cpu_window(b, args.cpu_s)
            # -- CPU transcribing
            b.events.clear()
            await b.evaluate("document.getElementById('start').click()")
            await asyncio.sleep(3.0)
            await b.drain()
            start_rows = [r for r in weights(b.events) if not r[0].startswith("api")]
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
            finals = await b.evaluate("document.getElementById('finals').innerText")
            print(f"transcript after {args.cpu_s + 3:.0f} s: {finals!r}")
            live = await b.evaluate("document.getElementById('live').innerText")
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
                        await b.tab.screenshot(
                            args.shots / f"page-{name}-{shade}.png",
                            width=width,
                            height=height,
                            dark=dark,
                        )
                await b.cdp.send("Emulation.clearDeviceMetricsOverride")
                print(f"screenshots in {args.shots}")
            await b.evaluate("document.getElementById('start').click()")
            await asyncio.sleep(2.0)
            print(f"\nCPU per second of wall ({args.cpu_s:g} s each): idle / transcribing")
            for key in sorted(set(idle) | set(busy)):
                print(f"  {key:<26} {idle.get(key, 0.0):>7.3f} {busy.get(key, 0.0):>7.3f}")
            # -- Start → first partial, fresh loads, the transports alternating
            trials: dict[str, list[dict[str, float]]] = {t: [] for t in TRANSPORTS}
            for _ in range(args.trials):
                for transport in trials:
                    trials[transport].append(await start_to_partial(b, url, first_audio, transport))
            for transport, runs in trials.items():
                print(
                    f"\nStart → first partial in the browser over {transport} "
                    f"({args.trials} fresh loads; ms):"
                )
                for key in runs[0]:
                    values = [t[key] for t in runs]
                    print(
                        f"  {key:<27} median {statistics.median(values):>6.0f}  all "
                        + ", ".join(f"{v:.0f}" for v in values)
                    )
            print(f"console errors in the whole run: {len(b.errors)}")
            for e in b.errors:
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
