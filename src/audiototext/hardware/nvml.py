"""NVIDIA GPUs through NVML (``nvidia-ml-py``): name, memory, utilisation, driver and CUDA.

NVML is the driver's own library, so it answers only where the driver is installed; its
absence is the normal case on a CPU machine and is reported as a reason, never raised. The
binding is imported when asked (it is the ``gpu`` extra). The server's periodic GPU gauges
stay in ``server/gpu.py`` (``nvidia-smi`` in a thread); this is the one-off inventory
``doctor`` and the system APIs show.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

__all__ = ["NvidiaGpu", "NvmlReport", "read_nvml"]

_MIB = 1 << 20


@dataclass(frozen=True)
class NvidiaGpu:
    index: int
    name: str
    memory_total_mb: int
    memory_free_mb: int
    utilization_percent: float | None  # None when the GPU does not report it


@dataclass(frozen=True)
class NvmlReport:
    available: bool
    reason: str = ""  # why there is no NVML reading, when not available
    driver_version: str = ""
    cuda_version: str = ""  # the highest CUDA version the driver supports, e.g. "12.4"
    gpus: tuple[NvidiaGpu, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, object]:
        return {
            "available": self.available,
            "reason": self.reason,
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
            "gpus": [
                {
                    "index": g.index,
                    "name": g.name,
                    "memory_total_mb": g.memory_total_mb,
                    "memory_free_mb": g.memory_free_mb,
                    "utilization_percent": g.utilization_percent,
                }
                for g in self.gpus
            ],
        }


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _cuda(version: int) -> str:
    # NVML encodes CUDA 12.4 as 12040.
    return f"{version // 1000}.{(version % 1000) // 10}"


def _reason(nvml: Any, exc: Exception) -> str:
    missing = getattr(nvml, "NVMLError_LibraryNotFound", None)
    no_driver = getattr(nvml, "NVMLError_DriverNotLoaded", None)
    if missing is not None and isinstance(exc, missing):
        return "no NVIDIA driver: the NVML library (libnvidia-ml) is not installed"
    if no_driver is not None and isinstance(exc, no_driver):
        return "no NVIDIA driver loaded (the NVML library is present, the kernel module is not)"
    return f"NVML failed: {exc}"


def read_nvml(module: ModuleType | None = None) -> NvmlReport:
    """Every NVIDIA GPU NVML sees (``module``: a stand-in for ``pynvml`` in tests)."""
    nvml: Any = module
    if nvml is None:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            return NvmlReport(
                False, "nvidia-ml-py is not installed (pip install 'audiototext[gpu]')"
            )
    error: type[Exception] = getattr(nvml, "NVMLError", Exception)
    try:
        nvml.nvmlInit()
    except error as exc:
        return NvmlReport(False, _reason(nvml, exc))
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        cuda = _cuda(int(nvml.nvmlSystemGetCudaDriverVersion()))
        gpus = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                busy: float | None = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except error:  # some GPUs (and vGPUs) do not report utilisation
                busy = None
            gpus.append(
                NvidiaGpu(
                    index=index,
                    name=_text(nvml.nvmlDeviceGetName(handle)),
                    memory_total_mb=int(memory.total) // _MIB,
                    memory_free_mb=int(memory.free) // _MIB,
                    utilization_percent=busy,
                )
            )
    except error as exc:
        return NvmlReport(False, _reason(nvml, exc))
    finally:
        with contextlib.suppress(error):
            nvml.nvmlShutdown()
    if not gpus:
        return NvmlReport(False, "the NVIDIA driver reports no GPU", driver, cuda)
    return NvmlReport(True, "", driver, cuda, tuple(gpus))
