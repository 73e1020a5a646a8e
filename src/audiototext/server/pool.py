"""The models a server runs at once: loaded on first use, shared, evicted when idle.

A :class:`ModelPool` holds one engine per :class:`ModelKey` (model, precision, device). A
stream (or file request) names a model; :meth:`ModelPool.acquire` resolves the name to a
cached model (:class:`ModelChoice`), loads it in a worker thread the first time, and hands
out a :class:`Lease` on the shared engine; the lease is released when the stream ends. Idle
models (no lease) stay loaded until their memory is needed: before a load, idle models are
evicted (least recently used first) until the expected sizes of all models fit the budget
(``serve --model-memory-mb``). A model that does not fit even then is refused with
RESOURCE_EXHAUSTED. The server's default model is pinned (never evicted).

All bookkeeping runs on the event loop, so it needs no lock; a load runs in a thread as a
task of the pool, and no lock or await of another model's work is held across it, so the
streams on other models keep running while a model loads.

Name resolution (the registry, the cache on disk) and engine construction are injected, so
the pool's logic is tested with engine doubles; :func:`cache_resolver` and
:func:`load_streaming_engine` are the real ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from audiototext.server.devices import DeviceProbe, check_device, real_probe
from audiototext.server.engine import Engine
from audiototext.server.status import Status, StatusError

if TYPE_CHECKING:
    from audiototext.streaming.types import EngineStats

__all__ = [
    "Lease",
    "LoadedModel",
    "ModelChoice",
    "ModelKey",
    "ModelPool",
    "cache_resolver",
    "check_memory_budget",
    "default_memory_budget_mb",
    "expected_ram_mb",
    "load_streaming_engine",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelKey:
    name: str  # the registry's short name or a Hugging Face repo id
    precision: str  # fp32, int8, fp16 (as cached)
    device: str = "cpu"

    def __str__(self) -> str:
        return f"{self.name} ({self.precision}, {self.device})"


@dataclass(frozen=True)
class ModelChoice:
    """What a model name resolved to: the cache entry to load and what it can do."""

    key: ModelKey
    path: Path | None  # the cache folder (None: an engine given to the pool ready-made)
    multilingual: bool
    languages: tuple[str, ...] = ()  # codes the model knows; () when not known
    ram_mb: int = 0  # expected resident memory once loaded


Resolver = Callable[[str], ModelChoice]  # blocking (reads the cache): run in a thread
Loader = Callable[[ModelChoice], Engine]  # blocking: run in a thread


@dataclass(frozen=True)
class LoadedModel:
    """One pool entry, as the stats and model listings show it."""

    name: str
    precision: str
    device: str
    state: str  # "loading" or "loaded"
    sessions: int  # open streams (and file jobs) on it
    ram_mb: int
    pinned: bool  # the server's default model: never evicted
    load_s: float  # how long loading took (0 while loading, or when given ready-made)
    path: Path | None
    stats: EngineStats | None  # None while loading


@dataclass(eq=False)
class _Entry:
    choice: ModelChoice
    pinned: bool = False
    owned: bool = True  # closed by the pool (not an engine the caller gave us)
    engine: Engine | None = None
    loading: asyncio.Task[Engine] | None = None
    sessions: int = 0
    last_used: float = 0.0
    load_s: float = 0.0
    evicted: bool = False
    waiters: int = field(default=0)  # acquirers waiting for the load


class Lease:
    """A stream's hold on a pooled engine; :meth:`release` once (more calls are no-ops)."""

    def __init__(self, pool: ModelPool, entry: _Entry) -> None:
        self._pool = pool
        self._entry = entry
        self.choice = entry.choice
        assert entry.engine is not None
        self.engine: Engine = entry.engine
        self._released = False

    @property
    def key(self) -> ModelKey:
        return self.choice.key

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._pool._release(self._entry)


class ModelPool:
    """Engines by :class:`ModelKey`, loaded on first use and shared (see the module doc)."""

    def __init__(
        self,
        *,
        default: ModelChoice,
        resolver: Resolver,
        loader: Loader,
        budget_mb: int,
        clock: Callable[[], float] = time.monotonic,
        devices: DeviceProbe = real_probe,
    ) -> None:
        """``devices``: which processing devices work here (probed once, in a thread)."""
        self.default = default
        self.devices = devices
        self.budget_mb = budget_mb
        self._resolver = resolver
        self._loader = loader
        self._clock = clock
        self._entries: dict[ModelKey, _Entry] = {}
        self._closing = False

    # ------------------------------------------------------------------ setup

    def add(self, choice: ModelChoice, engine: Engine, *, pinned: bool, owned: bool) -> None:
        """Put an already built engine in the pool (the server's preloaded default)."""
        self._entries[choice.key] = _Entry(
            choice, pinned=pinned, owned=owned, engine=engine, last_used=self._clock()
        )

    # ------------------------------------------------------------------ streams

    async def choose(self, name: str, device: str = "auto") -> ModelChoice:
        """What ``name`` resolves to (empty: the default) on ``device`` ("auto": the
        default model's device); a :class:`StatusError` if none, or if the device cannot be
        used here (FAILED_PRECONDITION with the hardware probe's reason)."""
        wanted = self.default.key.device if device in ("", "auto") else device
        if wanted != self.default.key.device:
            check_device(wanted, await asyncio.to_thread(self.devices))
        if not name or name == self.default.key.name:
            choice = self.default
        else:
            found = await asyncio.to_thread(self._resolver, name)
            choice = self.default if found.key.name == self.default.key.name else found
        if choice.key.device == wanted:
            return choice
        return replace(choice, key=replace(choice.key, device=wanted))

    async def acquire(self, model: str | ModelChoice) -> Lease:
        """A lease on the engine of ``model`` (a name, or a choice from :meth:`choose`),
        loading it first if needed. Refusals are :class:`StatusError`s: NOT_FOUND,
        FAILED_PRECONDITION (not downloaded), RESOURCE_EXHAUSTED (over the memory budget),
        UNAVAILABLE (shutting down), INTERNAL (the load failed)."""
        choice = model if isinstance(model, ModelChoice) else await self.choose(model)
        key = choice.key
        while True:
            if self._closing:
                raise StatusError(Status.UNAVAILABLE, "the server is shutting down", try_later=True)
            entry = self._entries.get(key)
            if entry is not None and entry.engine is not None:
                entry.sessions += 1
                entry.last_used = self._clock()
                return Lease(self, entry)
            if entry is not None and entry.loading is not None:
                entry.waiters += 1
                try:
                    await asyncio.shield(entry.loading)
                except Exception as exc:
                    raise _load_failed(key, exc) from exc
                finally:
                    entry.waiters -= 1
                continue  # loaded (or evicted meanwhile): look again
            # No await between the budget check and the new entry: the room is reserved at once.
            victims = self._make_room(choice)
            entry = _Entry(choice, last_used=self._clock())
            entry.loading = asyncio.create_task(self._load(entry, victims), name=f"load {key}")
            # Retrieved here so a load nobody waits for any more logs no "never retrieved".
            entry.loading.add_done_callback(_retrieve)
            self._entries[key] = entry

    def _release(self, entry: _Entry) -> None:
        entry.sessions = max(0, entry.sessions - 1)
        entry.last_used = self._clock()

    async def _load(self, entry: _Entry, victims: list[_Entry]) -> Engine:
        key = entry.choice.key
        for victim in victims:  # their memory goes before the new model's comes
            if victim.owned and victim.engine is not None:
                await _close_engine(victim.engine)
        log.info("loading model %s (about %d MB)", key, entry.choice.ram_mb)
        started = time.perf_counter()
        try:
            engine = await asyncio.to_thread(self._loader, entry.choice)
        except BaseException:
            log.exception("loading model %s failed", key)
            if self._entries.get(key) is entry:
                del self._entries[key]
            raise
        entry.load_s = time.perf_counter() - started
        entry.loading = None
        if entry.evicted or self._closing:  # the server stopped while it loaded
            await _close_engine(engine)
            raise StatusError(Status.UNAVAILABLE, "the server is shutting down", try_later=True)
        entry.engine = engine
        log.info("model %s loaded in %.1f s", key, entry.load_s)
        return engine

    def _make_room(self, choice: ModelChoice) -> list[_Entry]:
        """Evict idle models (least recently used first) until ``choice`` fits the budget;
        returns them, out of the table but still to be closed."""
        need = choice.ram_mb
        held = [e for e in self._entries.values() if not _idle(e)]
        held_mb = sum(e.choice.ram_mb for e in held)
        if held_mb + need > self.budget_mb:
            names = ", ".join(f"{e.choice.key.name} ({e.choice.ram_mb} MB)" for e in held)
            raise StatusError(
                Status.RESOURCE_EXHAUSTED,
                f"model {choice.key.name} needs about {need} MB; the server's model memory "
                f"budget is {self.budget_mb} MB (serve --model-memory-mb)"
                + (f", of which {held_mb} MB are taken by models in use: {names}" if held else "")
                + "; use a smaller model, retry when other streams end, or raise the budget",
            )
        idle = sorted((e for e in self._entries.values() if _idle(e)), key=lambda e: e.last_used)
        total = sum(e.choice.ram_mb for e in self._entries.values())
        victims = []
        for e in idle:
            if total + need <= self.budget_mb:
                break
            victims.append(e)
            total -= e.choice.ram_mb
        for e in victims:  # out of the table at once, so the budget counts right
            self._evict(e)
        return victims

    def _evict(self, entry: _Entry) -> None:
        log.info("unloading idle model %s to make room", entry.choice.key)
        entry.evicted = True
        if self._entries.get(entry.choice.key) is entry:
            del self._entries[entry.choice.key]

    # ------------------------------------------------------------------ admin

    def models(self) -> list[LoadedModel]:
        """Every loaded (or loading) model, the default first."""
        out = []
        for e in sorted(self._entries.values(), key=lambda e: (not e.pinned, e.choice.key.name)):
            out.append(
                LoadedModel(
                    name=e.choice.key.name,
                    precision=e.choice.key.precision,
                    device=e.choice.key.device,
                    state="loaded" if e.engine is not None else "loading",
                    sessions=e.sessions,
                    ram_mb=e.choice.ram_mb,
                    pinned=e.pinned,
                    load_s=round(e.load_s, 3),
                    path=e.choice.path,
                    stats=e.engine.stats() if e.engine is not None else None,
                )
            )
        return out

    def engines(self) -> list[Engine]:
        return [e.engine for e in self._entries.values() if e.engine is not None]

    def engine_of(self, key: ModelKey) -> Engine | None:
        entry = self._entries.get(key)
        return entry.engine if entry is not None else None

    def loaded_paths(self) -> list[Path]:
        """Cache folders of the loaded models (an injected engine's ``model.path`` too)."""
        paths = []
        for e in self._entries.values():
            path = e.choice.path
            if path is None:
                found = getattr(getattr(e.engine, "model", None), "path", None)
                path = found if isinstance(found, Path) else None
            if path is not None:
                paths.append(path)
        return paths

    def busy_paths(self) -> list[Path]:
        """Cache folders that cannot be removed: models with open streams, the default."""
        busy = {
            p.resolve() for e in self._entries.values() if not _idle(e) for p in self._paths_of(e)
        }
        return sorted(busy)

    def _paths_of(self, entry: _Entry) -> list[Path]:
        if entry.choice.path is not None:
            return [entry.choice.path]
        found = getattr(getattr(entry.engine, "model", None), "path", None)
        return [found] if isinstance(found, Path) else []

    async def unload_idle(self, paths: set[Path]) -> None:
        """Unload the idle, unpinned models loaded from ``paths`` (before they are removed)."""
        victims = [
            e
            for e in list(self._entries.values())
            if _idle(e) and any(p.resolve() in paths for p in self._paths_of(e))
        ]
        for e in victims:
            self._evict(e)
        for e in victims:
            if e.owned and e.engine is not None:
                await _close_engine(e.engine)

    async def close(self) -> None:
        """Close every engine the pool built (after the sessions were finalised)."""
        self._closing = True
        entries = list(self._entries.values())
        self._entries.clear()
        for e in entries:
            if e.loading is not None:
                e.evicted = True
        for e in entries:
            if e.owned and e.engine is not None:
                await _close_engine(e.engine)


def _retrieve(task: asyncio.Task[Engine]) -> None:
    if not task.cancelled():
        task.exception()


def _idle(entry: _Entry) -> bool:
    return (
        entry.engine is not None and entry.sessions == 0 and entry.waiters == 0 and not entry.pinned
    )


def _load_failed(key: ModelKey, exc: BaseException) -> StatusError:
    if isinstance(exc, StatusError):
        return exc
    from audiototext.server.status import status_for

    code = status_for(exc)
    if code is Status.INVALID_ARGUMENT:  # a broken model is no fault of the request
        code = Status.FAILED_PRECONDITION
    return StatusError(code, f"model {key.name} could not be loaded: {exc}")


async def _close_engine(engine: Engine) -> None:
    closer = getattr(engine, "close", None)
    if closer is None:
        return
    try:
        result = closer()
        if hasattr(result, "__await__"):
            await result
    except Exception:
        log.exception("closing an engine failed")


# --------------------------------------------------------------------------- the real parts


def default_memory_budget_mb() -> int:
    """Half the memory available now, at least 1 GB: the default of --model-memory-mb."""
    import psutil

    available = int(psutil.virtual_memory().available // 2**20)
    return max(1024, available // 2)


def expected_ram_mb(registry_ram_mb: int, size_bytes: int) -> int:
    """Resident memory of a loaded model: the registry's figure (measured for int8) or, when
    larger, what its files on disk suggest (an fp32 entry, or a model the registry lacks)."""
    from_disk = int(size_bytes / 2**20 * 1.2) + 60
    return max(registry_ram_mb, from_disk)


def _languages_of(path: Path) -> tuple[str, ...]:
    try:
        config = json.loads((path / "model_config.json").read_text())
    except (OSError, ValueError):
        return ()
    languages = config.get("languages") or {}
    return tuple(sorted(languages))


def cache_resolver(
    cache_root: Path | None, precision: str, device: str = "cpu"
) -> Callable[[str], ModelChoice]:
    """Resolves names against the registry and the model cache: the entry in ``precision``
    when cached, else the newest cached entry of any precision. Never downloads: a model that
    is not cached is FAILED_PRECONDITION (pull it first)."""

    def resolve_name(name: str) -> ModelChoice:
        from audiototext.errors import UnknownModelError
        from audiototext.models.cache import ModelCache
        from audiototext.models.registry import KNOWN_MODELS, resolve

        try:
            spec = resolve(name)
        except UnknownModelError as exc:  # its message names close matches and known models
            raise StatusError(Status.NOT_FOUND, str(exc)) from exc
        entries = ModelCache(cache_root).entries(spec.name)
        if not entries:
            quoted = spec.name
            raise StatusError(
                Status.FAILED_PRECONDITION,
                f"{quoted} is not downloaded on this server; pull it first "
                f"(POST /api/v1/models/{quoted}/pull, gRPC Models.Pull, or "
                f"`audiototext models pull {quoted}`), or start a server with "
                f"`audiototext serve --model {quoted}`",
            )
        entry = next((e for e in entries if e.precision == precision), entries[0])
        languages = _languages_of(entry.path)
        known = KNOWN_MODELS.get(spec.name)
        multilingual = known.multilingual if known is not None else bool(languages)
        if not multilingual:
            languages = ("en",)
        return ModelChoice(
            ModelKey(spec.name, entry.precision, device),
            entry.path,
            multilingual,
            languages,
            expected_ram_mb(known.ram_mb if known else 0, entry.size_bytes),
        )

    return resolve_name


def default_choice(
    name: str, precision: str, cache_root: Path | None, device: str = "cpu"
) -> ModelChoice:
    """The server's default model as a choice, without touching the disk beyond a lookup:
    from the cache when it is there, else from the registry (it is pulled at load time)."""
    from audiototext.errors import AudioToTextError
    from audiototext.models.registry import resolve

    try:
        return cache_resolver(cache_root, precision, device)(name)
    except (StatusError, AudioToTextError, OSError):
        pass
    try:
        spec = resolve(name)
    except AudioToTextError:
        return ModelChoice(ModelKey(name, precision, device), None, False, ("en",), 0)
    return ModelChoice(
        ModelKey(spec.name, precision, device),
        None,
        spec.multilingual,
        () if spec.multilingual else ("en",),
        spec.ram_mb,
    )


def check_memory_budget(
    budget_mb: int | None, model: str, precision: str, cache_root: Path | None
) -> None:
    """ConfigError when ``--model-memory-mb`` is below the default model's expected size: the
    server could never load it (blocking: reads the cache)."""
    from audiototext.errors import ConfigError
    from audiototext.models.manager import resolve_precision

    if budget_mb is None:
        return
    choice = default_choice(model, resolve_precision(precision), cache_root)
    if budget_mb < choice.ram_mb:
        raise ConfigError(
            f"--model-memory-mb {budget_mb} is below the {choice.ram_mb} MB the default model "
            f"{model} is expected to need: give at least {choice.ram_mb}"
        )


def load_streaming_engine(
    choice: ModelChoice,
    *,
    max_sessions: int,
    cache_root: Path | None = None,
    threads: int | None = None,
) -> Engine:
    """The real streaming engine over ``choice``'s cache entry (pulled first when the choice
    has no entry yet: the server's default model on a fresh machine), on the choice's device
    (``cpu`` or ``gpu``)."""
    from audiototext._blas import limit_blas_threads
    from audiototext.inference.ort_session import OrtConfig
    from audiototext.inference.whisper import WhisperModel
    from audiototext.streaming import RecognizerOptions, StreamingRecognizer

    limit_blas_threads(1)
    options = RecognizerOptions(max_sessions=max_sessions)
    device: Literal["cpu", "gpu"] = "gpu" if choice.key.device == "gpu" else "cpu"
    path = choice.path
    if path is None:
        from audiototext.models import ModelCache, pull

        cache = ModelCache(cache_root)
        path = pull(choice.key.name, precision=choice.key.precision, cache=cache).entry.path
    threads = threads or options.lane_threads()  # serve --threads, else the cores shared out
    model = WhisperModel(path, OrtConfig(device=device, intra_op_threads=threads))
    return StreamingRecognizer(model, options, model_name=choice.key.name)
