"""Live streams through Ray Serve: ``audiototext serve --ray`` on a two-node local cluster.

One cluster for the module (tests/support/ray_cluster.py), a real redis-server, the real
tiny.en int8 engine in two replicas behind Serve's gRPC proxy, espeak-ng speech streamed at
the pace of speech by our own client. Each cut stream's finals must equal an uninterrupted
run's: (1) a dropped connection reconnects to the replica that holds the session (it is
resumed in memory, never restored elsewhere); (2) the replica holding a stream is killed
(``ray.kill``) and the stream resumes from Redis on another; (3) a redeploy that changes the
replica count replaces every replica under open streams. Through Serve's HTTP proxy: (4) the
page and ``/api/v1/health``; (5) a malformed ``x-session-id`` is refused, serving goes on;
(6) the page's WebSocket stream, cut and resumed with the same ``x-session-id``, stays on one
replica; (7) a replica's refusal (NOT_FOUND, INVALID_ARGUMENT) reaches the client with its own
code and message. Every routing runs as on a loaded machine (see ``env``). Marked ``ray``
(``RAY_TESTS=0``); the tests share one deployment and run in file order (CI's
``--dist loadfile`` keeps the module on one worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from numpy.typing import NDArray

from audiototext.client import (
    AsyncClient,
    ClientError,
    ReconnectPolicy,
    StreamSettings,
    TranscriptUpdate,
)
from audiototext.client._stream import Stream
from audiototext.wire._proto import transcription_pb2 as pb
from audiototext.wire._proto.transcription_pb2_grpc import TranscriptionStub
from inference.models_support import shared_model_cache
from server.grpc_harness import TcpProxy, run
from server.real_engine import long_speech
from server.ws_harness import WsStreamer
from support.fixture_cache import shared_speech_dir
from support.ray_cluster import RayCluster, ray_available, ray_cluster
from support.services import Redis, free_port, running_redis
from support.speech import SpeechSynthesizer, espeak_available

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SRC = Path(__file__).resolve().parents[2] / "src"
FINALS_BEFORE_CUT = 2
AUDIO_S = 20.0
SETTINGS = StreamSettings(
    compression="pcm16",  # Opus decoding state does not move between replicas (README)
    reconnect=ReconnectPolicy(max_attempts=400, max_backoff_s=0.5, initial_backoff_s=0.1),
)
Cut = Callable[[Stream], Coroutine[Any, Any, None]]  # once FINALS_BEFORE_CUT finals came


@dataclass
class Deployment:
    port: int  # Serve's gRPC proxy
    http_port: int  # Serve's HTTP proxy
    process: subprocess.Popen[str]
    log: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {
        **os.environ,
        "AUDIOTOTEXT_HOME": str(shared_model_cache(tmp_path_factory)),
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        # A loaded machine, made certain: Serve's routers forget queue lengths at once and
        # give a replica's queue-length probe 1 ms (100 ms by default), so the first probe
        # of every routing misses it and only the growing retry deadlines get answers. Ray's
        # own ConsistentHashRouter then sends a reconnect to whichever replica answers first;
        # ours (rayserve/routing.py) waits for the one that holds the session.
        "RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S": "0.001",
        "RAY_SERVE_QUEUE_LENGTH_CACHE_TIMEOUT_S": "0",
    }


@pytest.fixture(scope="module")
def audio() -> NDArray[np.float32]:
    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    return long_speech(SpeechSynthesizer(shared_speech_dir()), AUDIO_S)


@pytest.fixture(scope="module")
def cluster(env: dict[str, str]) -> Iterator[RayCluster]:
    if not ray_available():
        pytest.skip("ray is not installed (pip install 'audiototext[ray]')")
    with ray_cluster(env, nodes=2, cpus_per_node=2) as running:
        yield running


@pytest.fixture(scope="module")
def redis_store() -> Iterator[Redis]:
    with running_redis() as server:
        yield server


@pytest.fixture(scope="module")
def deployment(
    cluster: RayCluster, redis_store: Redis, env: dict[str, str], tmp_path_factory: Any
) -> Iterator[Deployment]:
    """``audiototext serve --ray`` (two replicas), running until the module ends."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    port = free_port()
    http_port = free_port()
    code = "import sys; from audiototext.cli import main; sys.exit(main(sys.argv[1:]))"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                "serve",
                "--ray",
                cluster.address,
                "--session-store",
                redis_store.url,
                "--precision",
                "int8",
                "--resume-grace-s",
                "120",
                "--ray-replicas",
                "2",
                "--ray-grpc-port",
                str(port),
                "--ray-http-port",
                str(http_port),
            ],
            env=cluster.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.monotonic() + 400
    while "listening on" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"serve --ray did not come up:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    try:
        yield Deployment(port, http_port, process, log)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def driver(cluster: RayCluster, deployment: Deployment) -> Iterator[Any]:
    """This process joined to the cluster: deployment handles and ``ray.kill``."""
    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        yield ray
    finally:
        # report()'s handle (Serve caches it) pushes load to the controller while the
        # deployment autoscales; stopped first, its thread would log errors after shutdown.
        from ray import serve

        from audiototext.rayserve.deploy import APP_NAME, DEPLOYMENT_NAME

        with contextlib.suppress(Exception):  # the application may be gone already
            serve.get_deployment_handle(DEPLOYMENT_NAME, APP_NAME).shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


def report(route_key: str) -> dict[str, Any]:
    """What the replica a key routes to says of itself (same ring as the proxy's)."""
    from ray import serve

    from audiototext.rayserve.deploy import APP_NAME, DEPLOYMENT_NAME

    handle = serve.get_deployment_handle(DEPLOYMENT_NAME, APP_NAME)
    result: dict[str, Any] = handle.options(session_id=route_key).report.remote().result()
    return result


def replica_reports(count: int, limit_s: float = 180.0) -> dict[str, dict[str, Any]]:
    """Every replica's report: keys tried until ``count`` distinct replicas answered (a
    replacement replica may still be loading its model)."""
    seen: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + limit_s
    n = 0
    while time.monotonic() < deadline:
        r = report(f"probe-{n}")
        n += 1
        seen[r["replica"]] = r
        if len(seen) == count:
            return seen
        if n % 50 == 0:
            seen.clear()  # a replica replaced meanwhile must not count
            time.sleep(1)
    raise AssertionError(f"only {len(seen)} of {count} replicas answered: {list(seen)}")


async def stream(
    target: str, audio: NDArray[np.float32], cut: Cut | None = None
) -> tuple[list[tuple[int, str]], Stream]:
    """``audio`` at the pace of speech; ``cut`` once FINALS_BEFORE_CUT finals came (the stream
    goes on meanwhile); the finals (utterance id, text) in order, and the stream."""
    finals: list[tuple[int, str]] = []
    async with AsyncClient(target) as client:
        s = await client.stream(SETTINGS)
        cut_task: asyncio.Task[None] | None = None

        async def read() -> None:
            nonlocal cut_task
            async for r in s.results():
                if isinstance(r, TranscriptUpdate) and r.is_final:
                    finals.append((r.utterance_id, r.text))
                    if cut is not None and len(finals) == FINALS_BEFORE_CUT:
                        cut_task = asyncio.create_task(cut(s))

        reader = asyncio.create_task(read())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        step = 1600
        for n, at in enumerate(range(0, audio.shape[0], step)):
            await s.send(audio[at : at + step])
            await asyncio.sleep(max(0.0, t0 + (n + 1) * 0.1 - loop.time()))
        await s.finish()
        await reader
        if cut_task is not None:
            await cut_task
        await s.close()
        assert cut is None or cut_task is not None, f"fewer than {FINALS_BEFORE_CUT} finals"
    return finals, s


@pytest.fixture(scope="module")
def reference(deployment: Deployment, audio: NDArray[np.float32]) -> list[tuple[int, str]]:
    finals, s = run(stream(f"127.0.0.1:{deployment.port}", audio), 300)
    assert len(finals) >= 4 and any(t.strip() for _, t in finals), finals
    assert s.stats.reconnects == 0
    return finals


# The HTTP tests come before the gRPC ones: the redeploy test leaves one replica.


def http_request(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_page_and_rest_api_through_serve_s_http_proxy(deployment: Deployment) -> None:
    status, body = http_request(deployment.http_port, "/")
    assert status == 200 and b"<html" in body.lower(), body[:200]
    status, body = http_request(deployment.http_port, "/api/v1/health", {"x-session-id": "h-1"})
    assert status == 200, body
    assert json.loads(body)["status"] == "SERVING" and json.loads(body)["model"] == "tiny.en", body


def test_a_malformed_x_session_id_is_refused_and_serving_goes_on(
    deployment: Deployment,
) -> None:
    status, body = http_request(
        deployment.http_port, "/api/v1/health", {"x-session-id": "no spaces/or slashes"}
    )
    assert status == 400, body
    message = json.loads(body)["error"]["message"]
    assert "x-session-id" in message and "128 characters" in message, message
    status, _ = http_request(deployment.http_port, "/api/v1/health")  # no header: any replica
    assert status == 200


def test_a_websocket_stream_through_serve_resumes_on_the_same_replica(
    driver: Any, deployment: Deployment, audio: NDArray[np.float32]
) -> None:
    """Speech over the page's WebSocket through Serve's HTTP proxy, the socket cut mid-way and
    reopened with the same x-session-id: the session resumes in memory on the replica that
    holds it (a reconnect that reached the other replica would restore it there from Redis,
    which counts as a second stream)."""
    key = "ws-affinity-1"
    before = replica_reports(2)
    streamer = WsStreamer(
        f"ws://127.0.0.1:{deployment.http_port}/api/v1/stream", headers={"x-session-id": key}
    )
    out = run(streamer.run(audio, speed=2.0, cut_at_s=(6.0,)), 300)
    text = " ".join(f["text"] for f in out.finals).lower()
    for word in ("quick", "lazy", "train", "station", "tomorrow"):
        assert word in text, (word, text)
    assert len(out.close_codes) == 2, out.close_codes  # the cut one and the completed one
    assert len({s["session_id"] for s in out.started}) == 1, out.started  # resumed, not new
    holder = report(key)  # the same ring as the proxy's
    after = replica_reports(2)
    created = {rid: after[rid]["streams_total"] - before[rid]["streams_total"] for rid in after}
    assert created[holder["replica"]] == 1 and sorted(created.values()) == [0, 1], created


def test_a_replica_s_refusals_reach_the_client_with_their_own_code_through_serve(
    deployment: Deployment,
) -> None:
    """Serve's proxy answers a replica's refusal with the replica's status, not INTERNAL: a
    resume of a session no replica and no store has is NOT_FOUND, once (the client does not
    retry it), and a stream that opens with audio is INVALID_ARGUMENT; serving goes on."""
    target = f"127.0.0.1:{deployment.port}"

    async def resume_unknown() -> tuple[ClientError, Stream]:
        async with AsyncClient(target) as client:
            s = Stream(client, SETTINGS)
            s.session_id = "never-was-begun-1"
            with pytest.raises(ClientError) as refused:
                await s.start()
            return refused.value, s

    error, s = run(resume_unknown(), 120)
    assert error.code == grpc.StatusCode.NOT_FOUND, (error.code, str(error))
    assert "never-was-begun-1" in str(error) and "session store" in str(error), str(error)
    assert s.stats.reconnects == 0

    async def audio_first() -> grpc.aio.AioRpcError:
        async with grpc.aio.insecure_channel(target) as channel:
            call = TranscriptionStub(channel).StreamingTranscribe(
                metadata=(("session_id", "audio-first-1"),)
            )
            await call.write(pb.StreamingRequest(audio=pb.AudioChunk(seq=1, data=b"\0\0")))
            await call.done_writing()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in call:
                    pass
            return refused.value

    rpc_error = run(audio_first(), 120)
    assert rpc_error.code() == grpc.StatusCode.INVALID_ARGUMENT, rpc_error
    assert "first message of a stream must be a StreamConfig" in (rpc_error.details() or "")
    status, _ = http_request(deployment.http_port, "/api/v1/health")
    assert status == 200


def test_a_reconnect_lands_on_the_replica_that_holds_the_session(
    driver: Any, deployment: Deployment, audio: NDArray[np.float32], reference: Any
) -> None:
    before = replica_reports(2)

    async def cut_run() -> tuple[list[tuple[int, str]], Stream]:
        proxy = TcpProxy(deployment.port)
        await proxy.start()

        async def cut(s: Stream) -> None:
            assert proxy.cut() >= 1

        try:
            return await stream(proxy.target, audio, cut)
        finally:
            await proxy.stop()

    finals, s = run(cut_run(), 300)
    assert s.stats.reconnects >= 1, "the connection was never cut"
    assert finals == reference
    after = replica_reports(2)
    created = {rid: after[rid]["streams_total"] - before[rid]["streams_total"] for rid in after}
    # Once, on one replica: a reconnect that reached the other one would have restored the
    # session there from Redis, which counts as a second stream.
    assert sorted(created.values()) == [0, 1], created
    holder = report(s.route_key)  # the replica the key routes to is the one it ran on
    assert created[holder["replica"]] == 1, (holder, created)


def test_a_killed_replica_s_stream_resumes_from_redis_on_another(
    driver: Any, deployment: Deployment, audio: NDArray[np.float32], reference: Any
) -> None:
    killed: list[str] = []

    async def cut(s: Stream) -> None:
        holder = await asyncio.to_thread(report, s.route_key)
        assert s.session_id in holder["sessions"], holder
        actor = driver.get_actor(holder["actor"], namespace="serve")
        driver.kill(actor, no_restart=True)
        killed.append(holder["replica"])

    finals, s = run(stream(f"127.0.0.1:{deployment.port}", audio, cut), 300)
    assert killed and s.stats.reconnects >= 1
    assert finals == reference
    now = replica_reports(2)  # Serve replaced the killed replica
    assert killed[0] not in now


def test_a_redeploy_that_changes_the_replica_count_keeps_open_streams(
    driver: Any,
    deployment: Deployment,
    redis_store: Redis,
    audio: NDArray[np.float32],
    reference: Any,
) -> None:
    from audiototext.rayserve.deploy import ServeSettings, deploy
    from audiototext.server.config import ServerConfig

    old = set(replica_reports(2))
    config = ServerConfig(
        model="tiny.en", precision="int8", resume_grace_s=120, session_store=redis_store.url
    )

    async def cut(s: Stream) -> None:
        # The same application, one replica: Serve replaces both replicas under the stream.
        await asyncio.to_thread(
            deploy, config, ServeSettings(replicas=1, grpc_port=deployment.port)
        )

    finals, s = run(stream(f"127.0.0.1:{deployment.port}", audio, cut), 400)
    assert finals == reference
    now = replica_reports(1)
    assert not old & set(now), "the redeploy kept an old replica"
    assert s.stats.reconnects >= 1


def running_replicas() -> int:
    from ray import serve

    from audiototext.rayserve.deploy import APP_NAME, DEPLOYMENT_NAME

    app = serve.status().applications[APP_NAME]
    states = app.deployments[DEPLOYMENT_NAME].replica_states
    return sum(n for state, n in states.items() if str(state).endswith("RUNNING"))


def test_streams_above_the_target_add_a_replica_and_a_new_stream_lands_on_it(
    driver: Any, deployment: Deployment, redis_store: Redis
) -> None:
    """Autoscaling driven by load: one replica with a limit of 2 sessions (target 1.5), two
    streams held open on it; Serve adds the second replica, and a third stream, whatever its
    key, runs there (the full replica passes it on). Last: it redeploys the application."""
    from audiototext.rayserve.deploy import ServeSettings, deploy
    from audiototext.server.config import ServerConfig

    config = ServerConfig(
        model="tiny.en",
        precision="int8",
        resume_grace_s=120,
        session_store=redis_store.url,
        max_sessions=2,
    )
    settings = ServeSettings(
        replicas=1, max_replicas=2, grpc_port=deployment.port, scale_window_s=2.0
    )
    deploy(config, settings)
    first = set(replica_reports(1))
    assert running_replicas() == 1
    silence = np.zeros(1600, dtype=np.float32)

    async def scenario() -> tuple[str, float]:
        async with AsyncClient(f"127.0.0.1:{deployment.port}") as client:
            held = [await client.stream(SETTINGS) for _ in range(2)]
            stop = asyncio.Event()

            async def feed(s: Stream) -> None:  # open streams at the pace of speech
                while not stop.is_set():
                    await s.send(silence)
                    await asyncio.sleep(0.1)

            feeders = [asyncio.create_task(feed(s)) for s in held]
            began = time.monotonic()
            while await asyncio.to_thread(running_replicas) < 2:
                assert time.monotonic() - began < 240, "no replica was added in 240 s"
                await asyncio.sleep(1)
            scaled_after = time.monotonic() - began
            third = await client.stream(SETTINGS)
            for _ in range(10):
                await third.send(silence)
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*feeders)
            for s in (*held, third):
                await s.finish()
                async for _ in s.results():
                    pass
                await s.close()
            return third.session_id, scaled_after

    session_id, scaled_after = run(scenario(), 400)
    now = replica_reports(2)
    added = [rid for rid in now if rid not in first]
    assert len(added) == 1, (first, list(now))
    # The new replica ran the third stream and only it; the first one kept the two it had.
    assert now[added[0]]["streams_total"] == 1, (now, session_id, scaled_after)
    (kept,) = first
    assert now[kept]["streams_total"] == 2, now
