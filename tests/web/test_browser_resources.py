"""The processing mode selector and the live resource indicators in Chromium (driven by
Playwright), with the engine double: on a server without a usable GPU the GPU option is
disabled and its reason is shown; the indicators follow /api/v1/system, read after read (no
wall-clock thresholds: the test waits for reads to happen and compares what two of them
showed)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from audiototext.hardware.probe import DeviceStatus
from audiototext.server.app import GrpcServer
from audiototext.server.resources import ResourceSample
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run
from web.browser import NEEDS_CHROMIUM, chromium, state_until

pytestmark = NEEDS_CHROMIUM

REASON = (
    "no CUDA/ROCm/DirectML provider can create a session here (providers: CPUExecutionProvider)"
)
DEVICES = (DeviceStatus("cpu", True), DeviceStatus("gpu", False, reason=REASON))

STATE = """(() => {
  const dl = document.getElementById('resources');
  if (!dl) return { reads: 0 };  // still loading
  const value = (key) =>
    dl.querySelector(`dt[data-key="${key}"]`)?.nextElementSibling?.textContent ?? null;
  const gpu = document.querySelector('#device-select option[value="gpu"]');
  const note = document.getElementById('device-note');
  return {
    reads: Number(dl.dataset.reads || 0),
    keys: [...dl.querySelectorAll('dt')].map((dt) => dt.dataset.key),
    labels: [...dl.querySelectorAll('dt')].map((dt) => dt.textContent),
    cpu: value('cpu_process'),
    ram: value('ram_process'),
    gpuDisabled: gpu ? gpu.disabled : null,
    gpuText: gpu ? gpu.textContent : null,
    gpuTitle: gpu ? gpu.title : null,
    noteHidden: note.hidden,
    noteText: note.innerText,
    selected: document.getElementById('device-select').value,
  };
})()"""


def _devices() -> Sequence[DeviceStatus]:
    return DEVICES


def test_gpu_option_disabled_with_its_reason_and_indicators_update() -> None:
    counter = itertools.count(1)

    def sample() -> ResourceSample:
        n = next(counter)  # every read shows new figures
        return ResourceSample(
            process_cpu_percent=float(n),
            machine_cpu_percent=50.0,
            process_rss_mb=100.0 + n,
            memory_available_mb=1000.0,
            memory_total_mb=4000.0,
            gpus=(),
        )

    async def main() -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        srv = GrpcServer(config(http_port=0), recognizer=FakeRecognizer(), devices=_devices)
        await srv.start()
        try:
            assert srv.http is not None and srv.resources is not None
            srv.resources.sample = sample  # type: ignore[method-assign]
            async with chromium(url=f"http://127.0.0.1:{srv.http.port}/") as tab:
                first = await state_until(tab.page, STATE, lambda s: s["reads"] >= 1 and s["cpu"])
                second = await state_until(tab.page, STATE, lambda s: s["reads"] > first["reads"])
                return first, second, list(tab.errors)
        finally:
            await srv.stop(2.0)

    first, second, errors = run(main(), 90)
    assert not errors, errors
    # Labelled rows; no GPU rows on a server that reports no GPU.
    assert first["keys"][:4] == ["cpu_process", "cpu_machine", "ram_process", "ram_available"]
    assert not any(k.startswith("gpu") for k in first["keys"])
    assert "CPU (server process)" in first["labels"]
    assert second["cpu"] != first["cpu"] and second["ram"] != first["ram"]
    # The GPU option: disabled, says so, and the reason is visible beside the selector.
    assert second["gpuDisabled"] is True
    assert "unavailable" in second["gpuText"] and second["gpuTitle"] == REASON
    assert not second["noteHidden"] and REASON in second["noteText"]
    assert second["selected"] == "auto"
