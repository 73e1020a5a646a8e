"""Words kept across a dropped WebRTC connection, with and without the resume's prefix, in one
run: two sentences streamed by a real aiortc peer to the real server (tiny.en) in a network
namespace; the peer is closed ~1.2 s into the audio (mid first sentence) and a new one resumes
the session with its track starting ``--back`` s into the audio.

    PYTHONPATH=src .venv/bin/python bench/webrtc_resume.py [--runs 2] [--back 2.7]

Variants, alternated: ``prefix`` (the resume sends the audio from the session's next chunk up
to the new track, as the page now does) and ``none`` (the resume as before: the outage's audio
is lost). Per run: the uninterrupted run's words of 4+ letters that the resumed run's finals
hold exactly once (kept), and how many it holds more than once (repeated). Prints kept
prefix/none as a ratio.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from server.real_engine import SENTENCES, settled  # noqa: E402
from server.rtc_harness import stream_speech  # noqa: E402
from server.test_webrtc_resume_prefix import _cut_and_resume, _url  # noqa: E402
from server.ws_harness import http_server  # noqa: E402
from support.model_fixtures import tiny_en_cache  # noqa: E402
from support.netns import namespace, run_inside  # noqa: E402
from support.realtime import machine_share  # noqa: E402
from support.speech import SpeechSynthesizer, with_silence  # noqa: E402


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _text(runs: Any) -> str:
    return " ".join(f["text"] for r in runs for f in r.finals)


async def whole_run(recognizer: Any, audio: Any) -> str:
    async with http_server(recognizer) as srv:
        await settled(recognizer)
        return _text([await stream_speech(_url(srv), audio)])


async def cut_run(recognizer: Any, audio: Any, back_s: float, prefix: bool) -> str:
    async with http_server(recognizer) as srv:
        await settled(recognizer)
        return _text(await _cut_and_resume(srv, audio, back_s, prefix=prefix))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="runs per variant (alternated)")
    parser.add_argument("--back", type=float, default=2.7, help="the new track starts here (s)")
    args = parser.parse_args()
    from audiototext.streaming import RecognizerOptions, StreamingRecognizer

    with tempfile.TemporaryDirectory() as tmp:
        speech = SpeechSynthesizer(Path(tmp))
        spoken = [speech.speak(s).audio for s in SENTENCES[1:3]]
        gap = np.zeros(int(1.2 * 16_000), dtype=np.float32)
        audio = with_silence(np.concatenate([spoken[0], gap, spoken[1]]), 0.3, 1.5)
        recognizer = StreamingRecognizer.load(
            "tiny.en", RecognizerOptions(), precision="int8", cache_root=tiny_en_cache()
        )
        kept: dict[str, list[float]] = {"prefix": [], "none": []}
        with machine_share(exclusive=True), namespace() as name:
            whole = run_inside(name, partial(whole_run, recognizer, audio), 300)
            expected = [w for w in _tokens(whole) if len(w) >= 4]
            print(f"uninterrupted: {whole!r} ({len(expected)} words of 4+ letters)")
            for i in range(args.runs):
                for variant in ("none", "prefix") if i % 2 else ("prefix", "none"):
                    run = partial(cut_run, recognizer, audio, args.back, variant == "prefix")
                    text = run_inside(name, run, 300)
                    counts = collections.Counter(_tokens(text))
                    once = sum(counts[w] == 1 for w in expected)
                    twice = sum(counts[w] > 1 for w in expected)
                    kept[variant].append(once / len(expected))
                    print(
                        f"{variant:6s} kept {once}/{len(expected)}, repeated {twice}, "
                        f"load {os.getloadavg()[0]:.1f}: {text!r}"
                    )
    for variant, values in kept.items():
        print(f"{variant:6s} words kept {np.mean(values):.2f} ({len(values)} runs)")
    print(f"words kept, prefix/none: {np.mean(kept['prefix']) / np.mean(kept['none']):.2f}")


if __name__ == "__main__":
    main()
