"""The server's Prometheus metrics: one registry per server, served at ``/metrics``.

Names follow Prometheus's conventions: the ``audiototext_`` prefix, base units (seconds,
bytes), ``_total`` on counters, and no per-session labels (a label per stream would make a
new time series for every connection). Figures that already live elsewhere (open streams,
the engine's real-time factor and queue, its dropped partials, the alerts, free memory and
disk) are read when Prometheus scrapes, by :class:`_LiveCollector`; only what happens once
and is gone (a latency, a request, an error, a model load) is counted as it happens. So the
streaming path pays a dictionary lookup and two list appends per chunk, and one histogram
observation per first partial and per final.

Latencies are measured from the arrival of audio at the server: time to first partial from
the chunk that held the utterance's first sample, end of speech → final from the chunk that
held its last one (the engine's end of speech). The arrival times of each session's chunks
are kept in :class:`_Arrivals` for that lookup.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from audiototext._version import __version__
from audiototext.server.alerts import free_disk_bytes, free_memory_bytes
from audiototext.server.gpu import GpuSampler
from audiototext.streaming.types import SpeechEvent, StreamResult

if TYPE_CHECKING:
    from audiototext.server.alerts import AlertMonitor
    from audiototext.server.observer import ObservedSession
    from audiototext.server.sessions import SessionStore

__all__ = ["CONTENT_TYPE", "ServerMetrics"]

FIRST_PARTIAL_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
FINAL_BUCKETS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
LOAD_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The classic text format, which every Prometheus 2.x reads; prometheus_client's own default
# moved to version 1.0.0 (UTF-8 names), which ours do not need.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_KEEP_ARRIVALS_S = 120.0  # an utterance is at most max_segment_s (20 s) long, plus its final


class _Arrivals:
    """When each chunk of one session arrived: (audio seconds received after it, time)."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.times: list[float] = []
        self.partial_utterance = -1  # the last utterance that had its first partial timed

    def note(self, received_s: float, now: float) -> None:
        self.ends.append(received_s)
        self.times.append(now)
        if received_s - self.ends[0] > 2 * _KEEP_ARRIVALS_S:
            # Dropped in bulk, not one by one: a list shift per chunk would cost more.
            cut = bisect.bisect_left(self.ends, received_s - _KEEP_ARRIVALS_S)
            del self.ends[:cut], self.times[:cut]

    def arrival(self, audio_s: float) -> float | None:
        """The arrival time of the chunk that held stream time ``audio_s``."""
        if not self.ends or audio_s < self.ends[0] - _KEEP_ARRIVALS_S:
            return None
        i = min(bisect.bisect_left(self.ends, audio_s), len(self.ends) - 1)
        return self.times[i]


class ServerMetrics:
    """Every metric of one server, and the hooks the stream layer calls
    (:class:`~audiototext.server.observer.StreamObserver`)."""

    def __init__(self, model: str, cache_dir: Path, clock: Callable[[], float] = time.monotonic):
        self.registry = CollectorRegistry(auto_describe=True)
        self.model = model
        self.cache_dir = cache_dir
        self._clock = clock
        r = self.registry
        Info("audiototext_build", "The server's version and model.", registry=r).info(
            {"version": __version__, "model": model}
        )
        self.first_partial = Histogram(
            "audiototext_first_partial_seconds",
            "From the arrival of an utterance's first audio to its first partial result.",
            buckets=FIRST_PARTIAL_BUCKETS,
            registry=r,
        )
        self.final_latency = Histogram(
            "audiototext_final_latency_seconds",
            "From the arrival of an utterance's last speech to its final result.",
            buckets=FINAL_BUCKETS,
            registry=r,
        )
        self.model_loads = Counter(
            "audiototext_model_loads",
            "Model loads by model and result (ok or error).",
            ["model", "result"],
            registry=r,
        )
        self.model_load_seconds = Histogram(
            "audiototext_model_load_seconds",
            "How long model loads took (successful or not).",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "audiototext_errors",
            "Errors by kind (stream, engine, model_load, transcribe) and status code.",
            ["kind", "code"],
            registry=r,
        )
        self.http_requests = Counter(
            "audiototext_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "audiototext_http_request_duration_seconds",
            "HTTP request durations by method and route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.grpc_requests = Counter(
            "audiototext_grpc_requests",
            "gRPC calls by method and status code, counted when they end.",
            ["method", "code"],
            registry=r,
        )
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes
        self._arrivals: dict[str, _Arrivals] = {}
        self.retired_received_s = 0.0  # audio of sessions no longer in the store
        self.retired_processed_s = 0.0
        self._live: _LiveCollector | None = None
        self.gpu = GpuSampler()  # samples only where nvidia-smi exists

    def attach(self, store: SessionStore, alerts: AlertMonitor | None) -> None:
        """Read the live figures from ``store`` (and its engine) and ``alerts`` at scrape."""
        if self._live is not None:
            self.registry.unregister(self._live)
        self._live = _LiveCollector(self, store, alerts)
        self.registry.register(self._live)
        self.gpu.start()

    def close(self) -> None:
        self.gpu.stop()

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    # ---- StreamObserver

    def opened(self, session: ObservedSession) -> None:
        self._arrivals[session.id] = _Arrivals()

    def audio(self, session: ObservedSession) -> None:
        arrivals = self._arrivals.get(session.id)
        if arrivals is None:
            arrivals = self._arrivals[session.id] = _Arrivals()
        arrivals.note(session.engine.audio_received_s, self._clock())

    def event(self, session: ObservedSession, event: StreamResult | SpeechEvent) -> None:
        if isinstance(event, SpeechEvent):
            return
        arrivals = self._arrivals.get(session.id)
        if arrivals is None:
            return
        if event.is_final:
            at = arrivals.arrival(event.end_s)
            if at is not None:
                self.final_latency.observe(max(0.0, self._clock() - at))
        elif event.utterance_id != arrivals.partial_utterance:
            arrivals.partial_utterance = event.utterance_id
            at = arrivals.arrival(event.start_s)
            if at is not None:
                self.first_partial.observe(max(0.0, self._clock() - at))

    def removed(self, session: ObservedSession) -> None:
        self._arrivals.pop(session.id, None)
        self.retired_received_s += session.engine.audio_received_s
        self.retired_processed_s += session.engine.audio_processed_s

    def error(self, kind: str, code: str) -> None:
        self.errors.labels(kind, code).inc()

    # ---- other events

    def model_loaded(self, model: str, seconds: float, error: BaseException | None) -> None:
        self.model_loads.labels(model, "ok" if error is None else "error").inc()
        self.model_load_seconds.labels(model).observe(seconds)
        if error is not None:
            self.error("model_load", "INTERNAL")

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_seconds.labels(method, route).observe(seconds)

    def grpc_request(self, method: str, code: str) -> None:
        self.grpc_requests.labels(method, code).inc()


class _LiveCollector(Collector):
    """Figures read at scrape time from the sessions, the engine, the alerts, the machine."""

    def __init__(
        self, metrics: ServerMetrics, store: SessionStore, alerts: AlertMonitor | None
    ) -> None:
        self._metrics = metrics
        self._store = store
        self._alerts = alerts

    def describe(self) -> Iterator[Metric]:
        # Names only (no samples): the registry checks them against the other collectors'.
        return iter(self._families(sample=False))

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(sample=True))

    def _families(self, *, sample: bool) -> list[Metric]:
        m = self._metrics
        store = self._store
        stats = store.recognizer.stats() if sample else None
        sessions = store.sessions() if sample else []

        def received() -> float:
            return m.retired_received_s + sum(s.engine.audio_received_s for s in sessions)

        def processed() -> float:
            return m.retired_processed_s + sum(s.engine.audio_processed_s for s in sessions)

        def disk() -> float:
            return free_disk_bytes(m.cache_dir) or 0.0

        # (counter?, name, help, value); values are read only when sampling.
        plain: list[tuple[bool, str, str, Callable[[], float]]] = [
            (False, "audiototext_streams_active", "Open streams (connected or detached).",
             store.open_count),
            (False, "audiototext_streams_detached",
             "Open streams waiting for their client to resume.", store.detached_count),
            (True, "audiototext_streams_started", "Streams started since the server started.",
             lambda: store.streams_total),
            (True, "audiototext_audio_received_seconds", "Seconds of audio the streams sent.",
             received),
            (True, "audiototext_audio_processed_seconds",
             "Seconds of audio transcribed (or known to hold no speech).", processed),
            (False, "audiototext_realtime_factor", "Compute seconds per audio second, recent.",
             lambda: stats.rtf if stats else 0.0),
            (False, "audiototext_queue_depth", "Finals and audio reads waiting in the engine.",
             lambda: stats.queue_depth if stats else 0),
            (False, "audiototext_engine_overloaded",
             "1 while the engine refuses new streams because finals fall behind real time.",
             lambda: float(stats.overloaded) if stats else 0.0),
            (False, "audiototext_partial_interval_scale",
             "How far partial intervals are stretched under load (1: not at all).",
             lambda: stats.partial_interval_scale if stats else 1.0),
            (True, "audiototext_partials_dropped",
             "Partial results skipped because newer audio had arrived (load).",
             lambda: stats.partials_skipped if stats else 0),
            (False, "audiototext_memory_available_bytes",
             "Memory available to programs on this machine.", free_memory_bytes),
            (False, "audiototext_cache_disk_free_bytes",
             "Free disk space where the model cache is.", disk),
        ]  # fmt: skip
        families: list[Metric] = []
        for is_counter, name, doc, value in plain:
            family: Metric = (CounterMetricFamily if is_counter else GaugeMetricFamily)(name, doc)
            if sample:
                family.add_metric([], value())  # type: ignore[attr-defined]
            families.append(family)
        finals = CounterMetricFamily(
            "audiototext_finals",
            "Finals decoded, by settings (full, or reduced under load).",
            labels=["settings"],
        )
        if stats is not None:
            finals.add_metric(["full"], stats.finals_full)
            finals.add_metric(["reduced"], stats.finals_reduced)
        families.append(finals)
        alert = GaugeMetricFamily(
            "audiototext_alert", "1 while the named alert is raised.", labels=["name"]
        )
        if sample and self._alerts is not None:
            for name, active in self._alerts.states().items():
                alert.add_metric([name], float(active))
        families.append(alert)
        gpu = [
            GaugeMetricFamily(name, doc, labels=["gpu", "name"])
            for name, doc in (
                ("audiototext_gpu_memory_used_bytes", "GPU memory in use (all processes)."),
                ("audiototext_gpu_memory_total_bytes", "GPU memory."),
                ("audiototext_gpu_utilization_ratio", "Share of time the GPU was busy."),
            )
        ]
        for g in m.gpu.samples if sample else []:
            labels = [g.index, g.name]
            gpu[0].add_metric(labels, g.memory_used_bytes)
            gpu[1].add_metric(labels, g.memory_total_bytes)
            gpu[2].add_metric(labels, g.utilization)
        families.extend(gpu)
        return families
