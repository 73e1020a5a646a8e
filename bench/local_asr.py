"""Local transcription in headless Chromium (js/local-asr-worker.js, ONNX Runtime Web, 1 and
2 threads) against the server's engine (WhisperModel + greedy decoding on onnxruntime) on
the same espeak-ng clips and the same converted tiny.en int8 files, in the same run.

    PYTHONPATH=src .venv/bin/python bench/local_asr.py [--rounds 3]

One in-process server (the test double engine) serves the page and the model's browser
files; the page keeps them in the Cache API once. Each round runs, in an order that rotates
from round to round: the page with 1 thread, the page with 2 threads (a fresh worker each,
model load not counted), and the server's engine (same greedy settings and token budget, its
default threads, repeats collapsed as its streaming finals are).
Each transcribes every clip as one utterance; the figure is busy time / audio time (real-time
factor). Printed: each round's RTFs, the median ratio page/server for each thread count, and
the WER of the page's text against the server's (and of both against the sentences spoken).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from audiototext.evaluation import wer  # noqa: E402
from audiototext.inference.whisper import WhisperModel  # noqa: E402
from audiototext.streaming._decode import collapse_repeats  # noqa: E402
from server.fake_engine import FakeRecognizer  # noqa: E402
from server.ws_harness import http_server  # noqa: E402
from support.model_fixtures import tiny_en_cache  # noqa: E402
from web.browser import chromium  # noqa: E402
from web.local_asr_reference import (  # noqa: E402
    PAGE_TRANSCRIBE,
    SENTENCES,
    audio_b64,
    budget,
    clips,
    model_dir,
    reference,
)


def _clips(tmp: Path) -> list[tuple[str, Any]]:
    return clips(tmp)[: len(SENTENCES)]  # the test's sentences, without its repetition loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cache = tiny_en_cache()
    with TemporaryDirectory() as tmp:
        made = _clips(Path(tmp))
    audio_s = sum(len(a) for _, a in made) / 16000
    model = WhisperModel(model_dir(cache, "int8"))
    b64 = [audio_b64(a) for _, a in made]

    def server_round() -> tuple[float, list[str]]:
        start = time.perf_counter()
        texts = [collapse_repeats(reference(model, a, True, budget(t, a))["text"]) for t, a in made]
        return (time.perf_counter() - start) / audio_s, texts

    async def run() -> dict[str, Any]:
        rtf: dict[str, list[float]] = {"page-1": [], "page-2": [], "server": []}
        texts: dict[str, list[str]] = {}
        async with http_server(FakeRecognizer(), cache_root=cache) as srv, chromium() as tab:
            assert srv.http is not None
            page = tab.page
            await page.goto(f"http://127.0.0.1:{srv.http.port}/", wait_until="load")
            kinds = ["page-1", "page-2", "server"]
            for r in range(args.rounds):
                order = kinds[r % 3 :] + kinds[: r % 3]
                for kind in order:
                    if kind == "server":
                        value, got = await asyncio.to_thread(server_round)
                    else:
                        threads = int(kind[-1])
                        out = await page.evaluate(PAGE_TRANSCRIBE, [b64, threads, r == 0])
                        assert out["ready"]["threads"] == threads, out["ready"]
                        busy = sum(run["info"]["busyMs"] for run in out["runs"]) / 1000
                        value = busy / audio_s
                        got = [" ".join(s["text"] for s in run["segments"]) for run in out["runs"]]
                    rtf[kind].append(value)
                    texts[kind] = got
                print(f"round {r + 1}: " + ", ".join(f"{k} RTF {rtf[k][-1]:.3f}" for k in kinds))
        return {"rtf": rtf, "texts": texts}

    out = asyncio.run(run())
    rtf, texts = out["rtf"], out["texts"]
    print(f"clips: {len(made)}, {audio_s:.1f} s of audio; tiny.en int8")
    for threads in (1, 2):
        ratios = [p / s for p, s in zip(rtf[f"page-{threads}"], rtf["server"], strict=True)]
        print(
            f"page {threads} thread(s): median RTF {statistics.median(rtf[f'page-{threads}']):.3f}"
            f" vs server {statistics.median(rtf['server']):.3f}:"
            f" median ratio {statistics.median(ratios):.2f}"
        )
    print(f"WER page (2 threads) vs server: {wer(texts['server'], texts['page-2']):.3f}")
    print(f"WER page vs spoken: {wer([t for t, _ in SENTENCES], texts['page-2']):.3f}")
    print(f"WER server vs spoken: {wer([t for t, _ in SENTENCES], texts['server']):.3f}")
    for s, p in zip(texts["server"], texts["page-2"], strict=True):
        print(f"  server: {s}\n  page:   {p}")


if __name__ == "__main__":
    main()
