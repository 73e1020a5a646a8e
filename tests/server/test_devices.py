"""The processing device of a stream (StreamConfig.device): the hardware probe, the pool's
key, REST /api/v1/system's devices and resource figures, and the refusal of a GPU stream on
a server where no GPU provider creates a session (WebSocket and gRPC), with the engine double."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

from audiototext.hardware.probe import (
    DeviceStatus,
    device_statuses,
    probe_devices,
    session_probe,
)
from audiototext.server.engine import Engine
from audiototext.server.pool import ModelChoice, ModelKey, ModelPool
from audiototext.server.resources import Counters, ResourceSampler
from audiototext.server.status import Status, StatusError
from audiototext.wire._proto import system_pb2, system_pb2_grpc
from audiototext.wire._proto import transcription_pb2 as pb
from server.fake_engine import FakeRecognizer
from server.grpc_harness import config, raw_stream, run
from server.ws_harness import PCM16_CONFIG, exchange, http_get, http_server, ws_url

NO_GPU = (
    DeviceStatus("cpu", True, providers=("CPUExecutionProvider",)),
    DeviceStatus(
        "gpu",
        False,
        reason="no CUDA/ROCm/DirectML provider can create a session here "
        "(providers: CPUExecutionProvider)",
    ),
)
WITH_GPU = (NO_GPU[0], DeviceStatus("gpu", True, providers=("CUDAExecutionProvider",)))


def _no_gpu() -> Sequence[DeviceStatus]:
    return NO_GPU


# ---------------------------------------------------------------- the probe


def test_a_listed_provider_counts_only_when_its_session_works() -> None:
    listed = ("CUDAExecutionProvider", "CPUExecutionProvider")
    cpu, gpu = device_statuses(listed, lambda p: "libcudart.so.12: cannot open shared object")
    assert cpu.available and not gpu.available
    assert "no CUDA/ROCm/DirectML provider can create a session here" in gpu.reason
    assert "CUDAExecutionProvider, CPUExecutionProvider" in gpu.reason
    assert "CUDAExecutionProvider: libcudart.so.12" in gpu.reason
    _, gpu = device_statuses(listed, lambda p: None)
    assert gpu.available and gpu.providers == ("CUDAExecutionProvider",)
    asked: list[str] = []
    _, gpu = device_statuses(("OpenVINOExecutionProvider", "CPUExecutionProvider"), asked.append)
    assert not gpu.available and asked == []  # OpenVINO runs on the CPU: not a GPU


def test_the_session_probe_runs_its_graph_and_names_a_failure() -> None:
    import onnxruntime as ort

    assert session_probe("CPUExecutionProvider") is None  # the one-node graph is valid
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        error = session_probe("CUDAExecutionProvider")
        assert error  # not in this build: a reason, not an exception


def test_the_real_probe_agrees_with_a_session_on_this_machine() -> None:
    import onnxruntime as ort

    statuses = {s.name: s for s in probe_devices()}
    assert statuses["cpu"].available
    assert probe_devices() is probe_devices()  # probed once
    gpu = statuses["gpu"]
    if not gpu.available:
        assert "providers: " + ", ".join(ort.get_available_providers()) in gpu.reason
    else:
        assert gpu.providers


# ---------------------------------------------------------------- resources


def test_cpu_shares_are_differences_between_readings() -> None:
    readings = iter(
        [
            Counters(10.0, 100.0, 400.0, 2**30, 2**31, 2**33),
            Counters(12.0, 140.0, 440.0, 2**30, 2**31, 2**33),  # 40 core-s: 2 ours, 40 busy
            Counters(13.0, 150.0, 480.0, 2**29, 2**30, 2**33),
        ]
    )
    now = [0.0]
    sampler = ResourceSampler(None, read=lambda: next(readings), clock=lambda: now[0])
    now[0] = 1.0
    first = sampler.sample()
    assert (first.process_cpu_percent, first.machine_cpu_percent) == (5.0, 100.0)
    assert (first.process_rss_mb, first.memory_available_mb) == (1024.0, 2048.0)
    assert first.memory_total_mb == 8192.0 and first.gpus == ()
    now[0] = 1.2  # closer than min_interval_s: the same figures, no reading
    assert sampler.sample() is first
    now[0] = 2.0
    second = sampler.sample()
    assert (second.process_cpu_percent, second.machine_cpu_percent) == (2.5, 25.0)
    assert second.process_rss_mb == 512.0


# ---------------------------------------------------------------- the pool


def test_the_pool_keys_models_by_device_and_refuses_a_missing_gpu() -> None:
    loaded: list[ModelKey] = []

    def loader(choice: ModelChoice) -> Engine:
        loaded.append(choice.key)
        return FakeRecognizer()

    def pool(devices: Sequence[DeviceStatus]) -> ModelPool:
        default = ModelChoice(ModelKey("tiny.en", "int8", "cpu"), Path("/c/tiny.en"), False)
        p = ModelPool(
            default=default,
            resolver=lambda name: default,
            loader=loader,
            budget_mb=1000,
            devices=lambda: devices,
        )
        p.add(default, FakeRecognizer(), pinned=True, owned=False)
        return p

    async def main() -> tuple[list[str], StatusError]:
        with_gpu = pool(WITH_GPU)
        auto = await with_gpu.choose("", "auto")
        cpu = await with_gpu.choose("tiny.en", "cpu")
        gpu = await with_gpu.choose("", "gpu")
        lease = await with_gpu.acquire(gpu)
        lease.release()
        devices = [auto.key.device, cpu.key.device, gpu.key.device]
        try:
            await pool(NO_GPU).choose("", "gpu")
        except StatusError as exc:
            return devices, exc
        raise AssertionError("a GPU was granted on a server without one")

    devices, refused = run(main(), 30)
    assert devices == ["cpu", "cpu", "gpu"]
    assert loaded == [ModelKey("tiny.en", "int8", "gpu")]  # a second engine, on the GPU
    assert refused.code is Status.FAILED_PRECONDITION
    assert "no CUDA/ROCm/DirectML provider can create a session here" in refused.message


# ---------------------------------------------------------------- REST and streams


def test_system_lists_the_devices_and_the_resource_figures() -> None:
    async def main() -> Any:
        async with http_server(FakeRecognizer()) as srv:  # the real probe
            status, _, body = await http_get(srv, "/api/v1/system")
            assert status == 200
            return json.loads(body)

    body = run(main(), 60)
    real = {s.name: s for s in probe_devices()}  # the server was built with the real probe
    devices = {d["name"]: d for d in body["devices"]}
    assert set(devices) == {"cpu", "gpu"} and devices["cpu"]["available"]
    assert devices["gpu"]["available"] == real["gpu"].available
    assert devices["gpu"]["reason"] == real["gpu"].reason
    assert body["default_device"] == "cpu"
    stats = body["stats"]
    assert 0 <= stats["process_cpu_percent"] <= 100
    assert 0 <= stats["machine_cpu_percent"] <= 100
    assert stats["process_rss_mb"] > 10
    assert 0 < stats["memory_available_mb"] <= stats["memory_total_mb"]
    assert isinstance(stats["gpus"], list)


def test_a_system_document_with_an_injected_probe() -> None:
    async def main() -> Any:
        from audiototext.server.app import GrpcServer

        srv = GrpcServer(config(http_port=0), recognizer=FakeRecognizer(), devices=_no_gpu)
        await srv.start()
        try:
            return json.loads((await http_get(srv, "/api/v1/system"))[2])
        finally:
            await srv.stop(2.0)

    body = run(main(), 60)
    assert body["devices"] == [
        {"name": "cpu", "available": True, "reason": "", "providers": ["CPUExecutionProvider"]},
        {"name": "gpu", "available": False, "reason": NO_GPU[1].reason, "providers": []},
    ]


@pytest.mark.parametrize(
    ("device", "code", "words"),
    [
        ("gpu", "FAILED_PRECONDITION", "no CUDA/ROCm/DirectML provider can create a session"),
        ("tpu", "INVALID_ARGUMENT", "it must be auto (or empty), cpu or gpu"),
    ],
)
def test_a_websocket_stream_asking_for_a_missing_gpu_is_refused_clearly(
    device: str, code: str, words: str
) -> None:
    async def main() -> tuple[list[dict[str, Any]], int | None]:
        from audiototext.server.app import GrpcServer

        srv = GrpcServer(config(http_port=0), recognizer=FakeRecognizer(), devices=_no_gpu)
        await srv.start()
        try:
            frames = [json.dumps({"config": {**PCM16_CONFIG, "device": device}})]
            messages, close, _ = await exchange(ws_url(srv), frames, timeout_s=20)
            return messages, close
        finally:
            await srv.stop(2.0)

    messages, close = run(main(), 60)
    assert close == 1008
    assert messages[-1]["error"]["code"] == code
    assert words in messages[-1]["error"]["message"]


def test_grpc_lists_the_devices_and_refuses_a_gpu_stream_without_one() -> None:
    async def main() -> tuple[grpc.StatusCode, str, list[pb.StreamingResponse]]:
        from audiototext.server.app import GrpcServer

        srv = GrpcServer(config(), recognizer=FakeRecognizer(), devices=_no_gpu)
        await srv.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
                hw = await system_pb2_grpc.SystemStub(channel).GetHardware(
                    system_pb2.HardwareRequest()
                )
            assert [(d.name, d.available, d.reason) for d in hw.devices] == [
                ("cpu", True, ""),
                ("gpu", False, NO_GPU[1].reason),
            ]
            cfg = pb.StreamConfig(encoding=pb.PCM16, sample_rate_hz=16000, device="gpu")
            refused = await raw_stream(srv.port, [pb.StreamingRequest(config=cfg)])
            cfg = pb.StreamConfig(encoding=pb.PCM16, sample_rate_hz=16000, device="cpu")
            finish = pb.StreamingRequest(control=pb.Control(action=pb.Control.FINISH))
            accepted = await raw_stream(srv.port, [pb.StreamingRequest(config=cfg), finish])
            assert accepted[2] and accepted[2][0].WhichOneof("response") == "started"
            return refused
        finally:
            await srv.stop(2.0)

    code, details, responses = run(main(), 60)
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert "device gpu is not available on this server" in details
    assert "no CUDA/ROCm/DirectML provider can create a session here" in details
    assert not responses
