"""Models, System, health, token and TLS over a real grpc.aio server, with the engine double.

The Models service pulls from the fake Hugging Face server (`support.hf_server`) into the
test's own cache, so nothing here needs the real model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from audiototext.client import AsyncClient, ClientError, TranscriptUpdate
from audiototext.wire._proto import (
    models_pb2,
    models_pb2_grpc,
    system_pb2,
    system_pb2_grpc,
    transcription_pb2_grpc,
)
from audiototext.wire._proto import transcription_pb2 as pb
from server.fake_engine import FakeRecognizer
from server.grpc_harness import (
    config,
    run,
    running_server,
    self_signed_cert,
    speech_like,
    stream_audio,
)
from support.hf_server import FakeHub

FINISH = pb.StreamingRequest(control=pb.Control(action=pb.Control.FINISH))


def _config_request() -> pb.StreamingRequest:
    return pb.StreamingRequest(config=pb.StreamConfig(encoding=pb.PCM16, sample_rate_hz=16000))


def _models(channel: grpc.aio.Channel) -> Any:
    return models_pb2_grpc.ModelsStub(channel)


async def _pull(
    channel: grpc.aio.Channel, **request: Any
) -> tuple[list[models_pb2.PullProgress], grpc.StatusCode, str]:
    messages: list[models_pb2.PullProgress] = []
    try:
        async for msg in _models(channel).Pull(models_pb2.PullModelRequest(**request)):
            messages.append(msg)
    except grpc.aio.AioRpcError as exc:
        return messages, exc.code(), exc.details() or ""
    return messages, grpc.StatusCode.OK, ""


async def _status(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


# --------------------------------------------------------------------------- models


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as h:
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        yield h


def test_models_pull_list_info_remove(hub: FakeHub, random_whisper_dir: Path) -> None:
    hub.add_repo(
        "lab/whisper-mini", {p.name: p for p in random_whisper_dir.iterdir() if p.is_file()}
    )
    recognizer = FakeRecognizer()

    async def main() -> None:
        async with (
            running_server(recognizer) as srv,
            grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel,
        ):
            models = _models(channel)
            listed = await models.List(models_pb2.ListModelsRequest())
            assert not listed.cached
            known = {m.name: m for m in listed.known}
            assert "tiny.en" in known and not known["tiny.en"].cached
            info = await models.Info(models_pb2.ModelInfoRequest(name="tiny.en"))
            assert (info.name, info.n_mels, len(info.cached)) == ("tiny.en", 80, 0)

            # Pull streams progress: downloads in bytes, then the build steps, then done.
            progress, code, details = await _pull(
                channel, name="lab/whisper-mini", precision="fp32"
            )
            assert code == grpc.StatusCode.OK, details
            assert progress[-1].done and not progress[-1].already_cached
            assert progress[-1].model.name == "lab/whisper-mini"
            assert progress[-1].model.precision == "fp32"
            assert not any(m.done for m in progress[:-1])
            downloads = [m for m in progress if m.unit == "B" and m.total > 0]
            assert downloads and any(m.completed == m.total for m in downloads)
            build = [m for m in progress if m.task == "build"]
            assert build and build[-1].completed == build[-1].total > 0
            fp32_path = Path(progress[-1].model.path)
            assert (fp32_path / "manifest.json").is_file()

            again, code, _ = await _pull(channel, name="lab/whisper-mini", precision="fp32")
            assert code == grpc.StatusCode.OK and again[-1].done and again[-1].already_cached
            int8, code, details = await _pull(channel, name="lab/whisper-mini", precision="int8")
            assert code == grpc.StatusCode.OK, details
            int8_path = Path(int8[-1].model.path)

            listed = await models.List(models_pb2.ListModelsRequest())
            assert sorted(m.precision for m in listed.cached) == ["fp32", "int8"]
            info = await models.Info(models_pb2.ModelInfoRequest(name="lab/whisper-mini"))
            assert len(info.cached) == 2

            # Remove: ambiguous, unknown, in use, then one entry.
            code, details = await _status(
                models.Remove(models_pb2.RemoveModelRequest(name="lab/whisper-mini"))
            )
            assert code == grpc.StatusCode.FAILED_PRECONDITION and "2 entries" in details
            code, details = await _status(
                models.Remove(models_pb2.RemoveModelRequest(name="lab/whisper-mini", version="x"))
            )
            assert code == grpc.StatusCode.NOT_FOUND and "no cached entry" in details
            recognizer.model = SimpleNamespace(path=fp32_path)
            code, details = await _status(
                models.Remove(
                    models_pb2.RemoveModelRequest(name="lab/whisper-mini", precision="fp32")
                )
            )
            assert code == grpc.StatusCode.FAILED_PRECONDITION and "in use" in details
            assert fp32_path.is_dir()
            removed = await models.Remove(
                models_pb2.RemoveModelRequest(name="lab/whisper-mini", precision="int8")
            )
            assert [m.precision for m in removed.removed] == ["int8"]
            assert not int8_path.exists() and fp32_path.is_dir()
            listed = await models.List(models_pb2.ListModelsRequest())
            assert [m.precision for m in listed.cached] == ["fp32"]

    run(main())


@pytest.mark.parametrize(
    ("rpc", "name", "code", "text"),
    [
        ("Pull", "tiny.enn", grpc.StatusCode.NOT_FOUND, "Did you mean tiny.en"),
        ("Info", "tiny.enn", grpc.StatusCode.NOT_FOUND, "Did you mean tiny.en"),
        ("Remove", "tiny.enn", grpc.StatusCode.NOT_FOUND, "Did you mean tiny.en"),
        ("Pull", "lab/nothing-here", grpc.StatusCode.NOT_FOUND, "lab/nothing-here"),
        ("Pull", "", grpc.StatusCode.INVALID_ARGUMENT, "name is empty"),
        ("Remove", "base.en", grpc.StatusCode.NOT_FOUND, "no cached entry of base.en"),
    ],
)
def test_models_refuse_unknown_names_with_suggestions(
    hub: FakeHub, rpc: str, name: str, code: grpc.StatusCode, text: str
) -> None:
    async def main() -> tuple[grpc.StatusCode, str]:
        async with (
            running_server(FakeRecognizer()) as srv,
            grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel,
        ):
            if rpc == "Pull":
                _, got, details = await _pull(channel, name=name)
                return got, details
            models = _models(channel)
            if rpc == "Info":
                return await _status(models.Info(models_pb2.ModelInfoRequest(name=name)))
            return await _status(models.Remove(models_pb2.RemoveModelRequest(name=name)))

    got, details = run(main())
    assert got == code, details
    assert text in details


def test_pull_with_a_bad_precision_is_invalid_argument(hub: FakeHub) -> None:
    async def main() -> tuple[grpc.StatusCode, str]:
        async with (
            running_server(FakeRecognizer()) as srv,
            grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel,
        ):
            _, code, details = await _pull(channel, name="tiny.en", precision="int4")
            return code, details

    code, details = run(main())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "precision" in details


# --------------------------------------------------------------------------- system


def test_system_hardware_profile() -> None:
    async def main() -> system_pb2.HardwareProfile:
        async with (
            running_server(FakeRecognizer()) as srv,
            grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel,
        ):
            reply: system_pb2.HardwareProfile = await system_pb2_grpc.SystemStub(
                channel
            ).GetHardware(system_pb2.HardwareRequest())
            return reply

    hw = run(main())
    profile = json.loads(hw.json)
    assert profile["physical_cores"] == hw.physical_cores >= 1
    assert profile["logical_cores"] == hw.logical_cores >= hw.physical_cores
    assert "CPUExecutionProvider" in hw.providers
    assert hw.recommended_precision in ("fp32", "int8", "fp16")


def test_system_stats_count_open_and_detached_streams() -> None:
    # A real-time engine double: the streams stay open while the test looks.
    recognizer = FakeRecognizer(speed=1)

    async def main() -> list[system_pb2.ServerStats]:
        seen: list[system_pb2.ServerStats] = []
        async with (
            running_server(recognizer) as srv,
            AsyncClient(f"127.0.0.1:{srv.port}") as client,
            grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel,
        ):
            seen.append(await client.stats())
            stream = await client.stream()
            await stream.send(speech_like(3.0, seed=2))
            # A second stream whose connection goes away without FINISH: detached.
            raw = transcription_pb2_grpc.TranscriptionStub(channel).StreamingTranscribe()
            await raw.write(_config_request())
            await raw.write(pb.StreamingRequest(audio=pb.AudioChunk(seq=1, data=b"\0\0" * 1600)))
            started = await raw.read()
            assert started.started.session_id
            raw.cancel()
            for _ in range(200):
                stats = await client.stats()
                if stats.detached_streams == 1:
                    break
                await asyncio.sleep(0.02)
            seen.append(stats)
            await stream.finish()
            async for _ in stream.results():
                pass
            await stream.close()
            seen.append(await client.stats())
        return seen

    before, during, after = run(main())
    assert (before.active_streams, before.streams_total) == (0, 0)
    assert (during.active_streams, during.detached_streams, during.streams_total) == (2, 1, 2)
    assert during.rtf == pytest.approx(1.0)  # the double reports 1 / speed
    assert during.model == "tiny.en" and during.version and during.uptime_s > 0
    assert (after.active_streams, after.detached_streams) == (1, 1)  # the detached one waits


# --------------------------------------------------------------------------- health


def test_health_goes_not_serving_during_graceful_shutdown_while_finals_are_delivered() -> None:
    async def main() -> tuple[list[int], grpc.StatusCode, str, list[str]]:
        srv_cm = running_server(FakeRecognizer(speed=2))
        srv = await srv_cm.__aenter__()
        target = f"127.0.0.1:{srv.port}"
        statuses: list[int] = []
        async with (
            AsyncClient(target) as client,
            grpc.aio.insecure_channel(target) as channel,
        ):
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest())
            statuses.append(reply.status)
            stream = await client.stream()
            # 4.5 s of unfinished speech at twice real time: shutdown has to wait for its final.
            await stream.send(np.zeros(8000, np.float32))
            await stream.send(
                (0.2 * np.random.default_rng(0).standard_normal(64000)).astype(np.float32)
            )
            finals: list[str] = []

            async def collect() -> None:
                async for ev in stream.results():
                    if getattr(ev, "is_final", False):
                        assert isinstance(ev, TranscriptUpdate)  # the only kind with is_final
                        finals.append(ev.text)

            collector = asyncio.create_task(collect())
            for _ in range(200):
                await asyncio.sleep(0.02)
                if stream._acked >= 40:
                    break
            stopping = asyncio.create_task(srv.stop(30.0))  # ample time to finalise
            for _ in range(500):
                reply = await health.Check(health_pb2.HealthCheckRequest())
                if reply.status != health_pb2.HealthCheckResponse.SERVING:
                    break
                await asyncio.sleep(0.01)
            statuses.append(reply.status)
            # Audio that arrives after shutdown began is dropped, not an error for the stream.
            await stream.send(speech_like(2.0, seed=8))
            # A new stream is refused (the client library would retry it: UNAVAILABLE).
            code, details = await _call_rpc(channel, "Transcription.StreamingTranscribe", ())
            await asyncio.wait_for(collector, 60)
            await stopping
            await stream.close()
        await srv_cm.__aexit__(None, None, None)
        return statuses, code, details, finals

    statuses, code, details, finals = run(main())
    assert statuses == [
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    ]
    assert code == grpc.StatusCode.UNAVAILABLE and "shutting down" in details
    assert len(finals) == 1 and finals[0].startswith("u1 n")


# --------------------------------------------------------------------------- token


async def _call_rpc(
    channel: grpc.aio.Channel, rpc: str, metadata: tuple[tuple[str, str], ...]
) -> tuple[grpc.StatusCode, str]:
    """One call of ``rpc`` with a request whose authorised outcome is known."""
    md = metadata
    if rpc == "Transcription.StreamingTranscribe":
        call = transcription_pb2_grpc.TranscriptionStub(channel).StreamingTranscribe(metadata=md)
        # Lockstep: FINISH only once the stream started (writing to a call the server has
        # refused turns its status into the client's own INTERNAL).
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await call.write(_config_request())
            first = await call.read()
            if first is not grpc.aio.EOF:
                await call.write(FINISH)
                await call.done_writing()
                while await call.read() is not grpc.aio.EOF:
                    pass
        return await call.code(), await call.details() or ""
    if rpc == "Transcription.Transcribe":
        stub = transcription_pb2_grpc.TranscriptionStub(channel)
        return await _status(stub.Transcribe(pb.TranscribeRequest(), metadata=md))
    models = _models(channel)
    if rpc == "Models.List":
        return await _status(models.List(models_pb2.ListModelsRequest(), metadata=md))
    if rpc == "Models.Pull":
        try:
            async for _ in models.Pull(models_pb2.PullModelRequest(name="nope-xyz"), metadata=md):
                pass
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        return grpc.StatusCode.OK, ""
    if rpc == "Models.Remove":
        request = models_pb2.RemoveModelRequest(name="nope-xyz")
        return await _status(models.Remove(request, metadata=md))
    if rpc == "Models.Info":
        return await _status(models.Info(models_pb2.ModelInfoRequest(name="nope-xyz"), metadata=md))
    system = system_pb2_grpc.SystemStub(channel)
    if rpc == "System.GetHardware":
        return await _status(system.GetHardware(system_pb2.HardwareRequest(), metadata=md))
    if rpc == "System.GetStats":
        return await _status(system.GetStats(system_pb2.StatsRequest(), metadata=md))
    if rpc == "Health.Check":
        health = health_pb2_grpc.HealthStub(channel)
        return await _status(health.Check(health_pb2.HealthCheckRequest(), metadata=md))
    assert rpc == "Reflection"
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(metadata=md)
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        await call.done_writing()
    with contextlib.suppress(grpc.aio.AioRpcError):
        async for _ in call:
            pass
    return await call.code(), await call.details() or ""


AUTHORISED_OUTCOME = {
    "Transcription.StreamingTranscribe": grpc.StatusCode.OK,
    "Transcription.Transcribe": grpc.StatusCode.INVALID_ARGUMENT,  # empty audio
    "Models.List": grpc.StatusCode.OK,
    "Models.Pull": grpc.StatusCode.NOT_FOUND,  # unknown model
    "Models.Remove": grpc.StatusCode.NOT_FOUND,
    "Models.Info": grpc.StatusCode.NOT_FOUND,
    "System.GetHardware": grpc.StatusCode.OK,
    "System.GetStats": grpc.StatusCode.OK,
    # Health and reflection are behind the token too: with --token, nothing is answered to a
    # caller without it (a health probe passes the header, e.g. grpc_health_probe -rpc-header).
    "Health.Check": grpc.StatusCode.OK,
    "Reflection": grpc.StatusCode.OK,
}


@pytest.mark.parametrize("rpc", sorted(AUTHORISED_OUTCOME))
def test_token_is_checked_on_every_rpc(rpc: str) -> None:
    async def main() -> list[tuple[grpc.StatusCode, str]]:
        async with (
            running_server(FakeRecognizer(), config(token="s3cret")) as srv,
            grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel,
        ):
            return [
                await _call_rpc(channel, rpc, metadata)
                for metadata in (
                    (),
                    (("authorization", "Bearer wrong"),),
                    (("authorization", "s3cret"),),  # not a bearer token
                    (("authorization", "Bearer s3cret"),),
                )
            ]

    (missing, wrong, no_scheme, right) = run(main())
    assert missing[0] == grpc.StatusCode.UNAUTHENTICATED and "--token" in missing[1]
    assert wrong[0] == grpc.StatusCode.UNAUTHENTICATED and "not valid" in wrong[1]
    assert no_scheme[0] == grpc.StatusCode.UNAUTHENTICATED
    assert right[0] == AUTHORISED_OUTCOME[rpc], right


# --------------------------------------------------------------------------- TLS


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl program")
def test_tls_with_the_client_library_and_token(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    (tmp_path / "other").mkdir()
    other_cert, _ = self_signed_cert(tmp_path / "other")
    audio = speech_like(5.0, seed=4)
    root = cert.read_bytes()

    async def main() -> dict[str, object]:
        out: dict[str, object] = {}
        cfg = config(tls_cert=cert, tls_key=key, token="tok")
        async with running_server(FakeRecognizer(), cfg) as srv:
            target = f"localhost:{srv.port}"
            async with AsyncClient(target, root_certificates=root, token="tok") as client:
                _, finals, _ = await stream_audio(client, audio, speed=None)
                out["finals"] = [f.text for f in finals]
                out["stats"] = await client.stats()
                with pytest.raises(ClientError) as err:
                    await client.transcribe(b"")
                out["transcribe"] = err.value.code
            clients: dict[str, dict[str, Any]] = {
                "plaintext": {"token": "tok"},
                "untrusted": {"root_certificates": other_cert.read_bytes(), "token": "tok"},
                "no token": {"root_certificates": root},
            }
            for name, kwargs in clients.items():
                async with AsyncClient(target, **kwargs) as client:
                    with pytest.raises(ClientError) as err:
                        await client.stats()
                    out[name] = err.value.code
        async with (
            running_server(FakeRecognizer(speed=100)) as srv,
            AsyncClient(f"127.0.0.1:{srv.port}") as client,
        ):
            _, plain, _ = await stream_audio(client, audio, speed=None)
            out["plain finals"] = [f.text for f in plain]
        return out

    out = run(main())
    assert out["finals"] and out["finals"] == out["plain finals"]
    assert cast(system_pb2.ServerStats, out["stats"]).streams_total == 1
    assert out["transcribe"] == grpc.StatusCode.INVALID_ARGUMENT
    assert out["plaintext"] == grpc.StatusCode.UNAVAILABLE
    assert out["untrusted"] == grpc.StatusCode.UNAVAILABLE
    assert out["no token"] == grpc.StatusCode.UNAUTHENTICATED
