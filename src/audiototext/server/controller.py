"""The adaptive controller: reads the server's live measurements, applies what the policy
decides, and says why.

Once a second (a task of the server) it reads the default model's engine (its load
monitor's changes: partial intervals stretched or relaxed, finals reduced or full,
overload), the machine (CPU share, free memory: :class:`ResourceSampler`), the loaded
models' sessions (a GPU session that fell back to the CPU) and the link figures streams
reported, hands them to :class:`~audiototext.server.control_policy.ControlPolicy` and
applies its state:

* batch cap of every loaded engine from free memory (``LoadMonitor.batch_limit``);
* ``gpu_fallback`` alert from the sessions that left the GPU;
* :meth:`Controller.substitute`: a stream about to open on the default model gets a cheaper
  cached one while the fallback holds (streams already open keep theirs);
* :meth:`Controller.bitrate_cap`: what each stream's Acks ask of its client's encoder;
* intra-op threads of every loaded CPU engine (the policy's ``threads``, from the CPU other
  processes take: machine busy time minus ours, over our usable cores): each engine's
  sessions are built anew with the new count in a low-priority background thread
  (:func:`~audiototext.server.background.run_in_background`) and handed to the engine,
  which swaps them in at a scheduling-round boundary with no lane busy
  (:mod:`audiototext.streaming._swap`); the old ones go with their last user. A build that
  fails (memory) leaves the engine on its old sessions, logged and recorded
  (``threads_failed``); a swap is recorded as ``threads_applied``.

The partial interval is decided in one place only, the engine's load monitor (it needs
every scheduling round's figures); the controller records those changes beside its own.
Every action is logged (``controller: ACTION: REASON``, with ``control_action`` in JSON
logs), counted (``audiototext_controller_actions_total{action}``) and kept in a bounded
timeline (REST ``GET /api/v1/system/controller``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audiototext.server.background import run_in_background
from audiototext.server.control_policy import (
    Action,
    ControlPolicy,
    ControlSettings,
    EngineChange,
    Measurements,
)
from audiototext.server.engine import ThreadedEngine
from audiototext.server.pool import LoadedModel, ModelChoice, ModelKey, ModelPool, cache_resolver
from audiototext.server.status import StatusError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from audiototext.server.alerts import AlertMonitor
    from audiototext.server.engine import Engine
    from audiototext.server.resources import ResourceSampler

__all__ = ["CONTROL_INTERVAL_S", "TIMELINE_KEPT", "Controller", "TimelineEntry"]

log = logging.getLogger(__name__)

CONTROL_INTERVAL_S = 1.0  # the engine's own changes come at most once a second
REBUILD_MEMORY_MARGIN = 1.5  # free memory, in model sizes, a thread change needs first
TIMELINE_KEPT = 500  # actions kept for the API (about an hour of a busy server)
# Cheaper precisions to fall back to, per precision (on a CPU int8 is the fastest).
_CHEAPER = {"fp32": ("int8",), "fp16": ("int8",), "int8": ()}


@dataclass(frozen=True)
class TimelineEntry:
    at: float  # Unix time
    action: str
    reason: str
    clock_at: float = 0.0  # the same moment on the controller's (monotonic) clock


class Controller:
    def __init__(
        self,
        pool: ModelPool,
        settings: ControlSettings,
        *,
        max_batch: int,
        cache_root: Path | None = None,
        resources: ResourceSampler | None = None,
        alerts: AlertMonitor | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        usable_cores: Callable[[], int] | None = None,
    ) -> None:
        self.pool = pool
        default = pool.engine_of(pool.default.key)
        # The default engine's threads at start (serve --threads, or the cores shared out
        # over its lanes) are the most the controller gives any engine.
        top = default.threads if isinstance(default, ThreadedEngine) else None
        self.policy = ControlPolicy(settings, max_batch, clock, max_threads=top)
        self._usable = usable_cores or _usable_cores
        self._retuning: asyncio.Task[None] | None = None
        self.resources = resources
        self.alerts = alerts
        self._cache_root = cache_root
        self._clock = clock
        self._wall = wall_clock
        self.timeline: collections.deque[TimelineEntry] = collections.deque(maxlen=TIMELINE_KEPT)
        self.counts: collections.Counter[str] = collections.Counter()
        # load monitor -> changes already read (weak: an evicted engine's goes with it)
        self._seen: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._links: dict[str, float] = {}
        # (model, language, task) -> its cheaper model (None: none cached), found once per
        # fallback period (a model pulled meanwhile counts at the next).
        self._fallbacks: dict[tuple[ModelKey, str | None, str], ModelChoice | None] = {}
        self._counter = None
        if registry is not None:
            from prometheus_client import Counter

            self._counter = Counter(
                "audiototext_controller_actions",
                "What the adaptive controller changed, by action.",
                ["action"],
                registry=registry,
            )

    # ---- inputs beside the measurements it reads itself

    def report_link(self, session: str, bits_per_s: float) -> None:
        """A stream's measured link throughput (client or page figures; optional)."""
        if bits_per_s > 0:
            self._links[session] = float(bits_per_s)

    def forget(self, session: str) -> None:
        self._links.pop(session, None)
        self.policy.forget(session)

    # ---- what the server asks

    def bitrate_cap(self, session: str) -> int:
        return self.policy.bitrate_cap(session)

    async def substitute(self, choice: ModelChoice, language: str | None, task: str) -> ModelChoice:
        """The model a new stream gets: ``choice``, or a cheaper cached one while new
        streams on the default model are moved off it."""
        if not self.policy.fallback_active or choice.key != self.pool.default.key:
            return choice
        wanted = (choice.key, language, task)
        if wanted not in self._fallbacks:
            self._fallbacks[wanted] = await asyncio.to_thread(self._cheaper, choice, language, task)
        return self._fallbacks[wanted] or choice

    def _cheaper(self, choice: ModelChoice, language: str | None, task: str) -> ModelChoice | None:
        """The first cached model cheaper than ``choice`` that can serve the stream: the
        same model in a cheaper precision, else smaller registry models, largest first."""
        from audiototext.models.registry import KNOWN_MODELS
        from audiototext.server.validation import check_choice

        key = choice.key
        names = [(key.name, p) for p in _CHEAPER.get(key.precision, ())]
        own = KNOWN_MODELS.get(key.name)
        if own is not None:
            smaller = sorted(
                (s for s in KNOWN_MODELS.values() if s.params_millions < own.params_millions),
                key=lambda s: -s.params_millions,
            )
            names += [(s.name, p) for s in smaller for p in ("int8", "fp32")]
        for name, precision in names:
            try:
                found = cache_resolver(self._cache_root, precision, key.device)(name)
            except StatusError:
                continue  # not cached
            if found.key.precision != precision or found.key == key:
                continue
            try:
                check_choice(found, language, task)
            except StatusError:
                continue  # cannot serve this stream's language or task
            return replace(found, key=replace(found.key, device=key.device))
        return None

    def status(self) -> dict[str, Any]:
        """The controller's state and timeline, for REST."""
        default = self.pool.engine_of(self.pool.default.key)
        stats = default.stats() if default is not None else None
        fallback = [c for c in self._fallbacks.values() if c is not None]
        return {
            "state": {
                "fallback_active": self.policy.fallback_active,
                "fallback_models": sorted({str(c.key) for c in fallback}),
                "default_model": str(self.pool.default.key),
                "partial_interval_scale": stats.partial_interval_scale if stats else 1.0,
                "overloaded": stats.overloaded if stats else False,
                "batch_limit": self.policy.batch_limit,
                "threads_adjustable": self.policy.max_threads is not None,
                "threads": self.policy.threads,
                "max_threads": self.policy.max_threads,
                "engine_threads": {str(m.name): e.threads for m, e in self._threaded()},
                "compressed_streams": sum(1 for s in self._links if self.bitrate_cap(s)),
            },
            "actions_total": dict(self.counts),
            "timeline": [
                {"at": e.at, "action": e.action, "reason": e.reason} for e in self.timeline
            ],
        }

    # ---- the loop

    def measure(self) -> Measurements:
        """One reading of everything the policy decides from (the engines' changes since
        the previous reading included)."""
        engines = self.pool.engines()
        default = self.pool.engine_of(self.pool.default.key)
        changes = []
        for engine in engines:
            changes += self._engine_changes(engine, label=engine is not default)
        stats = default.stats() if default is not None else None
        monitor = getattr(default, "load_monitor", None)
        sample = self.resources.sample() if self.resources is not None else None
        usable = self._usable()
        # Other processes' CPU as if spread evenly over the machine: their share of our cores.
        others = (
            max(0.0, sample.machine_cpu_percent - sample.process_cpu_percent) / 100 * usable
            if sample is not None
            else None
        )
        return Measurements(
            overloaded=bool(stats and stats.overloaded),
            rtf=stats.rtf if stats else 0.0,
            queue_depth=stats.queue_depth if stats else 0,
            final_latency_p95_s=(stats.final_latency_ms_p95 / 1000) if stats else 0.0,
            partial_scale=stats.partial_interval_scale if stats else 1.0,
            finals_reduced_now=bool(monitor is not None and monitor.reducing()),
            cpu_percent=sample.machine_cpu_percent if sample else None,
            free_memory_mb=sample.memory_available_mb if sample else None,
            engine_changes=tuple(changes),
            gpu_fallbacks=self._gpu_fallbacks(),
            link_bps=dict(self._links),
            others_cpu_cores=others,
            usable_cores=usable,
        )

    def tick(self, measured: Measurements | None = None) -> list[Action]:
        """Read (or take ``measured``), decide, apply; returns the actions taken (each
        logged and recorded). Thread changes are applied by a task of the running loop."""
        measured = measured or self.measure()
        engines = self.pool.engines()
        actions = self.policy.update(measured)
        if not self.policy.fallback_active:
            self._fallbacks.clear()
        limit = self.policy.batch_limit
        for engine in engines:
            load = getattr(engine, "load_monitor", None)
            if load is not None:
                load.batch_limit = None if limit >= self.policy.max_batch else limit
        if self.alerts is not None:
            self.alerts.gpu_fallbacks(dict(measured.gpu_fallbacks))
        now, wall = self._clock(), self._wall()
        for a in actions:
            self._record(TimelineEntry(wall - (now - a.at), a.action, a.reason, a.at))
        self._retune_threads()
        return actions

    async def run(self, interval_s: float = CONTROL_INTERVAL_S) -> None:
        """Tick every ``interval_s`` until cancelled (a task of the server)."""
        try:
            while True:
                try:
                    self.tick()
                except Exception:  # a failing reading must not end control for good
                    log.exception("the controller's tick failed")
                await asyncio.sleep(interval_s)
        finally:
            if self._retuning is not None:
                self._retuning.cancel()

    async def threads_settled(self) -> None:
        """Wait until the engines run the policy's thread count (or failed to)."""
        while self._retuning is not None:
            await asyncio.shield(self._retuning)
            self._retune_threads()

    # ---- threads

    def _threaded(self) -> list[tuple[LoadedModel, ThreadedEngine]]:
        """The loaded CPU engines whose sessions can be rebuilt with other threads."""
        out: list[tuple[LoadedModel, ThreadedEngine]] = []
        for m in self.pool.models():
            engine = self.pool.engine_of(ModelKey(m.name, m.precision, m.device))
            if m.device == "cpu" and isinstance(engine, ThreadedEngine):
                out.append((m, engine))
        return out

    def _retune_threads(self) -> None:
        """Start rebuilding the engines whose threads differ from the policy's (one task at
        a time; outside an event loop, nothing starts)."""
        if self.policy.max_threads is None or self._retuning is not None:
            return
        wanted = self.policy.threads
        stale = [(m, e) for m, e in self._threaded() if e.threads != wanted]
        if not stale:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._retuning = loop.create_task(self._rebuild(stale, wanted), name="controller threads")
        self._retuning.add_done_callback(_log_failure)

    async def _rebuild(
        self, engines: list[tuple[LoadedModel, ThreadedEngine]], wanted: int
    ) -> None:
        try:
            for model, engine in engines:
                name, before = f"{model.name} ({model.precision})", engine.threads
                began = time.perf_counter()
                try:
                    # Old and new sessions live side by side until the swap: room for both.
                    free = self.resources.sample().memory_available_mb if self.resources else None
                    if free is not None and free < model.ram_mb * REBUILD_MEMORY_MARGIN:
                        raise MemoryError(
                            f"{free:.0f} MB free, the new sessions need about {model.ram_mb} MB"
                        )
                    built = await run_in_background("threads", engine.build_threads, wanted)
                except Exception as exc:  # memory, mostly: the engine keeps what it has
                    self._note(
                        "threads_failed",
                        f"{name}: building sessions of {wanted} "
                        f"threads failed ({exc}); it keeps its {before} threads",
                    )
                    self.policy.threads_failed(before)
                    return
                build_s = time.perf_counter() - began
                try:
                    done = await asyncio.wrap_future(engine.swap_model(built))
                except RuntimeError as exc:  # the engine stopped (evicted, shutting down)
                    log.info("%s: threads not swapped: %s", name, exc)
                    continue
                self._note(
                    "threads_applied",
                    f"{name}: {done.threads_before} → {done.threads_after} intra-op threads "
                    f"per lane: sessions built in {build_s:.2f} s, swapped after "
                    f"{done.waited_s * 1000:.0f} ms waiting for the lanes",
                )
        finally:
            self._retuning = None

    def _note(self, action: str, reason: str) -> None:
        now = self._clock()
        self._record(TimelineEntry(self._wall(), action, reason, now))

    def _record(self, entry: TimelineEntry) -> None:
        self.timeline.append(entry)
        self.counts[entry.action] += 1
        if self._counter is not None:
            self._counter.labels(entry.action).inc()
        log.info(
            "controller: %s: %s", entry.action, entry.reason, extra={"control_action": entry.action}
        )

    def _engine_changes(self, engine: Engine, *, label: bool) -> list[EngineChange]:
        """The load monitor's changes since the last tick (engines without one: none)."""
        monitor = getattr(engine, "load_monitor", None)
        if monitor is None:
            return []
        fresh, self._seen[monitor] = monitor.changes_since(self._seen.get(monitor, 0))
        name = getattr(engine, "model_name", None) or "engine"
        path = getattr(getattr(engine, "model", None), "path", None)
        from audiototext.models.cache import entry_precision

        precision = (entry_precision(path) or path.name) if isinstance(path, Path) else "?"
        where = f"{name} ({precision}): " if label else ""
        return [EngineChange(at, what, where + why) for at, what, why in fresh]

    def _gpu_fallbacks(self) -> dict[str, str]:
        """Loaded models whose sessions were meant for a GPU and run on the CPU."""
        out = {}
        for loaded in self.pool.models():
            if loaded.device != "gpu":
                continue
            engine = self.pool.engine_of(ModelKey(loaded.name, loaded.precision, loaded.device))
            model = getattr(engine, "model", None)
            for part in ("encoder", "decoder"):
                why = getattr(getattr(model, part, None), "fallback_reason", None)
                if why:
                    out[f"{loaded.name} ({loaded.precision})"] = str(why)
                    break
        return out


def _log_failure(task: asyncio.Task[None]) -> None:
    """A thread change that failed unexpectedly is logged (control carries on)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("changing the engines' threads failed", exc_info=task.exception())


def _usable_cores() -> int:
    """Cores this process may use now: its affinity, lowered to the cgroup's CPU quota."""
    import psutil

    from audiototext.hardware.cgroups import read_cgroup_limits
    from audiototext.hardware.detect import usable_cores

    return usable_cores(psutil.cpu_count() or 1, read_cgroup_limits())
