"""The page's VAD (ONNX Runtime Web in a Worker, headless Chromium) against the server's
(audio/vad.py, onnxruntime) on the same clip, and the runtime's bytes on the wire.

    PYTHONPATH=src .venv/bin/python bench/web_vad.py [--rounds 5]

One in-process server (the test double engine: no model) serves the page. Each round runs,
alternating which goes first:

* **page**: the page's own ``js/vad-worker.js`` in a fresh Worker, fed the clip's 100-ms PCM16
  chunks through a MessagePort as the capture worklet feeds it, paced at 10× real time so
  each chunk is scored on its own as live (3 frames per run, sometimes 4); the worker's time
  in ``session.run`` (its ``busyMs``) per second of audio.
* **server**: ``SileroVad.process`` on the same chunks' whole frames with one ``VadState``,
  as ``RecognitionStream`` feeds it; ``perf_counter`` around each call.

Printed: ms of VAD per second of audio for each, the median ratio page/server, and the bytes
of the runtime and the VAD model over HTTP with and without ``Accept-Encoding: gzip``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from audiototext.audio.vad import FRAME_SAMPLES, SileroVad, VadState  # noqa: E402
from audiototext.wire.codec import decode_pcm16  # noqa: E402
from server.fake_engine import FakeRecognizer  # noqa: E402
from server.ws_harness import http_server  # noqa: E402
from support.speech import SpeechSynthesizer, silence  # noqa: E402
from web.browser import chromium  # noqa: E402
from web.ort_vendor import ort_version  # noqa: E402

SENTENCES = (
    "Please call Stella and ask her to bring these things.",
    "We will meet at the train station tomorrow morning.",
)
CHUNK_SAMPLES = 1600
PACE_MS = 10  # per 100-ms chunk: 10x real time

# Feeds the page's VAD worker the clip and returns its stats once every chunk is scored.
PAGE_RUN = """async ([pcmBase64, chunkBytes, paceMs]) => {
  const pcm = Uint8Array.from(atob(pcmBase64), (c) => c.charCodeAt(0));
  const worker = new Worker("/js/vad-worker.js", { type: "module" });
  const messages = [];
  const waitFor = (test) => new Promise((resolve) => {
    const check = () => {
      const m = messages.find(test);
      if (m) resolve(m);
      else setTimeout(check, 5);
    };
    check();
  });
  worker.onmessage = (e) => messages.push(e.data);
  const channel = new MessageChannel();
  worker.postMessage({ type: "tap", port: channel.port1 }, [channel.port1]);
  const ready = await waitFor((m) => m.type === "ready" || m.type === "error");
  if (ready.type === "error") throw new Error(ready.message);
  const audioS = Math.floor(pcm.length / 2 / 512) * 512 / 16000;
  for (let at = 0; at < pcm.length; at += chunkBytes) {
    const chunk = pcm.slice(at, at + chunkBytes).buffer;
    channel.port2.postMessage({ type: "chunk", data: chunk }, [chunk]);
    await new Promise((r) => setTimeout(r, paceMs));
  }
  let stats;
  for (;;) {
    messages.length = 0;
    worker.postMessage({ type: "stats" });
    stats = await waitFor((m) => m.type === "stats");
    if (stats.audioS >= audioS - 1e-6) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  worker.terminate();
  return stats;
}"""


def _clip(tmp: Path) -> bytes:
    synth = SpeechSynthesizer(tmp)
    parts: list[Any] = [silence(0.5)]
    for text in SENTENCES:
        parts += [synth.speak(text).audio, silence(1.5)]
    audio = np.concatenate(parts)
    return bytes(np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2").tobytes())


def _server_vad(vad: SileroVad, pcm: bytes) -> tuple[float, float]:
    """(seconds in process(), seconds of audio scored)."""
    state = VadState()
    pending = np.zeros(0, dtype=np.float32)
    busy = 0.0
    scored = 0
    for at in range(0, len(pcm), CHUNK_SAMPLES * 2):
        pending = np.concatenate([pending, decode_pcm16(pcm[at : at + CHUNK_SAMPLES * 2])])
        whole = pending.shape[0] - pending.shape[0] % FRAME_SAMPLES
        t0 = time.perf_counter()
        vad.process(pending[:whole], state)
        busy += time.perf_counter() - t0
        scored += whole
        pending = pending[whole:]
    return busy, scored / 16000


def _bytes(url: str, gzip: bool) -> int:
    headers = {"Accept-Encoding": "gzip"} if gzip else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as r:
        return len(r.read())


async def main(rounds: int, tmp: Path) -> None:
    pcm = _clip(tmp)
    vad = SileroVad()
    page_ms: list[float] = []
    server_ms: list[float] = []
    ratios: list[float] = []
    async with http_server(FakeRecognizer()) as srv, chromium() as tab:
        assert srv.http is not None
        origin = f"http://127.0.0.1:{srv.http.port}"
        await tab.page.goto(f"{origin}/", wait_until="load")
        isolated = await tab.page.evaluate("crossOriginIsolated")
        files = [
            f"vendor/ort-{ort_version()}/{name}"
            for name in (
                "ort.wasm.min.mjs",
                "ort-wasm-simd-threaded.mjs",
                "ort-wasm-simd-threaded.wasm",
            )
        ] + ["vad/silero_vad.onnx"]
        print(f"crossOriginIsolated: {isolated}")
        print("| file | bytes, gzip | bytes, plain |\n|---|---|---|")
        total = [0, 0]
        for name in files:
            sizes = [await asyncio.to_thread(_bytes, f"{origin}/{name}", g) for g in (True, False)]
            total = [total[0] + sizes[0], total[1] + sizes[1]]
            print(f"| {name} | {sizes[0]:,} | {sizes[1]:,} |")
        print(f"| total | {total[0]:,} | {total[1]:,} |\n")
        payload = [base64.b64encode(pcm).decode(), CHUNK_SAMPLES * 2, PACE_MS]
        for k in range(rounds):
            order = ("page", "server") if k % 2 == 0 else ("server", "page")
            got: dict[str, float] = {}
            for who in order:
                if who == "page":
                    stats = await tab.page.evaluate(PAGE_RUN, payload)
                    got[who] = stats["busyMs"] / stats["audioS"]
                else:
                    busy, audio_s = _server_vad(vad, pcm)
                    got[who] = 1000 * busy / audio_s
            page_ms.append(got["page"])
            server_ms.append(got["server"])
            ratios.append(got["page"] / got["server"])
            print(
                f"round {k + 1}: page {got['page']:.2f} ms/s, server {got['server']:.2f} ms/s, "
                f"ratio {ratios[-1]:.2f}"
            )
    print(
        f"\nVAD per second of audio ({len(pcm) / 32000:.1f} s clip, 100-ms chunks): page "
        f"{statistics.median(page_ms):.2f} ms, server {statistics.median(server_ms):.2f} ms; "
        f"median ratio page/server {statistics.median(ratios):.2f}"
    )


if __name__ == "__main__":
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(args.rounds, Path(tmp)))
