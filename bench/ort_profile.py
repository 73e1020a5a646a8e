"""Where ONNX Runtime's time goes in a file transcription, operator by operator.

Turns on ORT's own profiler (``enable_profiling``) for the engine's sessions (by wrapping the
session options the engine builds; nothing in the package changes), transcribes a corpus, and
prints per session the share of each operator type, then, for the decoder, the most expensive
nodes per decoding step (runs shorter than ``--step-ms``; a prompt's prefill is longer), and
the time around the ORT calls (Python: logit rules, search, bookkeeping).

    PYTHONPATH=src python bench/ort_profile.py [--model tiny.en|base] [--corpus human-long|
        spanish|espeak|...] [--beam-size 5] [--threads 2] [--precision int8]
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import onnxruntime as ort

from audiototext.inference import ort_session, whisper
from audiototext.inference.transcribe import TranscribeOptions, Transcriber

OUT = Path(__file__).parent / "out"


def _clips(corpus: str) -> list[Any]:
    import corpus_real
    from corpus import build_corpus, build_spanish_corpus

    if corpus == "espeak":
        return build_corpus(OUT / "corpus")
    if corpus == "spanish":
        return build_spanish_corpus(OUT / "corpus-es")
    return corpus_real.build(corpus, OUT / "real")


def _kernels(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]


def _report(path: str, step_us: float) -> None:
    events = json.loads(Path(path).read_text())
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    kernels = _kernels(events)
    by_op: Counter[str] = Counter()
    for e in kernels:
        by_op[e["args"]["op_name"]] += e["dur"]
    total = sum(by_op.values()) or 1
    run_ms = sum(b - a for a, b in runs) / 1000
    print(f"session {Path(path).name}: {len(runs)} runs, {run_ms:.0f} ms in runs")
    print("  by operator (If includes the nodes of its branches, which are listed too):")
    for op, us in by_op.most_common(12):
        print(f"    {op:34s} {100 * us / total:5.1f} %  {us / 1000:8.1f} ms")
    steps = [r for r in runs if r[1] - r[0] < step_us]
    if len(steps) < 10:
        return
    starts = [a for a, _ in steps]
    by_node: Counter[tuple[str, str]] = Counter()
    for e in kernels:
        i = bisect.bisect_right(starts, e["ts"]) - 1
        if i >= 0 and e["ts"] <= steps[i][1]:
            by_node[(e["args"]["op_name"], e["name"].removesuffix("_kernel_time"))] += e["dur"]
    mean_us = sum(b - a for a, b in steps) / len(steps)
    print(f"  {len(steps)} steps, {mean_us / 1000:.2f} ms each; the costliest nodes per step:")
    for (op, name), us in by_node.most_common(12):
        print(
            f"    {op:32s} {name[:36]:36s} {us / len(steps):8.1f} µs  "
            f"{100 * us / len(steps) / mean_us:5.1f} %"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--corpus", default="human-long")
    ap.add_argument("--beam-size", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--step-ms", type=float, default=40.0, help="runs shorter than this are steps")
    args = ap.parse_args()
    clips = _clips(args.corpus)
    prefix = tempfile.mkdtemp(prefix="ort-profile-")
    build = ort_session._session_options
    sessions: list[ort.InferenceSession] = []

    def profiled(config: Any) -> ort.SessionOptions:
        options = build(config)
        options.enable_profiling = True
        options.profile_file_prefix = f"{prefix}/session{len(sessions)}"
        return options

    class Kept(ort.InferenceSession):  # type: ignore[misc]
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            sessions.append(self)

    setattr(ort_session, "_session_options", profiled)  # noqa: B010
    setattr(ort, "InferenceSession", Kept)  # noqa: B010  (ort_session reads ort.InferenceSession)
    ort_time = {"step": 0.0, "prefill": 0.0}
    for owner, name in ((whisper.KVDecoder, "step"), (whisper.KVDecoder, "prefill")):
        fn = getattr(owner, name)

        def timed(*a: Any, _fn: Any = fn, _name: str = name, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                ort_time[_name] += time.perf_counter() - t

        setattr(owner, name, timed)
    model = Transcriber.load(
        args.model, precision=args.precision, device="cpu", threads=args.threads
    )
    opts = TranscribeOptions(beam_size=args.beam_size)
    t = time.perf_counter()
    for c in clips:
        list(model.transcribe(str(c.path), opts))
    wall = time.perf_counter() - t
    print(
        f"{args.model} {args.precision}, {args.corpus} ({len(clips)} files), beam "
        f"{args.beam_size}, {args.threads} threads: transcription {wall:.2f} s; decoder "
        f"steps {ort_time['step']:.2f} s, prefills {ort_time['prefill']:.2f} s"
    )
    for s in sessions:
        path = s.end_profiling()
        if path:  # a session that never ran (another precision's) writes no profile
            _report(path, args.step_ms * 1000)


if __name__ == "__main__":
    main()
