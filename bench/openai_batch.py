"""A file through OpenAI's API (``/v1/audio/transcriptions``) against ``audiototext transcribe``.

    python bench/openai_batch.py [--seconds 60] [--runs 5]

One espeak-ng WAV of ``--seconds`` (sentences with 1.2-s pauses), tiny.en int8, the same
options both ways (beam 5, Silero VAD first: what the server's file transcriber uses). Per
round, alternating which goes first:

* api: the official ``openai`` client's ``audio.transcriptions.create`` (whole request: upload,
  transcription, answer) against one ``audiototext serve`` started before the rounds and
  warmed by one request (its model loaded, as a running server's is);
* cli: ``audiototext transcribe --vad`` as a command (process start and model load included:
  what a person running the CLI pays per file);
* core: ``Transcriber.transcribe`` in this process, model already loaded (the work alone).

Prints each run, the medians, and api/cli, api/core. Notes: bench/NOTES.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

from support.speech import SpeechSynthesizer, join_with_gaps, write_wav  # noqa: E402

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things.",
    "She sells sea shells by the sea shore.",
    "We will meet at the train station tomorrow morning.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
)
CLI = [sys.executable, "-m", "audiototext.cli"]


def _speech_wav(folder: Path, seconds: float) -> Path:
    (folder / "speech").mkdir()
    synth = SpeechSynthesizer(folder / "speech")
    parts, total, i = [], 0.0, 0
    while total < seconds - 3.0:
        speech = synth.speak(SENTENCES[i % len(SENTENCES)])
        parts.append(speech.audio)
        total += speech.duration_s + 1.2
        i += 1
    audio, _ = join_with_gaps(parts, 1.2)
    return write_wav(folder / "talk.wav", audio, 16_000)


def _serve(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", "0", "--http-port", "0", "--model", "tiny.en"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for _ in range(10):
        line = proc.stdout.readline()
        if "web page:" in line:
            return proc, line.split("web page:")[1].strip().rstrip("/") + "/v1"
    proc.kill()
    raise SystemExit("the server printed no web page address")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    import openai

    from audiototext.inference import TranscribeOptions, Transcriber

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        wav = _speech_wav(folder, args.seconds)
        data = wav.read_bytes()
        duration = (len(data) - 44) / 2 / 16_000
        print(f"file: {duration:.1f} s of espeak-ng speech, tiny.en int8, beam 5, VAD")
        core = Transcriber.load("tiny.en", precision="int8")
        options = TranscribeOptions(vad=True, beam_size=5, best_of=5)
        proc, base_url = _serve(env)
        texts: dict[str, str] = {}
        try:
            client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=900)
            client.audio.transcriptions.create(model="whisper-1", file=("w.wav", data))  # warm

            def api() -> float:
                began = time.perf_counter()
                doc = client.audio.transcriptions.create(model="whisper-1", file=("t.wav", data))
                spent = time.perf_counter() - began
                texts["api"] = doc.text
                return spent

            def cli() -> float:
                began = time.perf_counter()
                subprocess.run(
                    [*CLI, "transcribe", str(wav), "--precision", "int8", "--vad", "-o", tmp],
                    env=env,
                    check=True,
                    capture_output=True,
                )
                spent = time.perf_counter() - began
                texts["cli"] = " ".join((folder / "talk.txt").read_text().split())
                return spent

            def in_process() -> float:
                began = time.perf_counter()
                text = " ".join(s.text.strip() for s in core.transcribe(str(wav), options))
                spent = time.perf_counter() - began
                texts["core"] = text
                return spent

            kinds = {"api": api, "cli": cli, "core": in_process}
            times: dict[str, list[float]] = {k: [] for k in kinds}
            order = list(kinds)
            for r in range(args.runs):
                for kind in order:
                    times[kind].append(kinds[kind]())
                print(f"round {r + 1}: " + ", ".join(f"{k} {times[k][-1]:.2f} s" for k in order))
                order = order[1:] + order[:1]  # rotate who goes first
        finally:
            proc.terminate()
            proc.wait(30)
    med = {k: statistics.median(v) for k, v in times.items()}
    for kind, value in med.items():
        print(f"{kind}: median {value:.2f} s ({duration / value:.1f}x real time)")
    print(f"api / cli = {med['api'] / med['cli']:.2f}; api / core = {med['api'] / med['core']:.2f}")
    print(f"same text api/cli/core: {texts['api'] == texts['cli'] == texts['core']}")


if __name__ == "__main__":
    main()
