"""The WebRTC prefix, before/after, in one run: speech 0.4 s after Start over a WebRTC
connection slowed by ``--delay`` s (the page's setRemoteDescription waits), headless
Chromium (fake microphone, espeak-ng) and the real aiortc server with tiny.en in a network
namespace.

    PYTHONPATH=src .venv/bin/python bench/webrtc_prefix.py [--runs 2] [--delay 2]

Variants, alternated: ``prefix`` (the page as it is) and ``none`` (the page as before: an
init script takes ``"prefix": true`` out of the offer and drops the prefix's messages, so
only the track's audio reaches the server). Per run: the first sentence's WER against its
first final, whether that final opens with the sentence's first two words, the bytes the
prefix added on the data channel (and as a share of the Opus track's RTP bytes), the time
the track's audio waited on the server for the prefix's end (``held_ms``), and Start → first
final in wall time (its ratio prefix/none is printed: the extra audio the first final holds
is decoded too).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from audiototext.evaluation import wer  # noqa: E402
from server.real_engine import settled  # noqa: E402
from server.ws_harness import http_server  # noqa: E402
from support.model_fixtures import tiny_en_cache  # noqa: E402
from support.netns import namespace, run_inside  # noqa: E402
from support.realtime import machine_share  # noqa: E402
from support.speech import SpeechSynthesizer  # noqa: E402
from web.browser import (  # noqa: E402
    chromium,
    microphone_wav,
    open_when_ready,
    value_when_truthy,
)
from web.test_browser import SENTENCES  # noqa: E402
from web.test_browser_handover import FINALS, WATCH_CHANNEL, _words  # noqa: E402

# The page before the prefix: no "prefix" in the offer, no prefix messages on the channel.
NO_PREFIX = """(() => {
  const fetch0 = window.fetch;
  window.fetch = function (url, init) {
    if (String(url).endsWith("/webrtc/offer") && init && init.body) {
      const body = JSON.parse(init.body);
      delete body.prefix;
      init = { ...init, body: JSON.stringify(body) };
    }
    return fetch0.call(this, url, init);
  };
  const make = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (...args) {
    const channel = make.apply(this, args);
    const send = channel.send;
    channel.send = function (data) {
      if (typeof data !== "string" || data.startsWith('{"prefix"')) return undefined;
      return send.call(this, data);
    };
    return channel;
  };
})();"""


def slow_rtc(delay_s: float) -> str:
    return f"""(() => {{
  const set = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = function (...args) {{
    const wait = new Promise((r) => setTimeout(r, {int(delay_s * 1000)}));
    return wait.then(() => set.apply(this, args));
  }};
}})();"""


RTP_BYTES = """(async () => {
  const pcs = window.__pcs || [];
  let bytes = 0;
  for (const pc of pcs) {
    try {
      for (const s of (await pc.getStats()).values()) {
        if (s.type === "outbound-rtp") bytes += s.bytesSent || 0;
      }
    } catch {}
  }
  return bytes;
})()"""
KEEP_PCS = """(() => {
  const PC = RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new PC(...args);
    window.__pcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = PC.prototype;
  Object.setPrototypeOf(window.RTCPeerConnection, PC);
})();"""


async def one_run(recognizer: Any, wav: Path, variant: str, delay_s: float) -> dict[str, Any]:
    scripts = [slow_rtc(delay_s), WATCH_CHANNEL, KEEP_PCS]
    if variant == "none":
        scripts.append(NO_PREFIX)
    out: dict[str, Any] = {"variant": variant}
    async with http_server(recognizer) as srv, chromium(wav, init_scripts=scripts) as tab:
        assert srv.http is not None
        page = tab.page
        await settled(recognizer)
        await open_when_ready(page, srv.http.port)
        await page.click("#start")
        started = time.monotonic()
        first = await value_when_truthy(page, f"{FINALS}.length > 0 && {FINALS}[0][1]", 60)
        out["start_to_first_final_s"] = time.monotonic() - started
        await value_when_truthy(page, f"{FINALS}.some(f => /noon/i.test(f[1]))", 60)
        out["rtp_bytes"] = await page.evaluate(RTP_BYTES)
        await page.click("#start")
        await value_when_truthy(
            page, "document.getElementById('start').dataset.recording === 'false'", 30
        )
        watched: dict[str, Any] = {}
        for _ in range(50):
            watched = await page.evaluate("window.__prefix")
            if watched.get("stats"):
                break
            await asyncio.sleep(0.1)
    out["first_final"] = first
    out["first_wer"] = wer(SENTENCES[0], str(first or ""))
    out["first_words_kept"] = _words(str(first or ""))[:2] == ["please", "call"]
    out["prefix_bytes"] = watched.get("bytes", 0) if variant == "prefix" else 0
    stats = watched.get("stats") or {}
    out["held_ms"] = stats.get("held_ms", 0)
    out["prefix_ms"] = stats.get("prefix_ms", 0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="runs per variant (alternated)")
    parser.add_argument("--delay", type=float, default=2.0, help="connection slowed by (s)")
    args = parser.parse_args()
    from audiototext.streaming import RecognizerOptions, StreamingRecognizer

    with tempfile.TemporaryDirectory() as tmp:
        wav = microphone_wav(
            SpeechSynthesizer(Path(tmp)),
            Path(tmp) / "mic.wav",
            SENTENCES,
            lead_s=0.4,
            tail_s=30.0,
        )
        recognizer = StreamingRecognizer.load(
            "tiny.en", RecognizerOptions(), precision="int8", cache_root=tiny_en_cache()
        )
        results: list[dict[str, Any]] = []
        # Real-time audio into the engine: alone on the machine, as the realtime tests.
        with machine_share(exclusive=True), namespace() as name:
            for i in range(args.runs):
                for variant in ("none", "prefix") if i % 2 else ("prefix", "none"):
                    run = partial(one_run, recognizer, wav, variant, args.delay)
                    r = run_inside(name, run, 300)
                    r["load"] = os.getloadavg()[0]
                    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})
                    results.append(r)
    for variant in ("none", "prefix"):
        rs = [r for r in results if r["variant"] == variant]
        print(
            f"{variant:7s} first words kept {sum(r['first_words_kept'] for r in rs)}/{len(rs)}, "
            f"first-sentence WER {statistics.mean(r['first_wer'] for r in rs):.3f}, "
            f"prefix {statistics.mean(r['prefix_bytes'] for r in rs):.0f} B "
            f"({statistics.mean(r['prefix_ms'] for r in rs):.0f} ms of audio), "
            f"RTP {statistics.mean(r['rtp_bytes'] for r in rs):.0f} B, "
            f"held {statistics.mean(r['held_ms'] for r in rs):.0f} ms, "
            f"Start→first final {statistics.median(r['start_to_first_final_s'] for r in rs):.2f} s"
        )
    with_p = [r["start_to_first_final_s"] for r in results if r["variant"] == "prefix"]
    without = [r["start_to_first_final_s"] for r in results if r["variant"] == "none"]
    ratio = statistics.median(with_p) / statistics.median(without)
    print(f"Start→first final, prefix/none: {ratio:.2f}")


if __name__ == "__main__":
    main()
