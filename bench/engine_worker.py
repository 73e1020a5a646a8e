"""An engine loaded once in a process of its own, transcribing files on request.

The file benches (transcribe_vs_faster_whisper.py, batched.py) give it the Python source that
loads their engine and defines ``run()`` (returning the files' texts); each line written to
the process's stdin is one pass, answered by its wall time, its CPU time (``last_cpu_s``: all
of the process's threads; steadier than wall time when other work shares the cores, though
thread pools that spin while waiting count too) and texts.
"""

from __future__ import annotations

import json
import subprocess
import sys

_LOOP = r"""
for _ in sys.stdin:
    t0, c0 = time.perf_counter(), time.process_time()
    texts = run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "texts": texts}), flush=True)
"""


class EngineWorker:
    """``setup``: source that imports json, sys and time and defines ``run()``."""

    def __init__(self, setup: str, argv: list[str], env: dict[str, str]) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", setup + _LOOP, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.last_cpu_s = 0.0

    def run(self) -> tuple[float, list[str]]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write("run\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise SystemExit(f"benchmark worker exited with {self._proc.wait()}")
        data = json.loads(line)
        self.last_cpu_s = float(data["cpu_s"])
        return float(data["wall_s"]), list(data["texts"])

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=60)
