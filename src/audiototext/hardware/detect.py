"""Detect CPU features, memory and ONNX Runtime execution providers."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["GPU_PROVIDERS", "HardwareProfile", "detect", "pick_precision"]

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
    "amx_int8",
    "neon",
    "asimddp",
)


@dataclass(frozen=True)
class HardwareProfile:
    machine: str
    cpu_model: str
    logical_cores: int
    physical_cores: int
    memory_total_mb: int
    cpu_flags: tuple[str, ...]
    providers: tuple[str, ...]

    @property
    def gpu_providers(self) -> tuple[str, ...]:
        return tuple(p for p in GPU_PROVIDERS if p in self.providers)

    def to_json(self) -> dict[str, object]:
        return {
            "machine": self.machine,
            "cpu_model": self.cpu_model,
            "logical_cores": self.logical_cores,
            "physical_cores": self.physical_cores,
            "memory_total_mb": self.memory_total_mb,
            "cpu_flags": list(self.cpu_flags),
            "providers": list(self.providers),
            "gpu_providers": list(self.gpu_providers),
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
    return HardwareProfile(
        machine=platform.machine(),
        cpu_model=model,
        logical_cores=logical,
        physical_cores=physical,
        memory_total_mb=int(psutil.virtual_memory().total // 2**20),
        cpu_flags=flags,
        providers=tuple(ort.get_available_providers()),
    )


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
