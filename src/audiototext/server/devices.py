"""A stream's processing device (``StreamConfig.device``): auto, cpu or gpu.

"auto" (or empty) is the server's choice: the device its default model runs on. "gpu" is
granted only when the hardware probe (:func:`audiototext.hardware.probe.probe_devices`)
found a GPU provider that creates sessions here; otherwise the request is refused with
FAILED_PRECONDITION and the probe's reason, so the client learns what is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from audiototext.server.status import Status, StatusError

if TYPE_CHECKING:
    from audiototext.hardware.probe import DeviceStatus

__all__ = ["DEVICES", "DeviceProbe", "check_device", "device_of", "real_probe"]

DEVICES = ("auto", "cpu", "gpu")

DeviceProbe = Callable[[], Sequence["DeviceStatus"]]  # blocking the first time: a thread


def real_probe() -> Sequence[DeviceStatus]:
    from audiototext.hardware.probe import probe_devices

    return probe_devices()


def device_of(value: str) -> str:
    """A request's device, lower-cased: "auto" for empty; INVALID_ARGUMENT if unknown."""
    device = value.strip().lower() or "auto"
    if device not in DEVICES:
        raise StatusError(
            Status.INVALID_ARGUMENT,
            f"StreamConfig.device is {value!r}; it must be auto (or empty), cpu or gpu",
        )
    return device


def check_device(device: str, statuses: Sequence[DeviceStatus]) -> None:
    """Refuse a device this server cannot use (FAILED_PRECONDITION naming what is missing)."""
    status = next((s for s in statuses if s.name == device), None)
    if status is None:
        raise StatusError(
            Status.FAILED_PRECONDITION, f"device {device!r} is not known on this server"
        )
    if not status.available:
        raise StatusError(
            Status.FAILED_PRECONDITION,
            f"device {device} is not available on this server: {status.reason}; use device "
            "auto or cpu, or run the server where onnxruntime-gpu (CUDA), ROCm or DirectML "
            "works",
        )
