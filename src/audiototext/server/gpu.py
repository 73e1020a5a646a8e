"""GPU memory and utilisation for the metrics, when the machine has an NVIDIA GPU.

Read with ``nvidia-smi`` (installed with the driver; no Python binding to depend on) in a
daemon thread every ``interval_s``: a scrape must not wait for a child process, so it reads
the last sample. Without ``nvidia-smi`` nothing runs and there are no samples.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from dataclasses import dataclass

__all__ = ["GpuSample", "GpuSampler", "parse_nvidia_smi"]

log = logging.getLogger(__name__)

QUERY = "index,name,memory.used,memory.total,utilization.gpu"
_MIB = 1 << 20


@dataclass(frozen=True)
class GpuSample:
    index: str
    name: str
    memory_used_bytes: float
    memory_total_bytes: float
    utilization: float  # 0..1


def parse_nvidia_smi(text: str) -> list[GpuSample]:
    """``nvidia-smi --query-gpu=QUERY --format=csv,noheader,nounits`` → one sample per GPU
    (rows it cannot read, e.g. ``[N/A]`` fields, are skipped)."""
    samples = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 5:
            continue
        try:
            used, total, busy = float(fields[2]), float(fields[3]), float(fields[4])
        except ValueError:
            continue
        samples.append(GpuSample(fields[0], fields[1], used * _MIB, total * _MIB, busy / 100))
    return samples


class GpuSampler:
    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self.samples: list[GpuSample] = []
        self._binary = shutil.which("nvidia-smi")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return self._binary is not None

    def start(self) -> None:
        if self._binary is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def sample_once(self) -> None:
        if self._binary is None:
            return
        try:
            out = subprocess.run(
                [self._binary, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            log.debug("nvidia-smi failed: %s", exc)
            self.samples = []
            return
        self.samples = parse_nvidia_smi(out)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.interval_s)
