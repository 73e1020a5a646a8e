"""The controller changes a real tiny.en engine's threads while a stream runs: the sessions
are rebuilt in the background and swapped at a round boundary, and the stream's finals are
those of a run that kept its threads (none lost, none different). Measurements are fed
through the controller's own ``tick`` with a fake clock: no wall-clock thresholds."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from audiototext.audio import SileroVad
from audiototext.inference import OrtConfig, WhisperModel
from audiototext.server.control_policy import ControlSettings
from audiototext.server.controller import Controller
from audiototext.server.pool import ModelPool, cache_resolver
from audiototext.streaming import RecognizerOptions, StreamingRecognizer, StreamResult
from support.fixture_cache import shared_speech_dir
from support.speech import SpeechSynthesizer, espeak_available, join_with_gaps

RATE = 16_000
CHUNK = RATE // 10
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please take a seat and open your notebooks.",
    "We will meet again tomorrow at nine in the morning.",
    "She sells sea shells by the sea shore.",
]
SETTINGS = ControlSettings(threads_down_after_s=3.0, threads_up_after_s=3.0)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    if not espeak_available():
        pytest.skip("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    synth = SpeechSynthesizer(shared_speech_dir())
    audio, _ = join_with_gaps([synth.speak(s).audio for s in SENTENCES], 1.0)
    return audio


@pytest.fixture(scope="module")
def model_path(built_cache: Path) -> Path:
    return cache_resolver(built_cache, "int8")("tiny.en").path  # type: ignore[return-value]


def _engine(path: Path) -> StreamingRecognizer:
    # Finals depend on the audio alone (not on the shared machine's load): the comparison
    # with the unchanged run is exact.
    options = RecognizerOptions(adaptive_partials=False, adaptive_finals=False)
    model = WhisperModel(path, OrtConfig(device="cpu", intra_op_threads=2))
    return StreamingRecognizer(model, options, model_name="tiny.en", vad=SileroVad())


def _pool(engine: StreamingRecognizer, cache: Path) -> ModelPool:
    """A pool whose default model is ``engine``, pinned (the controller acts on it)."""
    choice = cache_resolver(cache, "int8")("tiny.en")
    pool = ModelPool(
        default=choice,
        resolver=cache_resolver(cache, "int8"),
        loader=lambda c: engine,
        budget_mb=10_000,
    )
    pool.add(choice, engine, pinned=True, owned=False)
    return pool


async def _contend(controller: Controller, clock: Clock, others: float, rounds: int) -> None:
    """``rounds`` one-second ticks with other processes on ``others`` cores (the controller's
    delays pass on the fake clock), then the resulting rebuild, if any, settles."""
    for _ in range(rounds):
        controller.tick(replace(controller.measure(), others_cpu_cores=others))
        clock.t += 1.0
    await controller.threads_settled()


def _finals(events: list[Any]) -> list[tuple[int, str]]:
    return [(e.utterance_id, e.text) for e in events if isinstance(e, StreamResult) and e.is_final]


def _session_threads(engine: StreamingRecognizer) -> tuple[int, int]:
    """What ONNX Runtime was told, read back from the sessions' own options."""
    m = engine.model
    return (
        m.encoder.raw.get_session_options().intra_op_num_threads,
        m.decoder.raw.get_session_options().intra_op_num_threads,
    )


async def _run(
    engine: StreamingRecognizer, audio: np.ndarray, at_chunk: dict[int, Any]
) -> list[Any]:
    """Feed ``audio`` in 100-ms chunks without waiting for the engine (the worker and its
    lanes are busy while the controller acts), awaiting ``at_chunk[i]()`` before chunk i."""
    stream = engine.open()
    events: list[Any] = []

    async def collect() -> None:
        async for e in stream.events():
            events.append(e)

    reader = asyncio.create_task(collect())
    for i, at in enumerate(range(0, len(audio), CHUNK)):
        if i in at_chunk:
            await at_chunk[i]()
        stream.accept(audio[at : at + CHUNK], RATE)
        await asyncio.sleep(0)
    await stream.finish()
    await reader
    return events


def test_threads_change_mid_stream_and_the_finals_do_not(
    model_path: Path, speech: np.ndarray, built_cache: Path
) -> None:
    async def scenario() -> dict[str, Any]:
        reference = _engine(model_path)
        try:
            unchanged = await _run(reference, speech, {})
        finally:
            await reference.close()

        engine = _engine(model_path)
        clock = Clock()
        pool = _pool(engine, built_cache)
        registry = CollectorRegistry()
        controller = Controller(
            pool, SETTINGS, max_batch=8, clock=clock, registry=registry, usable_cores=lambda: 2
        )
        seen: dict[str, Any] = {"start": _session_threads(engine)}

        async def contend(others: float, label: str) -> None:
            await _contend(controller, clock, others, rounds=4)
            seen[label] = _session_threads(engine)

        quarter = len(speech) // CHUNK // 4
        try:
            # A hog takes 1.2 of our 2 cores in the first sentences, leaves in the third.
            changed = await _run(
                engine,
                speech,
                {
                    quarter: lambda: contend(1.2, "contended"),
                    3 * quarter: lambda: contend(0.0, "free"),
                },
            )
        finally:
            await engine.close()
        seen.update(
            unchanged=_finals(unchanged),
            changed=_finals(changed),
            status=controller.status(),
            metric=registry.get_sample_value(
                "audiototext_controller_actions_total", {"action": "threads"}
            ),
        )
        return seen

    seen = asyncio.run(scenario())
    assert seen["start"] == (2, 2)
    assert seen["contended"] == (1, 1)  # the engine decodes on new sessions of 1 thread
    assert seen["free"] == (2, 2)  # and back
    assert len(seen["unchanged"]) == len(SENTENCES), seen["unchanged"]
    assert seen["changed"] == seen["unchanged"]  # no final lost, none different
    # Only the thread actions: the engine's own (overload...) vary with the machine's load.
    timeline = [e for e in seen["status"]["timeline"] if e["action"].startswith("threads")]
    actions = [e["action"] for e in timeline]
    assert actions == ["threads", "threads_applied", "threads", "threads_applied"], timeline
    assert "2 → 1 intra-op threads" in timeline[1]["reason"]
    assert "1.2 of our 2 usable cores" in timeline[0]["reason"]
    state = seen["status"]["state"]
    assert state["threads_adjustable"] and state["threads"] == 2 and state["max_threads"] == 2
    assert state["engine_threads"] == {"tiny.en": 2}
    assert seen["metric"] == 2.0  # exported: the dashboard's "Controller actions" panel


def test_a_failed_rebuild_keeps_the_old_sessions(
    model_path: Path, built_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> tuple[dict[str, Any], tuple[int, int], str]:
        engine = _engine(model_path)
        pool = _pool(engine, built_cache)
        clock = Clock()
        controller = Controller(pool, SETTINGS, max_batch=8, clock=clock, usable_cores=lambda: 2)

        def out_of_memory(threads: int) -> WhisperModel:
            raise MemoryError("std::bad_alloc")  # what ORT raises when a session cannot fit

        monkeypatch.setattr(engine, "build_threads", out_of_memory)
        try:
            await _contend(controller, clock, 1.5, rounds=4)
            # The engine still serves a stream on its old sessions.
            stream = engine.open()
            stream.accept(np.zeros(RATE, np.float32), RATE)
            await stream.finish()
        finally:
            await engine.close()
        return controller.status(), _session_threads(engine), controller.timeline[-1].reason

    status, threads, reason = asyncio.run(scenario())
    assert threads == (2, 2)
    actions = [e["action"] for e in status["timeline"] if e["action"].startswith("threads")]
    assert actions == ["threads", "threads_failed"]
    assert "bad_alloc" in reason and "keeps its 2 threads" in reason
    assert status["state"]["threads"] == 2  # decided afresh, after its delay again


def test_no_adapt_threads_leaves_the_sessions_alone(model_path: Path, built_cache: Path) -> None:
    async def scenario() -> tuple[dict[str, Any], tuple[int, int]]:
        engine = _engine(model_path)
        pool = _pool(engine, built_cache)
        clock = Clock()
        off = replace(SETTINGS, adapt_threads=False)
        controller = Controller(pool, off, max_batch=8, clock=clock, usable_cores=lambda: 2)
        try:
            await _contend(controller, clock, 2.0, rounds=10)
        finally:
            await engine.close()
        return controller.status(), _session_threads(engine)

    status, threads = asyncio.run(scenario())
    assert threads == (2, 2)
    assert not [e for e in status["timeline"] if e["action"].startswith("threads")]
    assert status["state"]["threads_adjustable"] is False


def test_too_little_free_memory_for_both_sessions_keeps_the_old_ones(
    model_path: Path, built_cache: Path
) -> None:
    from audiototext.server.resources import Counters, ResourceSampler

    def low_memory() -> Counters:  # the machine as /proc would show it with 50 MB left
        return Counters(1.0, 1.0, 2.0, 1e8, 50 * 2**20, 8 * 2**30)

    async def scenario() -> tuple[dict[str, Any], tuple[int, int]]:
        engine = _engine(model_path)
        pool = _pool(engine, built_cache)
        clock = Clock()
        sampler = ResourceSampler(read=low_memory, clock=clock)
        controller = Controller(
            pool, SETTINGS, max_batch=8, clock=clock, resources=sampler, usable_cores=lambda: 2
        )
        try:
            await _contend(controller, clock, 1.5, rounds=4)
        finally:
            await engine.close()
        return controller.status(), _session_threads(engine)

    status, threads = asyncio.run(scenario())
    assert threads == (2, 2)
    failed = [e for e in status["timeline"] if e["action"] == "threads_failed"]
    assert len(failed) == 1 and "50 MB free" in failed[0]["reason"], status["timeline"]
