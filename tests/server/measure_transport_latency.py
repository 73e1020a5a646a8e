"""End of speech → final, over WebRTC (aiortc peer, Opus) and over the WebSocket (PCM16).

Not a test (no assertions, not collected): a measurement to run by hand, as root (it makes a
network namespace), with the converted tiny.en the tests use::

    PYTHONPATH=src:tests python tests/server/measure_transport_latency.py --runs 5

Runs alternate between the transports on one server with the real engine (int8); each sends
one espeak-ng sentence at real time with 0.5 s of silence before and 1.5 s after, and the
time from the last sample of speech leaving the client to the final's arrival is reported
(median and every run). FINISH is sent only after the trailing silence, so the final comes
from the engine's own end-of-utterance detection, as with a person speaking.

Both clients send a block as soon as its time starts (the WebSocket a 100-ms chunk, WebRTC a
20-ms frame); a microphone has a block only when its time has passed, so the times are taken
from the capture's start (a block's length before the first send): the WebSocket's 100-ms
chunks cost it 100 ms, WebRTC's frames 20 ms, as in the page. "End of speech" is the end of
espeak's clip, which has some silence of its own after the last word.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import websockets
from numpy.typing import NDArray

from audiototext.streaming import RecognizerOptions, StreamingRecognizer
from server.real_engine import SENTENCES, settled
from server.rtc_harness import stream_speech
from server.ws_harness import PCM16_CONFIG, http_server, pcm16_frames
from support.fixture_cache import fixtures_root
from support.netns import namespace, run_inside
from support.speech import SpeechSynthesizer, with_silence

LEAD_S, TAIL_S = 0.5, 1.5


async def ws_latency(
    url: str, audio: NDArray[np.float32], speech_end_s: float
) -> tuple[float, str]:
    finals: list[float] = []
    texts: list[str] = []
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"config": PCM16_CONFIG}))

        async def receive() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for raw in ws:
                    msg = json.loads(raw)
                    result = msg.get("result")
                    if result is not None and result["is_final"]:
                        finals.append(time.monotonic())
                        texts.append(result["text"])

        receiver = asyncio.create_task(receive())
        t0 = time.monotonic()
        for i, chunk in enumerate(pcm16_frames(audio)):
            ahead = t0 + i * 0.1 - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            await ws.send(chunk)
        await ws.send(json.dumps({"control": {"action": "FINISH"}}))
        await receiver
    capture_t0 = t0 - 0.1  # the first 100-ms chunk existed only 100 ms after capture began
    return 1000 * (finals[0] - (capture_t0 + speech_end_s)), " ".join(texts)


async def rtc_latency(
    url: str, audio: NDArray[np.float32], speech_end_s: float
) -> tuple[float, str]:
    out = await stream_speech(url, audio)
    assert out.audio_t0 is not None and out.final_at, out.answer
    text = " ".join(f["text"] for f in out.finals)
    capture_t0 = out.audio_t0 - 0.02  # likewise for the first 20-ms frame
    return 1000 * (out.final_at[0] - (capture_t0 + speech_end_s)), text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per transport")
    parser.add_argument("--cache", type=Path, help="a converted-model cache (default: tests')")
    args = parser.parse_args()
    built = [p for p in fixtures_root().glob("tiny-en-cache-*") if p.is_dir()]
    cache = args.cache or max(built, key=_mtime)
    recognizer = StreamingRecognizer.load(
        "tiny.en", RecognizerOptions(max_sessions=4), precision="int8", cache_root=cache
    )
    synth = SpeechSynthesizer(Path(tempfile.mkdtemp()))
    results: dict[str, list[float]] = {"websocket": [], "webrtc": []}

    async def measure() -> None:
        async with http_server(recognizer) as srv:
            assert srv.http is not None
            base = f"127.0.0.1:{srv.http.port}/api/v1"
            for i in range(args.runs):
                spoken = synth.speak(SENTENCES[i % len(SENTENCES)]).audio
                audio = with_silence(spoken, LEAD_S, TAIL_S)
                end_s = LEAD_S + spoken.shape[0] / 16_000
                for kind in ("websocket", "webrtc") if i % 2 == 0 else ("webrtc", "websocket"):
                    await settled(recognizer)
                    if kind == "websocket":
                        ms, text = await ws_latency(f"ws://{base}/stream", audio, end_s)
                    else:
                        ms, text = await rtc_latency(f"http://{base}/webrtc/offer", audio, end_s)
                    results[kind].append(ms)
                    print(f"run {i + 1} {kind:9s} end of speech -> final {ms:6.0f} ms  {text!r}")

    with namespace() as name:
        run_inside(name, measure, 1800)
    recognizer.close()
    for kind, values in results.items():
        print(f"{kind:9s} median {statistics.median(values):6.0f} ms  runs {_fmt(values)}")


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


if __name__ == "__main__":
    main()
