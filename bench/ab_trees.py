"""Speed of two source trees against each other: file transcription and the streaming engine.

    .venv/bin/python bench/ab_trees.py --before TREE [--after TREE] [--repeats 5]

For a refactor that must not change speed: each repeat runs the before and the after tree in
fresh processes, alternating which goes first, on the same audio and model settings:

* file: tiny.en int8, beam 5, 2 threads, the fables corpus (bench/corpus.py, ~6.5 min);
* streaming: the streaming tests' clip set through one recognizer in 100-ms chunks, each
  processed before the next (adaptive control off), so both trees do the same work.

It prints the median wall and CPU time of each and the ratio after/before; the machine is
shared, so read a ratio together with its spread (min-max of the per-pair ratios).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(kind: str, root: Path) -> None:
    sys.path[:0] = [str(root / "src"), str(root / "tests"), str(root / "tests" / "streaming")]
    os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
    from audiototext.inference import WhisperModel
    from audiototext.models import ModelCache
    from audiototext.models.manager import pull

    path = pull("tiny.en", precision="int8", cache=ModelCache(Path(os.environ["AUDIOTOTEXT_HOME"])))
    model = WhisperModel(path.entry.path)
    if kind == "file":
        from audiototext.inference import Transcriber

        spec = importlib.util.spec_from_file_location("bench_corpus", HERE / "corpus.py")
        assert spec is not None and spec.loader is not None
        corpus = importlib.util.module_from_spec(spec)
        sys.modules["bench_corpus"] = corpus
        spec.loader.exec_module(corpus)
        clips = corpus.build_corpus(Path(tempfile.gettempdir()) / "audiototext-bench-corpus")
        transcriber = Transcriber(model)
        wall, cpu = time.perf_counter(), time.process_time()
        for clip in clips:
            list(transcriber.transcribe(clip.path))
    else:
        from audiototext.audio import SileroVad
        from audiototext.streaming import RecognizerOptions, StreamingRecognizer

        tests_corpus = importlib.import_module("corpus")
        helpers = importlib.import_module("streaming_helpers")
        speech = importlib.import_module("support.speech")
        speech_dir = Path(tempfile.gettempdir()) / "ab-trees-espeak"
        speech_dir.mkdir(exist_ok=True)
        synth = speech.SpeechSynthesizer(speech_dir)
        clips = tests_corpus.clip_set(synth)
        options = RecognizerOptions(adaptive_partials=False, adaptive_finals=False)
        rec = StreamingRecognizer(model, options, model_name="tiny.en", vad=SileroVad())
        wall, cpu = time.perf_counter(), time.process_time()
        for audio, _ in clips:
            asyncio.run(helpers.stream_audio(rec.open(), audio, 16_000, chunk=100))
        rec.close()
    print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}))


def run(kind: str, root: Path, home: Path) -> dict[str, float]:
    env = {**os.environ, "AUDIOTOTEXT_HOME": str(home), "PYTHONPATH": str(root / "src")}
    out = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--root", str(root)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path)
    parser.add_argument("--after", type=Path, default=HERE.parent)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kinds", default="file,streaming")
    parser.add_argument("--worker", choices=("file", "streaming"))
    parser.add_argument("--root", type=Path)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.root)
        return
    if args.before is None:
        parser.error("--before TREE is required")
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    homes = {name: Path(tempfile.mkdtemp(prefix=f"ab-{name}-")) for name in trees}
    for kind in args.kinds.split(","):
        times: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        for i in range(args.repeats):
            order = ["before", "after"] if i % 2 == 0 else ["after", "before"]
            for name in order:
                times[name].append(run(kind, trees[name], homes[name]))
            print(
                f"{kind} {i + 1}/{args.repeats}: before {times['before'][-1]['wall']:.2f} s, "
                f"after {times['after'][-1]['wall']:.2f} s (load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        for measure in ("wall", "cpu"):
            b = [t[measure] for t in times["before"]]
            a = [t[measure] for t in times["after"]]
            pairs = [x / y for x, y in zip(a, b, strict=True)]
            print(
                f"{kind} {measure}: before median {statistics.median(b):.2f} s, after "
                f"{statistics.median(a):.2f} s, after/before median {statistics.median(pairs):.3f} "
                f"(pairs {min(pairs):.3f}-{max(pairs):.3f})"
            )


if __name__ == "__main__":
    main()
