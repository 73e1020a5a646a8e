"""The gRPC server over a real socket, with the engine test double: protocol, limits, errors."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from audiototext.client import AsyncClient, ClientError, Stream, TranscriptUpdate
from audiototext.wire._proto import system_pb2, system_pb2_grpc
from audiototext.wire._proto import transcription_pb2 as pb
from audiototext.wire.codec import encode_pcm16
from server.fake_engine import FakeRecognizer
from server.grpc_harness import (
    TcpProxy,
    config,
    raw_stream,
    run,
    running_server,
    self_signed_cert,
    speech_like,
    stream_audio,
)

ROOT = Path(__file__).resolve().parents[2]


def _cfg(**kw: Any) -> pb.StreamingRequest:
    base: dict[str, Any] = {"encoding": pb.PCM16, "sample_rate_hz": 16000, "interim_results": True}
    base.update(kw)
    return pb.StreamingRequest(config=pb.StreamConfig(**base))


def _audio(seq: int, data: bytes, **kw: Any) -> pb.StreamingRequest:
    return pb.StreamingRequest(audio=pb.AudioChunk(seq=seq, data=data, **kw))


FINISH = pb.StreamingRequest(control=pb.Control(action=pb.Control.FINISH))


def _finals(responses: list[pb.StreamingResponse]) -> list[str]:
    return [
        r.result.text
        for r in responses
        if r.WhichOneof("response") == "result" and r.result.is_final
    ]


# --------------------------------------------------------------------------- generated code


def test_generated_code_is_current(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    checked_in = ROOT / "src" / "audiototext" / "wire" / "_proto"
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir()}
    current = {p.name: p.read_text() for p in checked_in.iterdir() if p.is_file()}
    assert fresh.keys() == current.keys()
    stale = [name for name in fresh if fresh[name] != current[name]]
    assert not stale, f"run proto/generate.py: {stale} differ from the .proto files"


# --------------------------------------------------------------------------- happy path


def test_stream_gives_partials_then_finals_for_exact_audio() -> None:
    audio = speech_like(8.0, seed=1)

    async def main() -> tuple[list[TranscriptUpdate], list[TranscriptUpdate], list[str]]:
        async with running_server(FakeRecognizer()) as srv:
            async with AsyncClient(f"127.0.0.1:{srv.port}") as client:
                partials, finals, _ = await stream_audio(client, audio, speed=None)
            # The same audio straight through the raw protocol, in one go.
            reqs = [
                _cfg(),
                _audio(1, encode_pcm16(audio[:160000])),
                _audio(2, encode_pcm16(audio[160000:])),
                FINISH,
            ]
            code, _, responses = await raw_stream(srv.port, reqs)
            assert code == grpc.StatusCode.OK
            return partials, finals, _finals(responses)

    partials, finals, raw_finals = run(main())
    assert partials and finals
    assert [f.text for f in finals] == raw_finals
    first_final = finals[0]
    assert any(p.utterance_id == first_final.utterance_id for p in partials)


def test_session_started_comes_first_with_acks_and_metrics() -> None:
    async def main() -> list[pb.StreamingResponse]:
        async with running_server(FakeRecognizer(speed=5)) as srv:
            audio = speech_like(3.0)
            reqs = (
                [_cfg()]
                + [
                    _audio(i + 1, encode_pcm16(audio[j : j + 1600]))
                    for i, j in enumerate(range(0, audio.shape[0], 1600))
                ]
                + [FINISH]
            )
            code, _, responses = await raw_stream(srv.port, reqs)
            assert code == grpc.StatusCode.OK
            return responses

    responses = run(main())
    kinds = [r.WhichOneof("response") for r in responses]
    assert kinds[0] == "started"
    assert "ack" in kinds and "metrics" in kinds and "speech_event" in kinds
    acks = [r.ack.seq for r in responses if r.WhichOneof("response") == "ack"]
    assert acks == sorted(acks)
    events = [r.event_seq for r in responses if r.event_seq]
    assert events == list(range(1, len(events) + 1))


# --------------------------------------------------------------------------- bad input


BAD_INPUTS = {
    "audio before config": (
        [_audio(1, b"\0\0" * 1600)],
        grpc.StatusCode.INVALID_ARGUMENT,
        "first message of a stream must be a StreamConfig",
    ),
    "config twice": ([_cfg(), _cfg()], grpc.StatusCode.INVALID_ARGUMENT, "one StreamConfig"),
    "odd-length PCM16": (
        [_cfg(), _audio(1, b"\0" * 3201)],
        grpc.StatusCode.INVALID_ARGUMENT,
        "not a whole number of PCM16 frames",
    ),
    "garbage as FLOAT32": (
        [_cfg(encoding=pb.FLOAT32), _audio(1, np.random.default_rng(0).bytes(64000))],
        grpc.StatusCode.INVALID_ARGUMENT,
        "FLOAT32",
    ),
    "garbage as OPUS": (
        [_cfg(encoding=pb.OPUS), _audio(1, b"\x00\x05hello" + bytes(range(200)))],
        grpc.StatusCode.INVALID_ARGUMENT,
        "OPUS",
    ),
    "sample rate zero": (
        [_cfg(sample_rate_hz=0)],
        grpc.StatusCode.INVALID_ARGUMENT,
        "sample_rate_hz is 0",
    ),
    "sample rate too high": (
        [_cfg(sample_rate_hz=192000)],
        grpc.StatusCode.INVALID_ARGUMENT,
        "between 8000 and 48000",
    ),
    "opus at 44.1 kHz": (
        [_cfg(encoding=pb.OPUS, sample_rate_hz=44100)],
        grpc.StatusCode.INVALID_ARGUMENT,
        "use PCM16 for other rates",
    ),
    "10-MB chunk": (
        [_cfg(), _audio(1, b"\0\0" * (5 << 20))],
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "over the limit",
    ),
    "unknown model": (
        [_cfg(model="no-such-model-xyz")],
        grpc.StatusCode.NOT_FOUND,
        "unknown model",
    ),
    "other known model": (
        [_cfg(model="base.en")],
        grpc.StatusCode.FAILED_PRECONDITION,
        "audiototext serve --model base.en",
    ),
    "gap in seq": (
        [_cfg(), _audio(1, b"\0\0" * 1600), _audio(3, b"\0\0" * 1600)],
        grpc.StatusCode.INVALID_ARGUMENT,
        "skips 2..2",
    ),
    "unknown encoding": ([_cfg(encoding=0)], grpc.StatusCode.INVALID_ARGUMENT, "encoding"),
    "resume of unknown session": (
        [_cfg(session_id="nope")],
        grpc.StatusCode.NOT_FOUND,
        "no stream session",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gets_clear_status_and_server_keeps_serving(case: str) -> None:
    requests, want_code, want_text = BAD_INPUTS[case]
    audio = speech_like(4.0, seed=3)

    async def main() -> None:
        async with (
            running_server(FakeRecognizer()) as srv,
            AsyncClient(f"127.0.0.1:{srv.port}") as client,
        ):
            good = asyncio.create_task(stream_audio(client, audio, speed=4.0))
            code, details, _ = await raw_stream(srv.port, list(requests))
            assert code == want_code, details
            assert want_text in details
            _, finals, _ = await good
            assert finals
            # And a new stream after the bad one works.
            _, finals2, _ = await stream_audio(client, audio, speed=None)
            assert [f.text for f in finals2] == [f.text for f in finals]

    run(main())


def test_garbage_pcm16_is_just_noise() -> None:
    async def main() -> tuple[grpc.StatusCode, str]:
        async with running_server(FakeRecognizer()) as srv:
            data = np.random.default_rng(1).bytes(32000)
            code, details, _ = await raw_stream(srv.port, [_cfg(), _audio(1, data), FINISH])
            return code, details

    code, details = run(main())
    assert code == grpc.StatusCode.OK, details


def test_max_sessions_refused_with_resource_exhausted() -> None:
    async def main() -> None:
        async with (
            running_server(FakeRecognizer(), config(max_sessions=2)) as srv,
            AsyncClient(f"127.0.0.1:{srv.port}") as client,
        ):
            s1 = await client.stream()
            s2 = await client.stream()
            with pytest.raises(ClientError) as info:
                await client.stream()
            assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limit of 2 concurrent streams" in str(info.value)
            await s1.finish()
            async for _ in s1.results():
                pass
            s3 = await client.stream()  # a slot is free again
            for s in (s2, s3):
                await s.finish()
                async for _ in s.results():
                    pass
                await s.close()
            await s1.close()

    run(main())


# --------------------------------------------------------------------------- auth, TLS, health


def test_bearer_token_checked_on_every_rpc() -> None:
    async def main() -> None:
        async with running_server(FakeRecognizer(), config(token="s3cret")) as srv:
            target = f"127.0.0.1:{srv.port}"
            # One message only: writing more after the server refused the call races with
            # the refusal on the client side ("Internal error from Core").
            code, details, _ = await raw_stream(srv.port, [_cfg()])
            assert code == grpc.StatusCode.UNAUTHENTICATED and "--token" in details
            code, details, _ = await raw_stream(
                srv.port, [_cfg()], metadata=(("authorization", "Bearer wrong"),)
            )
            assert code == grpc.StatusCode.UNAUTHENTICATED and "not valid" in details
            async with grpc.aio.insecure_channel(target) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await system_pb2_grpc.SystemStub(channel).GetStats(system_pb2.StatsRequest())
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(grpc.aio.AioRpcError):
                    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            async with AsyncClient(target, token="s3cret") as client:
                _, finals, _ = await stream_audio(client, speech_like(3.0), speed=None)
                assert finals
                stats = await client.stats()
                assert stats.streams_total == 1
            async with AsyncClient(target, token="wrong") as client:
                with pytest.raises(ClientError) as err:
                    await client.stream()
                assert err.value.code == grpc.StatusCode.UNAUTHENTICATED

    run(main())


def test_health_and_reflection() -> None:
    async def main() -> None:
        async with (
            running_server(FakeRecognizer()) as srv,
            grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel,
        ):
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "audiototext.v1.Transcription"):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            refl = reflection_pb2_grpc.ServerReflectionStub(channel)
            call = refl.ServerReflectionInfo()
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            reply = await call.read()
            await call.done_writing()
            names = {s.name for s in reply.list_services_response.service}
            assert {
                "audiototext.v1.Transcription",
                "audiototext.v1.Models",
                "audiototext.v1.System",
                "grpc.health.v1.Health",
            } <= names

    run(main())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl program")
def test_tls(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)

    async def main() -> None:
        async with running_server(FakeRecognizer(), config(tls_cert=cert, tls_key=key)) as srv:
            creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
            code, details, responses = await raw_stream(
                srv.port,
                [_cfg(), _audio(1, encode_pcm16(speech_like(2.0))), FINISH],
                credentials=creds,
            )
            assert code == grpc.StatusCode.OK, details
            assert _finals(responses)
            # Plain text to a TLS port fails rather than leaking audio in the clear.
            code, _, _ = await raw_stream(srv.port, [_cfg(), FINISH])
            assert code == grpc.StatusCode.UNAVAILABLE

    run(main())


# --------------------------------------------------------------------------- flow control


def test_client_ignoring_credit_is_refused_with_resource_exhausted() -> None:
    async def main() -> tuple[grpc.StatusCode, str]:
        # A slow engine (2x real time) and a 4-s buffer: 20 s of audio at once overflows.
        async with running_server(FakeRecognizer(speed=2), config(max_buffered_s=4.0)) as srv:
            audio = encode_pcm16(speech_like(20.0))
            reqs = [_cfg()] + [
                _audio(i + 1, audio[j : j + 32000])
                for i, j in enumerate(range(0, len(audio), 32000))
            ]
            code, details, _ = await raw_stream(srv.port, reqs)
            return code, details

    code, details = run(main())
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "credit" in details


def test_client_sending_10x_real_time_is_paced_by_credit() -> None:
    audio = speech_like(30.0, seed=5)

    async def main() -> tuple[list[str], list[str], Stream]:
        async with (
            running_server(FakeRecognizer(speed=3), config(max_buffered_s=4.0)) as srv,
            AsyncClient(f"127.0.0.1:{srv.port}") as client,
        ):
            _, finals, stream = await stream_audio(client, audio, speed=10.0)
        async with (
            running_server(FakeRecognizer(speed=100)) as srv,
            AsyncClient(f"127.0.0.1:{srv.port}") as client,
        ):
            _, reference, _ = await stream_audio(client, audio, speed=None)
        return [f.text for f in finals], [f.text for f in reference], stream

    finals, reference, stream = run(main())
    assert finals == reference  # nothing lost or refused
    stats = stream.stats
    assert stats.credit_waits > 0  # the client did wait for credit
    assert stats.max_inflight_ms <= 2000 + 100  # never more than the advertised credit


# --------------------------------------------------------------------------- resume


def test_resume_after_cuts_delivers_exactly_the_uninterrupted_transcript() -> None:
    audio = speech_like(20.0, seed=7)

    async def main() -> tuple[list[str], list[str], Stream, int]:
        async with running_server(FakeRecognizer(speed=20)) as srv:
            async with AsyncClient(f"127.0.0.1:{srv.port}") as client:
                _, reference, _ = await stream_audio(client, audio, speed=None)
            proxy = TcpProxy(srv.port)
            await proxy.start()
            try:
                async with AsyncClient(proxy.target) as client:
                    hooks = [(t, proxy.cut) for t in (2.0, 5.5, 9.0, 13.0, 17.5)]
                    _, finals, stream = await stream_audio(client, audio, speed=4.0, during=hooks)
            finally:
                await proxy.stop()
            return [f.text for f in finals], [f.text for f in reference], stream, proxy.cuts

    finals, reference, stream, cuts = run(main())
    assert cuts == 5
    assert stream.stats.reconnects >= 5
    assert finals == reference
    ids = [int(t.split()[0][1:]) for t in finals]
    assert ids == list(range(1, len(ids) + 1))  # every utterance once, in order


def test_session_expires_after_grace_period() -> None:
    async def main() -> None:
        async with running_server(FakeRecognizer(), config(resume_grace_s=0.3)) as srv:
            code, _, responses = await raw_stream(
                srv.port, [_cfg(), _audio(1, encode_pcm16(speech_like(2.0)))]
            )
            session_id = responses[0].started.session_id
            assert srv.store is not None
            for _ in range(100):
                await asyncio.sleep(0.1)
                if srv.store.open_count() == 0 and session_id not in srv.store._sessions:
                    break
            code, details, _ = await raw_stream(srv.port, [_cfg(session_id=session_id)])
            assert code == grpc.StatusCode.NOT_FOUND
            assert "start a new stream" in details

    run(main())


def test_graceful_shutdown_finalises_open_streams() -> None:
    async def main() -> list[str]:
        srv_cm = running_server(FakeRecognizer())
        srv = await srv_cm.__aenter__()
        async with AsyncClient(f"127.0.0.1:{srv.port}") as client:
            stream = await client.stream()
            # Speech that has not ended: only shutdown can finalise it.
            await stream.send(np.zeros(16000, np.float32))
            await stream.send(
                (0.2 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32)
            )
            for _ in range(100):
                await asyncio.sleep(0.05)
                if stream._acked >= 30:
                    break
            finals: list[str] = []

            async def collect() -> None:
                async for ev in stream.results():
                    if getattr(ev, "is_final", False):
                        assert isinstance(ev, TranscriptUpdate)  # the only kind with is_final
                        finals.append(ev.text)

            task = asyncio.create_task(collect())
            await srv_cm.__aexit__(None, None, None)
            await asyncio.wait_for(task, 30)
            await stream.close()
        return finals

    finals = run(main())
    assert finals and finals[0].startswith("u1 n")


# --------------------------------------------------------------------------- adaptive


def test_adaptive_compression_switches_to_opus_on_a_slow_link() -> None:
    audio = speech_like(16.0, seed=11)

    async def main() -> tuple[Stream, Stream, int]:
        async with running_server(FakeRecognizer()) as srv:
            fast = TcpProxy(srv.port)
            slow = TcpProxy(srv.port, rate_bytes_s=10_000)  # 80 kbit/s < PCM16's 256
            await fast.start()
            await slow.start()
            try:
                async with AsyncClient(fast.target) as client:
                    _, _, s_fast = await stream_audio(client, audio, speed=1.0)
                async with AsyncClient(slow.target) as client:
                    _, finals, s_slow = await stream_audio(client, audio, speed=1.0)
            finally:
                await fast.stop()
                await slow.stop()
            return s_fast, s_slow, len(finals)

    s_fast, s_slow, n_finals = run(main())
    assert set(s_fast.stats.encodings) == {"PCM16"}
    assert any(k.startswith("OPUS") for k in s_slow.stats.encodings)
    assert s_slow.stats.switches
    assert n_finals > 0
