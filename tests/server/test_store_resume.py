"""Streams that outlive their server process, through a real redis-server (and HAProxy).

Real ``audiototext serve`` processes (tiny.en int8 from the test cache) with
``--session-store redis://...``, the Python client streaming espeak-ng speech at the pace of
speech: ``kill -9`` of the server mid-stream and a new one on the same port, or one of two
servers behind HAProxy killed mid-stream, and the client's finals equal those of the same
audio streamed without a cut (no word lost or repeated). Also: Redis killed mid-stream
(transcription goes on, the alert is raised), and foreign data under a session's key.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from numpy.typing import NDArray

from audiototext.client import AsyncClient, ReconnectPolicy, StreamSettings, TranscriptUpdate
from audiototext.models.cache import ModelCache
from audiototext.server.redis_store import KEY_PREFIX
from audiototext.wire._proto import transcription_pb2 as pb
from server.grpc_harness import raw_stream, run
from server.real_engine import long_speech
from support.services import CLI, Redis, Server, free_port, running_haproxy, running_redis
from support.speech import SpeechSynthesizer

pytestmark = [pytest.mark.slow]


FINALS_BEFORE_CUT = 2
# A session is kept this long after its server vanished: longer than a server takes to start
# on a loaded test machine (the default 30 s is not).
GRACE = ("--resume-grace-s", "120")
SETTINGS = StreamSettings(
    compression="pcm16",  # Opus decoding state does not move between servers (README)
    reconnect=ReconnectPolicy(max_attempts=400, max_backoff_s=0.5, initial_backoff_s=0.1),
)


@pytest.fixture
def store(filled_cache: ModelCache) -> Iterator[Redis]:
    with running_redis() as server:
        yield server


@contextlib.contextmanager
def servers(*made: Server) -> Iterator[None]:
    try:
        yield
    except BaseException:
        for s in made:  # shown with the failure
            print(f"--- server on {s.port}:\n{s.log_tail()}")
        raise
    finally:
        for s in made:
            s.stop()


Cut = Callable[[str], None]  # called (off the loop) with the session id after the cut's final


async def stream(
    target: str,
    audio: NDArray[np.float32],
    cut: Cut | None = None,
    *,
    cut_drops_stream: bool = True,
) -> list[tuple[int, str]]:
    """Stream ``audio`` at the pace of speech; ``cut`` runs once FINALS_BEFORE_CUT finals
    came (the stream goes on meanwhile); the finals (utterance id, text) in order."""
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
                        cut_task = asyncio.create_task(asyncio.to_thread(cut, s.session_id))

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
        if cut is not None and cut_drops_stream:
            assert s.stats.reconnects >= 1, "the stream never lost its server"
    return finals


def _audio(speech: SpeechSynthesizer) -> NDArray[np.float32]:
    return long_speech(speech, 30.0)


def test_kill_9_and_a_new_server_on_the_port_give_the_uninterrupted_transcript(
    store: Redis, speech: SpeechSynthesizer
) -> None:
    audio = _audio(speech)
    first = Server(store.url, 0, 0, *GRACE).start()
    second = Server(store.url, first.port, first.http_port, *GRACE)
    with servers(first, second):
        reference = run(stream(f"127.0.0.1:{first.port}", audio), 600)

        def cut(_session_id: str) -> None:
            first.kill9()
            second.start()  # same port, same Redis; the client keeps reconnecting meanwhile

        cut_run = run(stream(f"127.0.0.1:{first.port}", audio, cut), 600)
    assert len(reference) >= 4 and any(t.strip() for _, t in reference)
    assert cut_run == reference


def test_haproxy_two_servers_one_killed_mid_stream_gives_the_same_transcript(
    store: Redis, speech: SpeechSynthesizer
) -> None:
    audio = _audio(speech)
    a = Server(store.url, 0, 0, *GRACE).start()
    b = Server(store.url, 0, 0, *GRACE).start()
    with servers(a, b), running_haproxy([(a.port, a.http_port), (b.port, b.http_port)]) as front:
        reference = run(stream(f"127.0.0.1:{front}", audio), 600)
        killed: list[Server] = []

        def cut(_session_id: str) -> None:
            holder = [s for s in (a, b) if _active(s) == 1]
            assert len(holder) == 1, "the stream is not on exactly one backend"
            holder[0].kill9()
            killed.append(holder[0])

        cut_run = run(stream(f"127.0.0.1:{front}", audio, cut), 600)
        survivor = b if killed == [a] else a
        assert survivor.system()["stats"]["streams_total"] >= 1  # type: ignore[index]
    assert len(reference) >= 4
    assert cut_run == reference


def _active(server: Server) -> int:
    stats = server.system()["stats"]
    assert isinstance(stats, dict)
    return int(stats["active_streams"])


def test_redis_killed_mid_stream_transcription_goes_on_with_an_alert(
    store: Redis, speech: SpeechSynthesizer
) -> None:
    audio = _audio(speech)
    server = Server(store.url).start()
    with servers(server):
        reference = run(stream(f"127.0.0.1:{server.port}", audio), 600)
        seen: list[object] = []

        def cut(_session_id: str) -> None:
            store.kill()

        async def cut_run() -> list[tuple[int, str]]:
            finals = await stream(f"127.0.0.1:{server.port}", audio, cut, cut_drops_stream=False)
            seen.append(server.system()["alerts"])
            return finals

        finals = run(cut_run(), 600)
    assert finals == reference
    alerts = seen[0]
    assert isinstance(alerts, list)
    # (engine_overloaded may come and go too, on a loaded machine)
    down = [a for a in alerts if a["name"] == "session_store_down"]
    assert down, alerts
    assert "cannot be reached" in down[0]["message"]


def test_foreign_data_under_a_session_key_is_refused_for_that_session_only(
    store: Redis, speech: SpeechSynthesizer
) -> None:
    raw = redis.Redis.from_url(store.url)
    raw.hset(KEY_PREFIX + "someonesdata", mapping={"meta": b'{"version": 99}', "audio": b"x"})
    server = Server(store.url).start()
    with servers(server):
        resume = pb.StreamingRequest(
            config=pb.StreamConfig(
                session_id="someonesdata",
                encoding=pb.PCM16,
                sample_rate_hz=16000,
                resume_from_seq=5,
                resume_from_event=3,
            )
        )
        code, details, _ = run(raw_stream(server.port, [resume]), 120)
        assert code.name == "DATA_LOSS", (code, details)
        assert "cannot be read" in details and "start a new stream" in details
        code, details, _ = run(raw_stream(server.port, [_resume("nosuchsession")]), 120)
        assert code.name == "NOT_FOUND", (code, details)
        # The server goes on serving others.
        finals = run(stream(f"127.0.0.1:{server.port}", _audio(speech)[: 16000 * 8]), 600)
        assert any(t.strip() for _, t in finals)


def _resume(session_id: str) -> pb.StreamingRequest:
    return pb.StreamingRequest(
        config=pb.StreamConfig(
            session_id=session_id, encoding=pb.PCM16, sample_rate_hz=16000, resume_from_event=1
        )
    )


def test_unreachable_store_at_start_serves_with_the_alert(filled_cache: ModelCache) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    server = Server(dead).start()
    with servers(server):
        alerts = server.system()["alerts"]
        assert isinstance(alerts, list)
        assert "session_store_down" in [a["name"] for a in alerts], alerts


def test_malformed_store_url_is_refused_at_start(filled_cache: ModelCache, tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "serve", "--port", "0", "--session-store", "localhost:6379"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done
    assert "use redis://HOST:PORT/DB" in done.stderr
