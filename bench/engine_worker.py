"""An engine loaded once in a process of its own, transcribing files on request.

The file benches (transcribe_vs_faster_whisper.py, batched.py) give it the Python source that
loads their engine and defines ``run()`` (returning the files' texts); each line written to
the process's stdin is one pass, answered by its wall time and texts.
"""

from __future__ import annotations

import json
import subprocess
import sys

_LOOP = r"""
for _ in sys.stdin:
    t0 = time.perf_counter()
    texts = run()
    print(json.dumps({"wall_s": time.perf_counter() - t0, "texts": texts}), flush=True)
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

    def run(self) -> tuple[float, list[str]]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write("run\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise SystemExit(f"benchmark worker exited with {self._proc.wait()}")
        data = json.loads(line)
        return float(data["wall_s"]), list(data["texts"])

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=60)
