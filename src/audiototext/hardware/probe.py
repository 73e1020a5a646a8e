"""Which processing devices can run a model here: probed, not read from a list.

``onnxruntime.get_available_providers()`` names the providers the installed build was
compiled with, not those that work: ``onnxruntime-gpu`` on a machine without a driver (or
with the wrong CUDA libraries) lists CUDA and then quietly runs on the CPU. So a GPU counts
as available only when one of :data:`GPU_SESSION_PROVIDERS` creates a session on a one-node
graph, reports itself as the session's provider, and runs it. The probe costs a few
milliseconds per listed provider and is done once per process (:func:`probe_devices`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "GPU_SESSION_PROVIDERS",
    "DeviceStatus",
    "device_statuses",
    "probe_devices",
    "session_probe",
]

log = logging.getLogger(__name__)

# Providers that put a model on a GPU-class accelerator (OpenVINO is left out: it runs on the
# CPU unless told otherwise). The engine's own order is in inference/ort_session.py.
GPU_SESSION_PROVIDERS: tuple[str, ...] = (
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
)


@dataclass(frozen=True)
class DeviceStatus:
    name: str  # "cpu" or "gpu"
    available: bool
    reason: str = ""  # why not, when not available
    providers: tuple[str, ...] = ()  # the providers that created a session for it


# A provider's probe: None when it created and ran a session, else what went wrong.
ProviderProbe = Callable[[str], str | None]


def device_statuses(listed: Sequence[str], probe: ProviderProbe) -> tuple[DeviceStatus, ...]:
    """The CPU (always) and the GPU: available when a listed GPU provider passes ``probe``."""
    working: list[str] = []
    failures: list[str] = []
    for provider in GPU_SESSION_PROVIDERS:
        if provider not in listed:
            continue
        error = probe(provider)
        if error is None:
            working.append(provider)
        else:
            failures.append(f"{provider}: {error}")
    cpu = DeviceStatus("cpu", True, providers=("CPUExecutionProvider",))
    if working:
        return cpu, DeviceStatus("gpu", True, providers=tuple(working))
    reason = (
        "no CUDA/ROCm/DirectML provider can create a session here "
        f"(providers: {', '.join(listed) or 'none'})"
    )
    if failures:
        reason += "; " + "; ".join(failures)
    return cpu, DeviceStatus("gpu", False, reason=reason)


def _probe_graph() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def session_probe(provider: str) -> str | None:
    """Create and run a session of a one-node graph on ``provider`` alone."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # a failing provider's own error lines are not ours to print
    try:
        with warnings.catch_warnings():  # "not in available provider names": reported below
            warnings.simplefilter("ignore")
            session = ort.InferenceSession(_probe_graph(), options, providers=[provider])
        used = session.get_providers()
        if not used or used[0] != provider:
            return f"the session fell back to {', '.join(used) or 'nothing'}"
        session.run(None, {"x": np.ones(2, dtype=np.float32)})
    except Exception as exc:  # any failure means "not usable here"; the reason is shown
        return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return None


@lru_cache(maxsize=1)
def probe_devices() -> tuple[DeviceStatus, ...]:
    """This process's devices (probed once; blocking: call it from a thread)."""
    import onnxruntime as ort

    statuses = device_statuses(tuple(ort.get_available_providers()), session_probe)
    for s in statuses:
        if not s.available:
            log.info("device %s not available: %s", s.name, s.reason)
    return statuses
