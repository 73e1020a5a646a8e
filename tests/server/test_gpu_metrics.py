"""GPU gauges from ``nvidia-smi`` (a stand-in script on PATH: this machine has no GPU)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from audiototext.server.gpu import GpuSampler, parse_nvidia_smi
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, run
from server.metrics_harness import Scrape, scrape
from server.ws_harness import http_server


def test_nvidia_smi_rows_are_read_and_unreadable_ones_skipped() -> None:
    rows = "0, NVIDIA L4, 1024, 23034, 37\n1, NVIDIA L4, [N/A], 23034, [N/A]\n\n"
    (gpu,) = parse_nvidia_smi(rows)
    assert (gpu.index, gpu.name) == ("0", "NVIDIA L4")
    assert gpu.memory_used_bytes == 1024 * 2**20
    assert gpu.memory_total_bytes == 23034 * 2**20
    assert gpu.utilization == pytest.approx(0.37)


def test_without_nvidia_smi_nothing_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    sampler = GpuSampler()
    sampler.start()
    sampler.sample_once()
    assert not sampler.available and sampler.samples == []


def test_gpu_gauges_come_from_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, Test GPU, 512, 8192, 25'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")

    async def main() -> Scrape:
        async with http_server(FakeRecognizer(), config(http_port=0)) as srv:
            for _ in range(200):  # the sampler's first reading comes from its thread
                got = await scrape(srv)
                if got.value("audiototext_gpu_memory_used_bytes", gpu="0", name="Test GPU"):
                    return got
                await asyncio.sleep(0.05)
            raise AssertionError("no GPU sample in /metrics")

    got = run(main(), 60)
    labels = {"gpu": "0", "name": "Test GPU"}
    assert got.value("audiototext_gpu_memory_used_bytes", **labels) == 512 * 2**20
    assert got.value("audiototext_gpu_memory_total_bytes", **labels) == 8192 * 2**20
    assert got.value("audiototext_gpu_utilization_ratio", **labels) == 0.25
