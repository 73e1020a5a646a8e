"""The model pool's logic with the engine double: load on first use, sharing, eviction under
the memory budget, refusal when a model cannot fit, loads that do not stall other models."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from audiototext.server.engine import Engine
from audiototext.server.pool import ModelChoice, ModelKey, ModelPool
from audiototext.server.status import Status, StatusError
from audiototext.streaming.types import StreamOptions, StreamResult
from server.fake_engine import FakeRecognizer
from server.grpc_harness import run, speech_like

SIZES = {"tiny.en": 100, "a": 200, "b": 250, "c": 200, "huge": 10_000}


def _choice(name: str) -> ModelChoice:
    return ModelChoice(
        ModelKey(name, "int8"),
        Path(f"/cache/{name}/int8"),
        multilingual=name != "tiny.en",
        languages=("en",) if name == "tiny.en" else ("de", "en", "pt"),
        ram_mb=SIZES[name],
    )


def _resolve(name: str) -> ModelChoice:
    if name not in SIZES:
        raise StatusError(Status.NOT_FOUND, f"unknown model {name!r}")
    return _choice(name)


class ClosingFake(FakeRecognizer):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class Loader:
    """Builds ClosingFakes and records which models it loaded; ``gates`` hold a load back."""

    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.built: dict[str, list[ClosingFake]] = {}
        self.gates: dict[str, threading.Event] = {}
        self.started: dict[str, threading.Event] = {}
        self.fail: set[str] = set()

    def __call__(self, choice: ModelChoice) -> Engine:
        name = choice.key.name
        self.started.setdefault(name, threading.Event()).set()
        gate = self.gates.get(name)
        if gate is not None:
            assert gate.wait(60), "the test never opened the gate"
        if name in self.fail:
            raise RuntimeError("the model files are damaged")
        self.loaded.append(name)
        engine = ClosingFake(name)
        self.built.setdefault(name, []).append(engine)
        return engine


def _pool(loader: Loader, budget_mb: int = 500) -> tuple[ModelPool, ClosingFake]:
    default = _choice("tiny.en")
    pool = ModelPool(default=default, resolver=_resolve, loader=loader, budget_mb=budget_mb)
    engine = ClosingFake("tiny.en")
    pool.add(default, engine, pinned=True, owned=True)
    return pool, engine


def test_a_model_is_loaded_on_first_use_and_shared() -> None:
    loader = Loader()

    async def main() -> None:
        pool, default = _pool(loader)
        assert (await pool.acquire("")).engine is default
        assert (await pool.acquire("tiny.en")).engine is default
        first = await pool.acquire("a")
        second = await pool.acquire("a")
        assert first.engine is second.engine
        assert loader.loaded == ["a"]
        by_name = {m.name: m for m in pool.models()}
        assert by_name["a"].sessions == 2 and by_name["a"].state == "loaded"
        assert by_name["tiny.en"].pinned and by_name["tiny.en"].sessions == 2
        first.release()
        first.release()  # a second release is a no-op
        assert {m.name: m.sessions for m in pool.models()}["a"] == 1

    run(main(), 60)


def test_streams_asking_at_once_share_one_load() -> None:
    loader = Loader()
    loader.gates["a"] = threading.Event()

    async def main() -> None:
        pool, _ = _pool(loader)
        waiting = [asyncio.create_task(pool.acquire("a")) for _ in range(3)]
        await asyncio.to_thread(loader.started.setdefault("a", threading.Event()).wait, 30)
        assert [m.state for m in pool.models() if m.name == "a"] == ["loading"]
        loader.gates["a"].set()
        leases = await asyncio.gather(*waiting)
        assert len({id(lease.engine) for lease in leases}) == 1
        assert loader.loaded == ["a"]

    run(main(), 60)


def test_idle_models_are_evicted_least_recently_used_first_to_fit_the_budget() -> None:
    loader = Loader()

    async def main() -> None:
        pool, default = _pool(loader, budget_mb=600)  # tiny.en 100 + a 200 + b 250 = 550
        (await pool.acquire("a")).release()
        (await pool.acquire("b")).release()
        assert sorted(m.name for m in pool.models()) == ["a", "b", "tiny.en"]
        (await pool.acquire("a")).release()  # a is now the more recently used
        lease = await pool.acquire("c")  # 550 + 200 > 600: b (least recently used) goes
        assert sorted(m.name for m in pool.models()) == ["a", "c", "tiny.en"]
        assert loader.built["b"][0].closed == 1 and loader.built["a"][0].closed == 0
        assert default.closed == 0
        lease.release()
        # b again: loaded afresh (a and c are idle; one of them makes room).
        (await pool.acquire("b")).release()
        assert loader.loaded.count("b") == 2
        assert sum(m.ram_mb for m in pool.models()) <= 600

    run(main(), 60)


def test_models_in_use_are_never_evicted_and_a_model_that_cannot_fit_is_refused() -> None:
    loader = Loader()

    async def main() -> None:
        pool, _ = _pool(loader, budget_mb=500)
        with pytest.raises(StatusError) as too_big:
            await pool.acquire("huge")
        assert too_big.value.code is Status.RESOURCE_EXHAUSTED
        assert "10000 MB" in too_big.value.message and "500 MB" in too_big.value.message
        assert "--model-memory-mb" in too_big.value.message
        held = await pool.acquire("a")  # 100 + 200 in use
        with pytest.raises(StatusError) as busy:
            await pool.acquire("b")  # + 250 > 500, and nothing idle to evict
        assert busy.value.code is Status.RESOURCE_EXHAUSTED
        assert "a (200 MB)" in busy.value.message and "250 MB" in busy.value.message
        assert loader.loaded == ["a"]
        held.release()
        (await pool.acquire("b")).release()  # now a is idle: evicted for b
        assert sorted(m.name for m in pool.models()) == ["b", "tiny.en"]

    run(main(), 60)


def test_unknown_names_and_failed_loads_are_refused_and_the_pool_recovers() -> None:
    loader = Loader()
    loader.fail.add("a")

    async def main() -> None:
        pool, _ = _pool(loader)
        with pytest.raises(StatusError) as unknown:
            await pool.acquire("nope")
        assert unknown.value.code is Status.NOT_FOUND
        with pytest.raises(StatusError) as failed:
            await pool.acquire("a")
        assert failed.value.code is Status.INTERNAL
        assert "could not be loaded" in failed.value.message
        assert "damaged" in failed.value.message
        assert [m.name for m in pool.models()] == ["tiny.en"]
        loader.fail.clear()
        (await pool.acquire("a")).release()
        assert loader.loaded == ["a"]

    run(main(), 60)


def test_a_slow_load_does_not_stall_streams_on_another_model() -> None:
    """While model a is held mid-load, a stream on the default model runs to its last final;
    only then is the load let go."""
    loader = Loader()
    loader.gates["a"] = threading.Event()
    audio = speech_like(6.0, seed=4)

    async def main() -> None:
        pool, _ = _pool(loader)
        loading = asyncio.create_task(pool.acquire("a"))
        await asyncio.to_thread(loader.started.setdefault("a", threading.Event()).wait, 30)
        lease = await pool.acquire("tiny.en")
        stream = lease.engine.open(StreamOptions(model="tiny.en"))
        for start in range(0, audio.shape[0], 1600):
            stream.accept(audio[start : start + 1600], 16_000)
            await asyncio.sleep(0)
        finish = asyncio.create_task(stream.finish())
        finals = [e async for e in stream.events() if isinstance(e, StreamResult) and e.is_final]
        await finish
        lease.release()
        assert len(finals) >= 2
        assert not loading.done(), "the load finished before the gate opened"
        assert [m.state for m in pool.models() if m.name == "a"] == ["loading"]
        loader.gates["a"].set()
        (await loading).release()
        assert loader.loaded == ["a"]

    run(main(), 60)


def test_busy_paths_unload_idle_and_close() -> None:
    loader = Loader()

    async def main() -> None:
        pool, default = _pool(loader, budget_mb=1000)
        held = await pool.acquire("a")
        (await pool.acquire("b")).release()
        busy = {p.as_posix() for p in pool.busy_paths()}
        assert busy == {"/cache/tiny.en/int8", "/cache/a/int8"}  # b is idle, not busy
        await pool.unload_idle({Path("/cache/b/int8").resolve(), Path("/cache/a/int8")})
        assert sorted(m.name for m in pool.models()) == ["a", "tiny.en"]  # a is in use
        assert loader.built["b"][0].closed == 1
        held.release()
        await pool.close()
        assert default.closed == 1 and loader.built["a"][0].closed == 1
        with pytest.raises(StatusError) as closing:
            await pool.acquire("a")
        assert closing.value.code is Status.UNAVAILABLE

    run(main(), 60)
