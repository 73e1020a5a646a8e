"""Session store cost per final, and the latency HAProxy adds per final.

Run by hand (needs redis-server and haproxy; the converted tiny.en the tests use)::

    PYTHONPATH=src .venv/bin/python bench/session_store.py --saves 200 --runs 6

1. **Write cost per final**: a session state as a final writes it (the checkpoint of a
   stream 60 s in: 12 s of context audio, 1 s not yet read, five earlier finals), saved to
   the Redis store and to the in-memory store alternately, the time from ``save`` to its
   ``done`` callback (encoding included; Redis: a pipeline to a local redis-server).
2. **HAProxy per final**: one ``audiototext serve --session-store redis://`` and an HAProxy
   (deploy/haproxy.cfg) in front; runs alternate between the direct gRPC port and HAProxy's,
   each an espeak-ng sentence at real time with 0.5 s of silence before and 1.5 s after; the
   time from the end of speech (capture time) to the final's arrival.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from audiototext.client import AsyncClient, StreamSettings, TranscriptUpdate  # noqa: E402
from audiototext.server.redis_store import RedisStateStore  # noqa: E402
from audiototext.server.session_state import (  # noqa: E402
    MemoryStateStore,
    SessionState,
    encode_state,
)
from server.real_engine import SENTENCES  # noqa: E402
from server.test_session_store import make_state  # noqa: E402
from support.fixture_cache import fixtures_root, shared_speech_dir  # noqa: E402
from support.services import Server, running_haproxy, running_redis  # noqa: E402
from support.speech import SpeechSynthesizer, with_silence  # noqa: E402

LEAD_S, TAIL_S = 0.5, 1.5


def save_ms(store: RedisStateStore | MemoryStateStore, state: SessionState) -> float:
    done = threading.Event()
    ok: list[bool] = []
    t0 = time.perf_counter()
    store.save(state, lambda good: (ok.append(good), done.set()))
    done.wait(10)
    assert ok == [True], "save failed"
    return 1000 * (time.perf_counter() - t0)


def write_cost(saves: int) -> None:
    state = make_state("bench", audio_s=13.0)
    with running_redis() as server:
        stores = {"redis": RedisStateStore(server.url, ttl_s=60), "memory": MemoryStateStore()}
        times: dict[str, list[float]] = {name: [] for name in stores}
        for i in range(saves):
            order = list(stores) if i % 2 == 0 else list(reversed(stores))
            for name in order:
                times[name].append(save_ms(stores[name], state))
        stores["redis"].close()
    med = {name: statistics.median(t) for name, t in times.items()}
    size = sum(len(v) for v in encode_state(state).values())
    print(f"state size: {size / 1e6:.2f} MB (13 s of float32 audio + metadata)")
    for name, t in times.items():
        q = statistics.quantiles(t, n=20)
        print(f"{name:7s} save->stored median {med[name]:.2f} ms  p95 {q[18]:.2f} ms", len(t))
    print(
        f"redis / memory: {med['redis'] / med['memory']:.2f}x; redis costs "
        f"{med['redis'] - med['memory']:.2f} ms more per final (off the event loop)"
    )


async def final_latency(target: str, audio: np.ndarray, speech_end_s: float) -> float:
    async with AsyncClient(target) as client:
        s = await client.stream(StreamSettings(compression="pcm16"))
        arrivals: list[float] = []

        async def read() -> None:
            async for r in s.results():
                if isinstance(r, TranscriptUpdate) and r.is_final:
                    arrivals.append(time.monotonic())

        reader = asyncio.create_task(read())
        t0 = time.monotonic()
        for n, at in enumerate(range(0, audio.shape[0], 1600)):
            await asyncio.sleep(max(0.0, t0 + n * 0.1 - time.monotonic()))
            await s.send(audio[at : at + 1600])
        await s.finish()
        await reader
        await s.close()
    return 1000 * (arrivals[0] - (t0 - 0.1 + speech_end_s))


def haproxy_latency(runs: int) -> None:
    # The server process reads the converted model from the tests' cache.
    built = [p for p in fixtures_root().glob("tiny-en-cache-*") if p.is_dir()]
    os.environ["AUDIOTOTEXT_HOME"] = str(max(built, key=lambda p: p.stat().st_mtime))
    synth = SpeechSynthesizer(shared_speech_dir())
    sentence = synth.speak(SENTENCES[0])
    audio = with_silence(sentence.audio, LEAD_S, TAIL_S)
    speech_end_s = LEAD_S + sentence.duration_s
    with running_redis() as redis_server:
        server = Server(redis_server.url).start()
        try:
            with running_haproxy([(server.port, server.http_port)]) as front:
                targets = {"direct": f"127.0.0.1:{server.port}", "haproxy": f"127.0.0.1:{front}"}
                asyncio.run(final_latency(targets["direct"], audio, speech_end_s))  # warm-up
                times: dict[str, list[float]] = {name: [] for name in targets}
                for i in range(runs):
                    order = list(targets) if i % 2 == 0 else list(reversed(targets))
                    for name in order:
                        ms = asyncio.run(final_latency(targets[name], audio, speech_end_s))
                        times[name].append(ms)
                        print(f"  run {i + 1} {name}: {ms:.0f} ms", flush=True)
        finally:
            server.stop()
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name:8s} end of speech -> final median {med[name]:.0f} ms  ({len(t)} runs)")
    # Each pair ran back to back: its difference leaves out the machine's slower moments.
    pairs = [h - d for h, d in zip(times["haproxy"], times["direct"], strict=True)]
    print(
        f"haproxy - direct: median of pairs {statistics.median(pairs):+.1f} ms per final, "
        f"medians {med['haproxy'] - med['direct']:+.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=200)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--skip-haproxy", action="store_true")
    args = parser.parse_args()
    write_cost(args.saves)
    if not args.skip_haproxy:
        haproxy_latency(args.runs)


if __name__ == "__main__":
    main()
