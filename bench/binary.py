"""The one-file executable against the installed package: start-up, peak memory, size.

    python bench/binary.py [--binary dist/audiototext-<version>-linux-<arch>] [--repeats 3]

Per round, alternating the two: ``transcribe`` of a 5-s espeak-ng WAV (wall time of the whole
command) and ``serve`` until it prints its page's address (both listeners up, model loaded);
for the file both cold (an empty HOME: it unpacks first) and warm (unpacked). Then the peak
memory of ``serve`` idle and after streaming 4 sentences into it at full speed: VmHWM of every
process of the server (the file runs as two: the launcher's small bootloader waiting for the
application it started), read from /proc. The installed package runs from this interpreter
with the same tiny.en int8 model already in its cache, so both compare the same work.
Notes: bench/NOTES.md, "One file".
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

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

from support.speech import SpeechSynthesizer, with_silence, write_wav  # noqa: E402

TEXT = "Rice is often served in round bowls. The juice of lemons makes fine punch."
STREAM = (
    "Please call Stella and ask her to bring these things.",
    "We will meet at the train station tomorrow morning.",
    "She sells sea shells by the sea shore.",
    "The quick brown fox jumps over the lazy dog.",
)


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        out += _tree(int(child))
    return out


def _hwm_mb(pid: int) -> list[float]:
    peaks = []
    for p in _tree(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return peaks


def _serve(cmd: list[str], env: dict[str, str], stream: Path | None, client: list[str]) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*cmd, "serve", "--port", "0", "--http-port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        grpc_line = proc.stdout.readline()
        proc.stdout.readline()  # "web page: ..."
        ready = time.perf_counter() - started
        target = grpc_line.split("grpc://")[1].strip()
        time.sleep(2)
        idle = _hwm_mb(proc.pid)
        streaming = None
        if stream is not None:
            subprocess.run(
                [*client, "stream", str(stream), "--server", target, "--speed", "0"],
                env=env,
                check=True,
                capture_output=True,
            )
            streaming = _hwm_mb(proc.pid)
        return {"ready_s": ready, "idle_mb": idle, "streaming_mb": streaming}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _transcribe(cmd: list[str], env: dict[str, str], wav: Path, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [*cmd, "transcribe", str(wav), "--format", "txt", "-o", str(out)],
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from audiototext.models.manager import pull

    work = Path(tempfile.mkdtemp(prefix="bench-binary-"))
    speech = SpeechSynthesizer(work)
    wav = write_wav(work / "five.wav", with_silence(speech.speak(TEXT).audio, 0, 0), 16_000)
    stream_audio = [with_silence(speech.speak(s).audio, 0.3, 1.0) for s in STREAM]
    import numpy as np

    stream_wav = write_wav(work / "stream.wav", np.concatenate(stream_audio), 16_000)
    cache = work / "installed-cache"
    os.environ["AUDIOTOTEXT_HOME"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    pull("tiny.en", precision="int8")  # the installed package's model, converted once
    installed_cmd = [sys.executable, "-m", "audiototext.cli"]
    installed_env = {**os.environ, "AUDIOTOTEXT_HOME": str(cache)}
    binary_cmd = [str(args.binary.resolve())]
    results: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        results.setdefault(key, []).append(value)

    for i in range(args.repeats):
        home = work / f"home-{i}"
        home.mkdir()
        env = {"HOME": str(home), "PATH": "/nonexistent", "LANG": "C.UTF-8"}
        add("binary transcribe 5 s, cold (unpack) s", _transcribe(binary_cmd, env, wav, work))
        add("binary transcribe 5 s, warm s", _transcribe(binary_cmd, env, wav, work))
        add("installed transcribe 5 s s", _transcribe(installed_cmd, installed_env, wav, work))
        fresh = work / f"home-serve-{i}"
        fresh.mkdir()
        cold = _serve(binary_cmd, {**env, "HOME": str(fresh)}, None, binary_cmd)
        add("binary serve ready, cold (unpack) s", cold["ready_s"])
        warm = _serve(binary_cmd, env, stream_wav, binary_cmd)
        add("binary serve ready, warm s", warm["ready_s"])
        add("binary serve idle peak MB (all processes)", sum(warm["idle_mb"]))
        add("binary serve streaming peak MB (all processes)", sum(warm["streaming_mb"]))
        add("binary serve streaming peak MB (application)", max(warm["streaming_mb"]))
        inst = _serve(installed_cmd, installed_env, stream_wav, installed_cmd)
        add("installed serve ready s", inst["ready_s"])
        add("installed serve idle peak MB", sum(inst["idle_mb"]))
        add("installed serve streaming peak MB", sum(inst["streaming_mb"]))
    size = args.binary.stat().st_size
    print(f"file: {args.binary} {size / 2**20:.1f} MiB")
    for key, values in results.items():
        print(
            f"{key:>48}: median {statistics.median(values):7.2f}  "
            + " ".join(f"{v:.2f}" for v in values)
        )
    print(json.dumps({k: statistics.median(v) for k, v in results.items()}))


if __name__ == "__main__":
    main()
