"""Detect CPU features, memory, container limits and ONNX Runtime execution providers.

:func:`detect` is what does not change while the process runs (read once); :func:`observe`
is what does (free memory and disk, clock speed, the GPUs' state), read when asked.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from audiototext.hardware.cgroups import CgroupLimits, read_cgroup_limits
from audiototext.hardware.nvml import NvmlReport, read_nvml

__all__ = [
    "GPU_PROVIDERS",
    "HardwareProfile",
    "MachineState",
    "detect",
    "free_disk_bytes",
    "instruction_sets",
    "observe",
    "pick_precision",
]

# Execution providers that mean "a GPU-class accelerator", in the order the engine prefers.
GPU_PROVIDERS: tuple[str, ...] = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    "OpenVINOExecutionProvider",
)

_INTERESTING_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "neon",
    "asimd",
    "asimddp",
)

# The instruction-set families ONNX Runtime's CPU kernels pick between, and the /proc/cpuinfo
# flags that show each (x86: flags; Arm: Features, where NEON is "asimd" on 64-bit).
_INSTRUCTION_SETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AVX2", ("avx2",)),
    ("AVX-512", ("avx512f",)),
    ("VNNI", ("avx512_vnni", "avx_vnni")),
    ("AMX", ("amx_tile", "amx_int8")),
    ("NEON", ("neon", "asimd")),
)


def instruction_sets(flags: tuple[str, ...]) -> tuple[str, ...]:
    """The families among :data:`_INSTRUCTION_SETS` that ``flags`` show."""
    return tuple(name for name, shown_by in _INSTRUCTION_SETS if any(f in flags for f in shown_by))


@dataclass(frozen=True)
class HardwareProfile:
    machine: str
    cpu_model: str
    logical_cores: int
    physical_cores: int
    memory_total_mb: int
    cpu_flags: tuple[str, ...]
    providers: tuple[str, ...]
    cpu_freq_max_mhz: float | None = None  # None where the kernel does not say
    # Cores this process may use: its CPU affinity, lowered to a container's CPU quota.
    usable_cores: int = 0
    cgroup: CgroupLimits = field(default_factory=lambda: CgroupLimits(0, None, None, None))

    @property
    def gpu_providers(self) -> tuple[str, ...]:
        return tuple(p for p in GPU_PROVIDERS if p in self.providers)

    @property
    def instruction_sets(self) -> tuple[str, ...]:
        return instruction_sets(self.cpu_flags)

    @property
    def memory_limit_mb(self) -> int:
        """Memory this process may use: the machine's, or its container's limit if lower."""
        limit = self.cgroup.memory_limit_bytes
        return self.memory_total_mb if limit is None else min(self.memory_total_mb, limit >> 20)

    def to_json(self) -> dict[str, object]:
        return {
            "machine": self.machine,
            "cpu_model": self.cpu_model,
            "logical_cores": self.logical_cores,
            "physical_cores": self.physical_cores,
            "usable_cores": self.usable_cores or self.logical_cores,
            "cpu_freq_max_mhz": self.cpu_freq_max_mhz,
            "memory_total_mb": self.memory_total_mb,
            "memory_limit_mb": self.memory_limit_mb,
            "cpu_flags": list(self.cpu_flags),
            "instruction_sets": list(self.instruction_sets),
            "cgroup": self.cgroup.to_json(),
            "providers": list(self.providers),
            "gpu_providers": list(self.gpu_providers),
        }


@dataclass(frozen=True)
class MachineState:
    """What changes while the process runs, read by :func:`observe`."""

    memory_available_mb: int  # the machine's, or what the container's limit leaves if less
    cpu_freq_mhz: float | None
    cache_dir: str
    disk_free_mb: int | None  # in the model cache's file system; None if it cannot be read
    nvml: NvmlReport

    def to_json(self) -> dict[str, object]:
        return {
            "memory_available_mb": self.memory_available_mb,
            "cpu_freq_mhz": self.cpu_freq_mhz,
            "cache_dir": self.cache_dir,
            "disk_free_mb": self.disk_free_mb,
            "nvidia": self.nvml.to_json(),
        }


def _cpuinfo() -> tuple[str, tuple[str, ...]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return model, ()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key in ("flags", "Features"):
            flags.update(value.split())
    return model, tuple(f for f in _INTERESTING_FLAGS if f in flags)


@lru_cache(maxsize=1)
def detect() -> HardwareProfile:
    import onnxruntime as ort
    import psutil

    model, flags = _cpuinfo()
    logical = os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    cgroup = read_cgroup_limits()
    return HardwareProfile(
        machine=platform.machine(),
        cpu_model=model,
        logical_cores=logical,
        physical_cores=physical,
        memory_total_mb=int(psutil.virtual_memory().total // 2**20),
        cpu_flags=flags,
        providers=tuple(ort.get_available_providers()),
        cpu_freq_max_mhz=_max_freq_mhz(),
        usable_cores=usable_cores(logical, cgroup),
        cgroup=cgroup,
    )


def usable_cores(logical: int, cgroup: CgroupLimits) -> int:
    """Cores the process may run on, lowered to the container's CPU quota (rounded up: a
    quota of 1.5 cores still runs two threads side by side, each part of the time)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = logical
    if cgroup.cpu_quota_cores is not None:
        cores = min(cores, max(1, math.ceil(cgroup.cpu_quota_cores)))
    return max(1, cores)


def _max_freq_mhz() -> float | None:
    import psutil

    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError):
        return None
    return float(freq.max) if freq is not None and freq.max > 0 else None


def observe(cache_dir: Path | None = None, profile: HardwareProfile | None = None) -> MachineState:
    """Free memory, clock speed, free disk in ``cache_dir`` (default: the model cache) and the
    NVIDIA GPUs now (blocking for a few milliseconds: call it from a thread in a server)."""
    import psutil

    from audiototext.models.cache import cache_home

    profile = profile or detect()
    folder = cache_dir or cache_home()
    available = int(psutil.virtual_memory().available // 2**20)
    limit, used = profile.cgroup.memory_limit_bytes, profile.cgroup.memory_usage_bytes
    if limit is not None:
        fresh = read_cgroup_limits()  # usage moves; the limit was read once
        used = fresh.memory_usage_bytes if fresh.memory_usage_bytes is not None else used
        if used is not None:
            available = min(available, max(0, (limit - used) >> 20))
    try:
        freq = psutil.cpu_freq()
        current = float(freq.current) if freq is not None and freq.current > 0 else None
    except (OSError, NotImplementedError):
        current = None
    free = free_disk_bytes(folder)
    return MachineState(
        memory_available_mb=available,
        cpu_freq_mhz=current,
        cache_dir=str(folder),
        disk_free_mb=None if free is None else int(free) >> 20,
        nvml=read_nvml(),
    )


def free_disk_bytes(folder: Path) -> float | None:
    """Free bytes on the file system of ``folder`` (or of its nearest existing parent)."""
    path = folder
    while not path.exists() and path.parent != path:
        path = path.parent
    try:
        return float(shutil.disk_usage(path).free)
    except OSError:
        return None


def pick_precision(profile: HardwareProfile, device: str = "auto") -> str:
    """The model variant for a device: fp16 on a CUDA-class GPU, int8 on CPU."""
    if device not in ("auto", "cpu", "gpu"):
        raise ValueError(f"device must be auto, cpu or gpu, not {device!r}")
    fp16_ok = {
        "CUDAExecutionProvider",
        "TensorrtExecutionProvider",
        "ROCMExecutionProvider",
        "MIGraphXExecutionProvider",
        "DmlExecutionProvider",
    }
    if device != "cpu" and any(p in fp16_ok for p in profile.gpu_providers):
        return "fp16"
    return "int8"
