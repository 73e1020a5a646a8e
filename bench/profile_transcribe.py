"""Where a file transcription's time goes: start-up, encoder, decoder steps, fallbacks.

Counts and times, per file, by wrapping the engine's own methods in this process (nothing in
the package changes): windows (encoder runs), decoder prefills and steps, the temperature each
window ended at and how many decode attempts it took, tokens per window; and the start-up
(imports, model load) on its own. Prints a table; with ``--cprofile FILE`` also a cProfile
dump of the transcription.

    PYTHONPATH=src python bench/profile_transcribe.py [--corpus espeak|human|noisy|longform]
        [--beam-size 5] [--threads 2] [--cprofile out.prof]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
T0 = time.perf_counter()
from audiototext.inference import decoding, seek, whisper  # noqa: E402
from audiototext.inference.transcribe import TranscribeOptions, Transcriber  # noqa: E402

T_IMPORT = time.perf_counter() - T0

import corpus_real  # noqa: E402
from corpus import build_corpus  # noqa: E402

OUT = Path(__file__).parent / "out"


class Meter:
    """Wall time and calls of wrapped functions, by name."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def wrap(self, owner: Any, name: str, label: str) -> None:
        fn: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - t
                self.calls[label] += 1

        setattr(owner, name, timed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", default="longform")
    ap.add_argument("--beam-size", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--cprofile", type=Path)
    args = ap.parse_args()
    if args.corpus == "espeak":
        clips = build_corpus(OUT / "corpus")
    else:
        clips = corpus_real.build(args.corpus, OUT / "real")

    meter = Meter()
    meter.wrap(whisper.WhisperModel, "encode_each", "encoder")
    meter.wrap(whisper.KVDecoder, "prefill", "decoder prefill")
    meter.wrap(whisper.KVDecoder, "step", "decoder step")
    meter.wrap(decoding, "generate", "decode attempt")
    temps: Counter[float] = Counter()
    tokens: list[int] = []
    original = seek.decode_with_fallback

    def counted(*a: Any, **k: Any) -> Any:
        results = original(*a, **k)
        for r in results:
            temps[r.temperature] += 1
            tokens.append(len(r.tokens))
        return results

    seek.decode_with_fallback = counted  # type: ignore[assignment]

    t = time.perf_counter()
    model = Transcriber.load(
        "tiny.en", precision=args.precision, device="cpu", threads=args.threads
    )
    t_load = time.perf_counter() - t
    opts = TranscribeOptions(beam_size=args.beam_size)
    prof = cProfile.Profile() if args.cprofile else None
    from audiototext.evaluation import wer

    t = time.perf_counter()
    if prof:
        prof.enable()
    texts = []
    for c in clips:
        texts.append(" ".join(s.text for s in model.transcribe(str(c.path), opts)))
    if prof:
        prof.disable()
        prof.dump_stats(str(args.cprofile))
    t_run = time.perf_counter() - t
    audio_s = sum(c.duration_s for c in clips)
    print(
        f"corpus {args.corpus}: {len(clips)} files, {audio_s:.0f} s; beam {args.beam_size}; "
        f"threads {args.threads}; {args.precision}"
    )
    print(f"start-up: imports {T_IMPORT:.2f} s, model load {t_load:.2f} s")
    print(
        f"transcription {t_run:.2f} s (RTF {t_run / audio_s:.4f}); WER "
        f"{100 * wer([c.text for c in clips], texts):.2f} %"
    )
    for label in meter.seconds:
        s, n = meter.seconds[label], meter.calls[label]
        print(
            f"  {label:16s} {n:6d} calls {s:7.2f} s  {100 * s / t_run:5.1f} %  "
            f"{1000 * s / max(n, 1):7.2f} ms/call"
        )
    n_win = sum(temps.values())
    print(
        f"  windows {n_win}; decode attempts {meter.calls['decode attempt']}; final "
        f"temperatures {dict(sorted(temps.items()))}"
    )
    if tokens:
        print(
            f"  tokens per window: mean {sum(tokens) / len(tokens):.1f}, max {max(tokens)}; "
            f"tokens per audio second {sum(tokens) / audio_s:.2f}"
        )


if __name__ == "__main__":
    main()
