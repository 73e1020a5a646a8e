"""Hand-over to transcription in the page, timed: a real ``audiototext serve`` (tiny.en int8,
history file, Redis session store) is killed after the first sentence's final; headless
Chromium (fake microphone, espeak-ng) goes local on the kept model; a new server on the same
ports comes up; the page hands back and uploads its segments.

    PYTHONPATH=src .venv/bin/python bench/handover.py [--runs 3]

Per run: the page's time from the loss (its stream's first "reconnecting") to the first local
text, of which 3 s is the wait before giving up on the server (HANDOVER_AFTER_MS) and the rest
the worker's start (runtime and model from the Cache API; loss_to_ready) and the decoding of
what was said since the last final (here the second sentence ends about 8 s after the kill, so
the first local text waits for it); the time from the new server's first answer to the
upload's answer; the WER of the server part and of the local part against the sentences.
Local real-time factor with 1 and 2 threads, and the WER of local against server text on the
test clips, are bench/local_asr.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from audiototext.evaluation import wer  # noqa: E402
from support.model_fixtures import tiny_en_cache  # noqa: E402
from support.services import Server, running_redis  # noqa: E402
from support.speech import SpeechSynthesizer  # noqa: E402
from web.browser import chromium, microphone_wav, value_when_truthy  # noqa: E402
from web.test_browser_handover import FINALS, FIRST, NOTE, SECOND, _keep_model  # noqa: E402


async def one_run(wav: Path, first: Server, second: Server) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with chromium(wav) as tab:
        page = tab.page
        await page.goto(f"http://127.0.0.1:{first.http_port}/?transport=websocket")
        await _keep_model(page)
        await page.click("#start")
        await value_when_truthy(page, f"{FINALS}.some(f => /stella/i.test(f[1]))", 90)
        first.kill9()
        await value_when_truthy(page, f"{FINALS}.some(f => f[0] === 'local')", 120)
        out["loss_to_local_ms"] = int(await page.evaluate("document.body.dataset.localAfterMs"))
        out["loss_to_ready_ms"] = int(await page.evaluate("document.body.dataset.localReadyMs"))
        await value_when_truthy(page, f"{FINALS}.some(f => /station|morning/i.test(f[1]))", 60)
        second.start()
        up = time.monotonic()
        await value_when_truthy(page, f"/added to the session/.test({NOTE})", 120)
        out["back_to_saved_s"] = time.monotonic() - up
        finals = await page.evaluate(FINALS)
        out["server_wer"] = wer(FIRST, " ".join(t for o, t in finals if o == "server"))
        out["local_wer"] = wer(SECOND, " ".join(t for o, t in finals if o == "local"))
        await page.click("#start")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    runs = []
    with tempfile.TemporaryDirectory() as folder, running_redis() as redis:
        tmp = Path(folder)
        # The servers' home: a copy of the test cache (a server may write beside its models).
        shutil.copytree(tiny_en_cache(), tmp / "home")
        os.environ["AUDIOTOTEXT_HOME"] = str(tmp / "home")
        synth = SpeechSynthesizer(tmp)
        wav = microphone_wav(synth, tmp / "mic.wav", [FIRST, SECOND], gap_s=6.0, tail_s=100.0)
        for n in range(args.runs):
            history = tmp / f"history-{n}.sqlite3"
            first = Server(redis.url, 0, 0, "--history", str(history)).start()
            second = Server(redis.url, first.port, first.http_port, "--history", str(history))
            try:
                result = asyncio.run(one_run(wav, first, second))
            finally:
                first.stop()
                second.stop()
            print(f"run {n + 1}: {result}", flush=True)
            runs.append(result)
    for key in (
        "loss_to_ready_ms",
        "loss_to_local_ms",
        "back_to_saved_s",
        "server_wer",
        "local_wer",
    ):
        values = [r[key] for r in runs]
        print(
            f"{key}: median {statistics.median(values):.3f} (min {min(values):.3f}, "
            f"max {max(values):.3f})"
        )


if __name__ == "__main__":
    main()
