"""The streaming engine's accuracy gap to file transcription, final by final, on audio time.

    PYTHONPATH=src .venv/bin/python bench/streaming_gap.py [--streams 16] [--corpus both]
        [--option name=value ...] [--verbose]

Decodes ``bench/capacity.py``'s stream programs (stream k: the recorded people and espeak clips
from the k-th on, with pauses) through one ``StreamingRecognizer`` in an *audio pass*: each
100-ms chunk is processed before the next, partial timing and final settings depend on the audio
alone (``adaptive_partials`` / ``adaptive_finals`` off: no final is reduced). So the result is
deterministic and the machine's load does not enter it. Prints, per clip spoken, the reference,
the streaming finals and the file transcription of the same clip (``--verbose``), the total
word errors of both, finals decoded again alone (``FinalDecoder.retried``) and the encoder
frames spent on finals. ``--option`` sets a ``RecognizerOptions`` field (JSON value) to compare
variants. bench/NOTES.md "streamwer".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from audiototext.streaming import (
    RecognizerOptions,
    StreamingRecognizer,
    StreamOptions,
    StreamResult,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import capacity  # puts tests/streaming (streaming_helpers) on the path

edit_distance, normalise = capacity.edit_distance, capacity.normalise

CHUNK = capacity.RATE // 10


async def audio_pass(rec: StreamingRecognizer, audio: np.ndarray) -> list[StreamResult]:
    session = rec.open(StreamOptions())
    results: list[StreamResult] = []

    async def collect() -> None:
        async for event in session.events():
            if isinstance(event, StreamResult):
                results.append(event)

    reader = asyncio.create_task(collect())
    for at in range(0, audio.shape[0], CHUNK):
        session.accept(audio[at : at + CHUNK], capacity.RATE)
        await session.wait_idle()
    await session.finish()
    await reader
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=16, help="programs k = 0..N-1 (default 16)")
    p.add_argument("--seconds", type=float, default=40.0, help="speech per program")
    p.add_argument("--corpus", choices=("both", "human", "espeak"), default="both")
    p.add_argument("--option", action="append", default=[], help="RecognizerOptions name=json")
    p.add_argument("--verbose", action="store_true", help="every clip's texts")
    args = p.parse_args()
    if args.streams < 1:
        p.error("--streams must be positive")
    overrides: dict[str, Any] = {"adaptive_partials": False, "adaptive_finals": False}
    for item in args.option:
        name, sep, value = item.partition("=")
        if not sep:
            p.error(f"--option {item!r}: expected name=value")
        try:
            overrides[name] = json.loads(value)
        except json.JSONDecodeError:
            p.error(f'--option {item!r}: the value must be JSON (true, 1.5, "padded")')
    try:
        options = RecognizerOptions(**overrides)
    except (TypeError, ValueError) as exc:
        p.error(f"--option: {exc}")
    from audiototext._blas import limit_blas_threads

    limit_blas_threads(1)
    items = capacity.catalogue(args.corpus)
    files = capacity.file_texts(items)
    loaded = StreamingRecognizer.load("tiny.en", precision="int8")
    model = loaded.model
    loaded.close()
    rec = StreamingRecognizer(model, options, model_name="tiny.en")
    words = stream_errors = file_errors = 0
    for k in range(args.streams):
        prog = capacity.program(items, k, args.seconds)
        results = asyncio.run(audio_pass(rec, prog.audio))
        finals = [(r.start_s, r.end_s, r.text) for r in results if r.is_final]
        hyps = capacity.hypotheses(prog.placed, finals)
        for (idx, _, _), hyp in zip(prog.placed, hyps, strict=True):
            ref = normalise(items[idx].text)
            es = edit_distance(ref, normalise(hyp))
            ef = edit_distance(ref, normalise(files[idx]))
            words += len(ref)
            stream_errors += es
            file_errors += ef
            if args.verbose:
                print(f"k={k} {items[idx].name}: {len(ref)} words, streaming {es} / file {ef}")
                print(f"  reference  {items[idx].text}")
                print(f"  streaming  {hyp}")
                print(f"  file       {files[idx]}")
    rec.close()
    print(
        f"{args.streams} programs, {words} words: streaming {stream_errors} errors "
        f"({100 * stream_errors / words:.2f} %), "
        f"file {file_errors} ({100 * file_errors / words:.2f} %); "
        f"finals decoded again alone {getattr(rec.final_decoder, 'retried', 'n/a')}, "
        f"final encoder frames {rec.final_decoder.frames_encoded}"
    )


if __name__ == "__main__":
    main()
