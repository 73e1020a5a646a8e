"""ONNX Runtime sessions: which execution provider, how many threads, and CPU fallback.

Providers are tried in :data:`PROVIDER_ORDER` among those the installed ``onnxruntime`` build
offers. CUDA comes before TensorRT because a TensorRT engine is built on first use (minutes for
a large decoder) and a person running the CLI should not pay that silently; ROCm, DirectML,
CoreML and OpenVINO follow, CPU always last.

``device="gpu"`` insists on an accelerator (a :class:`~audiototext.errors.ConfigError` if the
build has none); ``"auto"`` uses one when present; ``"cpu"`` never does. If an accelerator fails
while the session is created, or later while it runs, the failure is logged with its reason and
the session is rebuilt on the CPU provider: a request is never lost to a driver problem.

A :class:`OrtSession` is safe to share between threads (ONNX Runtime's ``run`` is re-entrant);
only the fallback swaps the underlying session, under a lock.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from audiototext._allocator import release_memory, tune_allocator
from audiototext.errors import ConfigError, ModelError
from audiototext.models.versions import TABLES_SUFFIX

__all__ = [
    "CPU_PROVIDER",
    "PROVIDER_ORDER",
    "Device",
    "OrtConfig",
    "OrtSession",
    "RowTable",
    "choose_providers",
    "default_threads",
]

log = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "gpu"]
CPU_PROVIDER = "CPUExecutionProvider"
PROVIDER_ORDER: tuple[str, ...] = (
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "ROCMExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    "OpenVINOExecutionProvider",
    CPU_PROVIDER,
)
_THREADS_ENV = "AUDIOTOTEXT_THREADS"


def default_threads() -> int:
    """Intra-op threads: ``AUDIOTOTEXT_THREADS`` if set, else the physical core count.

    Physical, not logical: the GEMMs that dominate Whisper saturate a core's vector units, so
    hyper-threads add contention rather than throughput.
    """
    env = os.environ.get(_THREADS_ENV, "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ConfigError(f"{_THREADS_ENV} must be a positive integer, not {env!r}") from None
        if value < 1:
            raise ConfigError(f"{_THREADS_ENV} must be a positive integer, not {env!r}")
        return value
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:  # psutil is a dependency, but the fallback costs nothing
        physical = None
    return max(1, physical or os.cpu_count() or 1)


@dataclass(frozen=True)
class OrtConfig:
    """How to run a graph.

    Attributes:
        device: ``auto`` (an accelerator if the build has one), ``cpu`` or ``gpu``.
        intra_op_threads: threads inside one operator; ``None`` means :func:`default_threads`.
        inter_op_threads: threads running independent operators; Whisper's graphs are a single
            chain, so more than one only adds scheduling overhead.
        memory_arena: ONNX Runtime's CPU arena, for a graph whose shapes barely change (the
            encoder): its activations are then reused run after run instead of being mapped
            and faulted in anew (see :func:`tune_allocator`).
        spinning: intra-op threads busy-wait for work inside a run (ONNX Runtime's default).
            Off, they sleep: file transcription turns it off, because on a machine with more
            runnable threads than cores the spinning threads took the CPU the working ones
            needed (bench/NOTES.md, realspeech: -29 % CPU, -18 % wall on a 4-min file).
    """

    device: Device = "auto"
    intra_op_threads: int | None = None
    inter_op_threads: int = 1
    memory_arena: bool = False
    spinning: bool = True

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "gpu"):
            raise ValueError(f"device must be auto, cpu or gpu, not {self.device!r}")
        if self.intra_op_threads is not None and self.intra_op_threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1, got {self.intra_op_threads}")
        if self.inter_op_threads < 1:
            raise ValueError(f"inter_op_threads must be >= 1, got {self.inter_op_threads}")

    @property
    def threads(self) -> int:
        return self.intra_op_threads or default_threads()


def choose_providers(device: Device, available: Sequence[str] | None = None) -> list[str]:
    """Providers to request, best first, always ending with CPU."""
    offered = set(ort.get_available_providers() if available is None else available)
    accelerators = [p for p in PROVIDER_ORDER if p != CPU_PROVIDER and p in offered]
    if device == "cpu":
        return [CPU_PROVIDER]
    if device == "gpu" and not accelerators:
        raise ConfigError(
            "--device gpu was asked for, but this onnxruntime build offers only "
            f"{', '.join(sorted(offered)) or 'no providers'}; install onnxruntime-gpu "
            "(CUDA), onnxruntime-directml or onnxruntime-openvino, or use --device cpu"
        )
    return [*accelerators, CPU_PROVIDER]


def _session_options(config: OrtConfig) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.threads
    options.inter_op_num_threads = config.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # The cache entry is already optimised offline (see models/optimize.py); "extended" here
    # only re-applies cheap fusions and keeps load time low.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.log_severity_level = 3
    # The decoder's shapes change every call (prompt and cache lengths), so ORT's arena and
    # memory patterns would only keep the largest buffers alive (bench/NOTES.md, "Memory").
    # The encoder's shapes are the same every window: it asks for the arena
    # (OrtConfig.memory_arena).
    options.enable_cpu_mem_arena = config.memory_arena
    options.enable_mem_pattern = False
    # Intra-op threads spin inside a run but stop when it returns: left spinning, one
    # session's pool took the core the other session's next run needed (bench/NOTES.md,
    # round 8), and in a stream server the Python threads' too.
    options.add_session_config_entry("session.force_spinning_stop", "1")
    options.add_session_config_entry("session.intra_op.allow_spinning", str(int(config.spinning)))
    return options


class RowTable:
    """A Gather-only table (the decoder's token embedding) given to ONNX Runtime in place of
    the graph's own copy, and filled row by row from the model file as rows are looked up.

    The graph stores the table in external data with a description beside it (see
    ``models/optimize.py``). ONNX Runtime would either copy it into the process (tiny.en: 40 MB)
    or map the file, and then the kernel's fault-around brings in 64 KB around every row read,
    which over a few hundred distinct tokens is most of the table. Here the table is anonymous
    memory that stays unallocated until a row is written: :meth:`ensure` reads the rows of the
    indices about to be fed (a few per decoding step) before the run. A 10-minute file touches
    a few MB of it.

    Thread-safe: rows are marked loaded only after they are written, under a lock.
    """

    def __init__(self, graph: Path, spec: Mapping[str, Any]) -> None:
        self._fd = -1
        self.name = str(spec["name"])
        self.indices = tuple(str(i) for i in spec["indices"])
        rows, width = (int(d) for d in spec["shape"])
        dtype = np.dtype(str(spec["dtype"]))
        self._row_bytes = width * dtype.itemsize
        self._offset = int(spec["offset"])
        data = graph.parent / str(spec["file"])
        if data.name != Path(str(spec["file"])).name:
            raise ModelError(f"{graph.name}: bad table file {spec['file']!r}")
        size = data.stat().st_size
        if self._offset < 0 or self._offset + rows * self._row_bytes > size:
            raise ModelError(f"{data.name} is shorter than the table {self.name} it should hold")
        self._buffer = mmap.mmap(-1, max(1, rows * self._row_bytes))
        if hasattr(mmap, "MADV_NOHUGEPAGE"):  # a huge page would make one row cost 2 MB
            self._buffer.madvise(mmap.MADV_NOHUGEPAGE)
        self.array = np.frombuffer(self._buffer, dtype=dtype).reshape(rows, width)
        self._rows = rows
        # A set: the cheapest per-step check (bench/NOTES.md, "Memory, round 3").
        self._loaded: set[int] = set()
        self._lock = threading.Lock()
        self._fd = os.open(data, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self.value = ort.OrtValue.ortvalue_from_numpy(self.array)  # shares self.array's memory

    @property
    def rows_loaded(self) -> int:
        return len(self._loaded)

    def ensure(self, ids: np.ndarray) -> None:
        """Load the rows of ``ids`` not loaded yet (out-of-range ids are left to the graph)."""
        wanted = set(np.asarray(ids).reshape(-1).tolist())
        if wanted <= self._loaded:
            return
        with self._lock:
            view = memoryview(self._buffer)
            for row in sorted(wanted - self._loaded):
                if not 0 <= row < self._rows:
                    continue
                start = row * self._row_bytes
                got = os.preadv(
                    self._fd,
                    [view[start : start + self._row_bytes]],
                    self._offset + start,
                )
                if got != self._row_bytes:
                    raise ModelError(f"short read of row {row} of {self.name}")
                self._loaded.add(row)
            view.release()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


def _row_tables(path: Path) -> list[RowTable]:
    """The tables described beside ``path`` (none for graphs converted before they were)."""
    spec_path = path.with_name(path.name + TABLES_SUFFIX)
    if not spec_path.is_file():
        return []
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        return [RowTable(path, t) for t in spec["row_tables"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot read {spec_path.name}: {exc}") from exc


class OrtSession:
    """An ONNX Runtime session that falls back to the CPU provider when an accelerator fails."""

    def __init__(self, path: Path, config: OrtConfig | None = None) -> None:
        self.path = path
        self.config = config or OrtConfig()
        self._lock = threading.Lock()
        self.fallback_reason: str | None = None
        tune_allocator()  # before the load, whose parse buffers are the first large blocks
        providers = choose_providers(self.config.device)
        # Tables filled on demand; only a CPU session reads them in place (an accelerator
        # would copy the still empty table to the device once).
        self.row_tables = _row_tables(path) if providers == [CPU_PROVIDER] else []
        try:
            self._session = self._create(providers)
        except Exception as exc:  # any provider failure: CUDA libs missing, driver, OOM
            if providers == [CPU_PROVIDER]:
                raise ModelError(f"cannot load {path.name}: {exc}") from exc
            self._note_fallback(f"creating the {providers[0]} session failed: {exc}")
            self._session = self._create([CPU_PROVIDER])
        else:
            used = self._session.get_providers()
            if providers[0] != CPU_PROVIDER and used[:1] == [CPU_PROVIDER]:
                # ORT silently drops a provider whose libraries are missing.
                self._note_fallback(f"{providers[0]} could not be initialised")
        # Loading parses the whole model and copies its weights: hand the parse buffers back.
        release_memory()

    def _create(self, providers: list[str]) -> ort.InferenceSession:
        options = _session_options(self.config)
        if providers == [CPU_PROVIDER]:
            for table in self.row_tables:
                options.add_initializer(table.name, table.value)
        return ort.InferenceSession(str(self.path), sess_options=options, providers=providers)

    def prepare(self, feeds: Mapping[str, Any]) -> None:
        """Load the table rows that ``feeds`` will look up; call before every run that may
        use a :class:`RowTable` (feeds are numpy arrays or ``OrtValue`` objects)."""
        for table in self.row_tables:
            for name in table.indices:
                value = feeds.get(name)
                if value is not None:
                    table.ensure(value if isinstance(value, np.ndarray) else value.numpy())

    def _note_fallback(self, reason: str) -> None:
        self.fallback_reason = reason
        log.warning("%s: %s; running on the CPU instead", self.path.name, reason)

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    @property
    def on_cpu(self) -> bool:
        return self.providers[:1] == [CPU_PROVIDER]

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self._session.get_inputs()]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self._session.get_outputs()]

    @property
    def raw(self) -> ort.InferenceSession:
        """The current ONNX Runtime session (changes once if the fallback happens)."""
        return self._session

    def fall_back_to_cpu(self, reason: str) -> bool:
        """Rebuild on CPU after a run-time failure; False if already on CPU (nothing to try)."""
        with self._lock:
            if self.on_cpu:
                return False
            self._note_fallback(f"running on {self.providers[0]} failed: {reason}")
            self._session = self._create([CPU_PROVIDER])
            return True

    def run(self, outputs: Sequence[str] | None, feeds: Mapping[str, Any]) -> list[Any]:
        """``InferenceSession.run`` with the run-time CPU fallback."""
        self.prepare(feeds)
        try:
            return list(self._session.run(list(outputs) if outputs else None, dict(feeds)))
        except Exception as exc:
            if not self.fall_back_to_cpu(str(exc)):
                raise
            return list(self._session.run(list(outputs) if outputs else None, dict(feeds)))
