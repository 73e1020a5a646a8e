"""One long file in one pass against the same file cut at pauses into parts side by side.

The CLI cuts a single long file on a CPU by default (``--jobs 1`` keeps one pass). This runs
both ways on the same file, each in a fresh process, alternating (ABBA), and prints per mode:
wall time, process CPU, peak RSS, WER, and the CPU time of the busiest transcribing thread.

On a shared machine the wall time says how busy the other tenants were; the busiest thread's
CPU does not. On idle cores the transcription cannot end before its busiest thread has done
its work, and in one pass the calling thread does most of it (a decoder step barely splits
across two intra-op threads, bench/NOTES.md "speed"), so that figure is what the wall time
would be on idle cores, and its ratio is the gain of cutting the file there.

    python bench/split_cores.py [--corpus human-long|noisy-long] [--beam-size 5] [--rounds 2]
        [--threads 2] [--cache DIR]

Notes: bench/NOTES.md, "split".
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
import corpus_real

OUT = Path(__file__).parent / "out"

# The child: load, transcribe the file with ``jobs`` parts, report. ``progress`` is called on
# the thread that decodes each part, so the last call per thread gives that thread's CPU time
# (pool threads start from 0; the calling thread from its value before the transcription).
_CHILD = r"""
import json, os, sys, threading, time
t0 = time.perf_counter()
path, beam, threads, jobs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
from audiototext.inference.transcribe import Transcriber, TranscribeOptions
t = Transcriber.load("tiny.en", precision="int8", device="cpu", threads=max(1, threads // jobs))
main_thread = threading.get_ident()
cpu = {}
def progress(index, done_s):
    cpu[threading.get_ident()] = time.thread_time()
before = time.thread_time()
(result,) = t.transcribe_each([path], TranscribeOptions(beam_size=beam), jobs=jobs,
                              progress=progress)
if result.error is not None:
    raise SystemExit(str(result.error))
busiest = max((v - before if k == main_thread else v) for k, v in cpu.items())
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
times = os.times()
print(json.dumps({
    "wall_s": time.perf_counter() - t0, "cpu_s": times.user + times.system,
    "busiest_s": busiest, "threads": len(cpu), "peak_rss_mb": int(hwm.split()[1]) / 1024,
    "text": " ".join(s.text for s in result.segments),
}))
"""


def _run(path: Path, beam: int, threads: int, jobs: int, env: dict[str, str]) -> dict[str, float]:
    started = time.perf_counter()
    argv = [sys.executable, "-c", _CHILD, str(path), str(beam), str(threads), str(jobs)]
    out = subprocess.run(argv, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"child failed:\n{out.stderr[-3000:]}")
    data: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    data["process_s"] = time.perf_counter() - started
    return data


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--corpus", default="human-long", choices=("human-long", "noisy-long"))
    ap.add_argument("--beam-size", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2, help="ABBA rounds (4 runs per mode each)")
    ap.add_argument("--threads", type=int, default=2, help="in all; the parts share them")
    ap.add_argument("--cache", type=Path, default=None, help="AUDIOTOTEXT_HOME to use")
    args = ap.parse_args()

    from audiototext.evaluation import wer

    (clip,) = corpus_real.build(args.corpus, OUT / "real")
    home = args.cache or Path(tempfile.mkdtemp(prefix="bench-home-"))
    env = {**os.environ, "AUDIOTOTEXT_HOME": str(home)}
    modes = {"one pass": 1, "parts": args.threads}
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    texts: dict[str, str] = {}
    print(
        f"{args.corpus}: {clip.duration_s:.0f} s; tiny.en int8, beam {args.beam_size}, "
        f"{args.threads} threads in all; cpus={os.cpu_count()}; load {os.getloadavg()[0]:.1f}"
    )
    for _ in range(args.rounds):
        for order in (list(modes), list(modes)[::-1]):  # ABBA: neither always goes first
            for mode in order:
                data = _run(clip.path, args.beam_size, args.threads, modes[mode], env)
                runs[mode].append(data)
                texts[mode] = str(data["text"])
    med = {m: {k: statistics.median(float(r[k]) for r in rs) for k in rs[0] if k != "text"}
           for m, rs in runs.items()}  # fmt: skip
    for mode, m in med.items():
        walls = ", ".join(f"{r['process_s']:.2f}" for r in runs[mode])
        busiest = ", ".join(f"{r['busiest_s']:.2f}" for r in runs[mode])
        print(
            f"  {mode:>8}: wall {m['process_s']:.2f} s (runs {walls}), CPU {m['cpu_s']:.2f} s, "
            f"busiest thread {m['busiest_s']:.2f} s (runs {busiest}), "
            f"peak RSS {max(r['peak_rss_mb'] for r in runs[mode]):.0f} MB, "
            f"WER {100 * wer([clip.text], [texts[mode]]):.2f} %"
        )
    one, parts = med["one pass"], med["parts"]
    print(
        f"  parts / one pass: busiest thread {parts['busiest_s'] / one['busiest_s']:.3f} "
        f"(the wall ratio on idle cores), CPU {parts['cpu_s'] / one['cpu_s']:.3f}, "
        f"wall here {parts['process_s'] / one['process_s']:.3f}"
    )


if __name__ == "__main__":
    main()
