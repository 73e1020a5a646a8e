"""Session states in a real redis-server: round trip, expiry, foreign data, Redis going down."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis

from audiototext.audio.vad import DetectorSnapshot
from audiototext.errors import ConfigError
from audiototext.server.redis_store import KEY_PREFIX, RedisStateStore
from audiototext.server.session_state import (
    CorruptStateError,
    MemoryStateStore,
    SessionState,
    StoreUnavailableError,
    check_store_url,
    decode_state,
    encode_state,
    spec_fields,
)
from audiototext.streaming.checkpoint import CheckpointFinal, CheckpointUtterance, StreamCheckpoint
from audiototext.streaming.state import EarlierFinal
from audiototext.streaming.types import StreamOptions, StreamResult, StreamWord
from support.services import Redis, running_redis


@pytest.fixture
def redis_server() -> Iterator[Redis]:
    with running_redis() as server:
        yield server


def make_state(session_id: str = "abc", audio_s: float = 3.0) -> SessionState:
    rng = np.random.default_rng(1)
    audio = rng.standard_normal(int(audio_s * 16000)).astype(np.float32)
    cp = StreamCheckpoint(
        received=16000 + audio.shape[0],
        vad_position=16000 + audio.shape[0] - 800,
        audio_start=16000,
        audio=audio,
        detector_base=0,
        detector=DetectorSnapshot(
            rng.standard_normal((2, 1, 128)).astype(np.float32),
            rng.standard_normal(64).astype(np.float32),
            rng.standard_normal(100).astype(np.float32),
            60000,
            True,
            40000,
            0.25,
            (True, 41000, 0, 0, 0, 117),
        ),
        next_utterance_id=3,
        last_utterance_stop=40000,
        processed=40000,
        earlier=(EarlierFinal(20000, (1, 2, 3)), EarlierFinal(30000, (4, 5))),
        pending=(CheckpointFinal(2, 30000, 40000, True),),
        utterance=CheckpointUtterance(3, 41000, False),
        detected_language=None,
    )
    final = StreamResult(
        1,
        True,
        "Hello there.",
        "Hello there.",
        1.0,
        1.0,
        2.0,
        2.5,
        (StreamWord("Hello", 1.0, 1.4), StreamWord("there.", 1.5, 2.0)),
    )
    return SessionState(
        session_id,
        spec_fields(1, 16000, 1, True, StreamOptions(model="tiny.en")),
        next_seq=42,
        event_count=17,
        finals=((9, final),),
        engine=cp,
    )


def _same(a: SessionState, b: SessionState) -> None:
    assert (a.session_id, a.spec, a.next_seq, a.event_count, a.finals) == (
        b.session_id,
        b.spec,
        b.next_seq,
        b.event_count,
        b.finals,
    )
    x, y = a.engine, b.engine
    assert np.array_equal(x.audio, y.audio)
    assert np.array_equal(x.detector.recurrent, y.detector.recurrent)
    assert np.array_equal(x.detector.context, y.detector.context)
    assert np.array_equal(x.detector.pending, y.detector.pending)
    for field in (
        "received",
        "vad_position",
        "audio_start",
        "next_utterance_id",
        "earlier",
        "pending",
        "utterance",
        "processed",
        "last_utterance_stop",
    ):
        assert getattr(x, field) == getattr(y, field), field
    assert x.detector.segmenter == y.detector.segmenter


def _save(store: RedisStateStore | MemoryStateStore, state: SessionState) -> bool:
    done = threading.Event()
    result: list[bool] = []

    def callback(ok: bool) -> None:
        result.append(ok)
        done.set()

    store.save(state, callback)
    assert done.wait(10), "save never answered"
    return result[0]


def test_state_round_trips_through_redis_and_expires(redis_server: Redis) -> None:
    store = RedisStateStore(redis_server.url, ttl_s=30)
    try:
        assert store.ping() is None
        state = make_state()
        assert _save(store, state)
        loaded = store.load("abc")
        assert loaded is not None
        _same(state, loaded)
        raw = redis.Redis.from_url(redis_server.url)
        ttl = raw.pttl(KEY_PREFIX + "abc")
        assert 0 < ttl <= 30_000
        assert store.load("nope") is None
        store.delete("abc")
        store.touch([])  # a write after the delete: the queue is in order
        deadline = 50
        while raw.exists(KEY_PREFIX + "abc") and deadline:
            threading.Event().wait(0.1)
            deadline -= 1
        assert store.load("abc") is None
    finally:
        store.close()


def test_foreign_or_cut_data_is_refused_with_a_reason(redis_server: Redis) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    raw.hset(KEY_PREFIX + "x1", mapping={"meta": b"not json"})
    raw.set(KEY_PREFIX + "x2", b"a string, not a hash")
    good: dict[Any, Any] = encode_state(make_state("x3"))
    raw.hset(KEY_PREFIX + "x3", mapping={**good, "audio": good["audio"][:-2]})
    other: dict[Any, Any] = encode_state(make_state("someone-else"))
    raw.hset(KEY_PREFIX + "x4", mapping=other)
    store = RedisStateStore(redis_server.url, ttl_s=30)
    try:
        with pytest.raises(CorruptStateError):
            store.load("x1")
        with pytest.raises((CorruptStateError, StoreUnavailableError)):
            store.load("x2")  # WRONGTYPE from Redis
        with pytest.raises(CorruptStateError, match=r"multiple of 4|does not end"):
            store.load("x3")
        with pytest.raises(CorruptStateError, match="another session"):
            store.load("x4")
    finally:
        store.close()


def test_a_store_that_goes_down_reports_it_and_comes_back(redis_server: Redis) -> None:
    health: list[str | None] = []
    store = RedisStateStore(redis_server.url, ttl_s=30, on_health=health.append, retry_s=0.0)
    try:
        assert _save(store, make_state())
        redis_server.kill()
        assert not _save(store, make_state())  # answered, not hung: transcription goes on
        assert health[-1] is not None
        with pytest.raises(StoreUnavailableError):
            store.load("abc")
        redis_server.start()  # the same port again
        assert _save(store, make_state())
        assert health[-1] is None
    finally:
        store.close()


def test_memory_store_keeps_states_in_this_process() -> None:
    store = MemoryStateStore()
    assert not store.durable
    assert _save(store, make_state())
    loaded = store.load("abc")
    assert loaded is not None
    _same(make_state(), loaded)


def test_decode_checks_every_field() -> None:
    fields = encode_state(make_state())
    assert decode_state("abc", fields).next_seq == 42
    with pytest.raises(CorruptStateError, match="VAD state"):
        decode_state("abc", {**fields, "vad": fields["vad"][:8]})
    with pytest.raises(CorruptStateError):
        decode_state("abc", {k: v for k, v in fields.items() if k != "audio"})
    meta = fields["meta"].replace(b'"next_seq":42', b'"next_seq":-1')
    with pytest.raises(CorruptStateError, match="expected a count"):
        decode_state("abc", {**fields, "meta": meta})


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://localhost:6379", "use redis://"),
        ("localhost:6379", "use redis://"),
        ("redis://", "no host"),
        ("redis://host:99999/0", r"(?i)port"),
    ],
)
def test_bad_store_urls_are_refused_at_start(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        check_store_url(url)
    assert check_store_url("redis://127.0.0.1:6379/2") == "redis://127.0.0.1:6379/2"
