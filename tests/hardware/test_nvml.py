"""NVML: the real library's absence on this GPU-less machine, and the parsing path through a
stand-in for the ``pynvml`` module (no NVIDIA GPU exists here to read)."""

from __future__ import annotations

import importlib.util
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from audiototext.hardware.nvml import read_nvml


class _NVMLError(Exception):
    pass


class _LibraryNotFound(_NVMLError):
    pass


def _fake(gpus: list[dict[str, Any]], *, init_error: Exception | None = None) -> ModuleType:
    m = ModuleType("pynvml")
    calls: list[str] = []

    def init() -> None:
        calls.append("init")
        if init_error is not None:
            raise init_error

    def utilisation(handle: int) -> Any:
        if gpus[handle].get("util") is None:
            raise _NVMLError("Not Supported")
        return SimpleNamespace(gpu=gpus[handle]["util"], memory=0)

    m.NVMLError = _NVMLError  # type: ignore[attr-defined]
    m.NVMLError_LibraryNotFound = _LibraryNotFound  # type: ignore[attr-defined]
    m.nvmlInit = init  # type: ignore[attr-defined]
    m.nvmlShutdown = lambda: calls.append("shutdown")  # type: ignore[attr-defined]
    m.nvmlSystemGetDriverVersion = lambda: b"550.54.15"  # type: ignore[attr-defined]
    m.nvmlSystemGetCudaDriverVersion = lambda: 12040  # type: ignore[attr-defined]
    m.nvmlDeviceGetCount = lambda: len(gpus)  # type: ignore[attr-defined]
    m.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    m.nvmlDeviceGetName = lambda h: gpus[h]["name"]  # type: ignore[attr-defined]
    m.nvmlDeviceGetMemoryInfo = lambda h: SimpleNamespace(  # type: ignore[attr-defined]
        total=gpus[h]["total"], free=gpus[h]["free"], used=gpus[h]["total"] - gpus[h]["free"]
    )
    m.nvmlDeviceGetUtilizationRates = utilisation  # type: ignore[attr-defined]
    m.calls = calls  # type: ignore[attr-defined]
    return m


def test_gpus_are_read_and_nvml_is_shut_down() -> None:
    fake = _fake(
        [
            {"name": b"NVIDIA A10", "total": 24 << 30, "free": 20 << 30, "util": 37},
            {"name": "Tesla T4", "total": 16 << 30, "free": 1 << 30, "util": None},
        ]
    )
    got = read_nvml(fake)
    assert got.available and got.reason == ""
    assert (got.driver_version, got.cuda_version) == ("550.54.15", "12.4")
    a10, t4 = got.gpus
    assert (a10.name, a10.memory_total_mb, a10.memory_free_mb) == ("NVIDIA A10", 24576, 20480)
    assert a10.utilization_percent == 37.0
    assert t4.name == "Tesla T4" and t4.utilization_percent is None
    assert fake.calls == ["init", "shutdown"]
    assert got.to_json()["gpus"][0]["memory_free_mb"] == 20480  # type: ignore[index]


def test_no_library_and_no_gpu_are_reasons() -> None:
    missing = read_nvml(_fake([], init_error=_LibraryNotFound("NVML Shared Library Not Found")))
    assert not missing.available and "no NVIDIA driver" in missing.reason
    empty = read_nvml(_fake([]))
    assert not empty.available and "reports no GPU" in empty.reason
    other = read_nvml(_fake([], init_error=_NVMLError("Insufficient Permissions")))
    assert "Insufficient Permissions" in other.reason


@pytest.mark.skipif(importlib.util.find_spec("pynvml") is None, reason="nvidia-ml-py absent")
def test_the_real_nvml_here() -> None:
    """The real binding on this machine. Without an NVIDIA driver (this machine has none) the
    answer is a reason, not an exception; with one, every GPU has a name and memory."""
    got = read_nvml()
    if got.available:
        assert got.gpus and all(g.name and g.memory_total_mb > 0 for g in got.gpus)
    else:
        assert got.reason and not got.gpus
        assert "NVIDIA" in got.reason or "NVML" in got.reason
