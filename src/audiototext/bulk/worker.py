"""One actor of a bulk run: a loaded model that turns batches of file paths into documents.

Ray Data creates one :class:`BulkWorker` per actor and calls it with batches of rows (a
``path`` column). The model is loaded once, in the constructor, with ``threads`` = the CPUs Ray
reserved for the actor divided among the files it does side by side, exactly as
``audiototext transcribe`` divides a machine's cores: on a CPU one file per reserved CPU, one
thread each. Each file goes through the CLI's own path (:meth:`Transcriber.transcribe_each`,
then :func:`~audiototext.store.exports.render` with the CLI's metadata), so its document is
byte for byte what the CLI writes; the driver writes it. A file that fails is tried again up
to ``retries`` times in this actor before it is reported (a read on a shared file system can
fail once); errors never escape a batch, so one bad file cannot stop the run.

A model that cannot be loaded (not cached and no network, say) fails every file of the actor
with that reason; the load is tried again with each attempt. Nothing here needs Ray: tests
call the class directly.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audiototext.inference.options import TranscribeOptions

if TYPE_CHECKING:
    from audiototext.inference import Transcriber

__all__ = ["ROW_FIELDS", "BulkWorker", "WorkerSettings"]

# The columns of every batch a worker returns (the driver's index is built from them).
ROW_FIELDS = (
    "path",
    "status",
    "error",
    "attempts",
    "duration_s",
    "language",
    "wall_s",
    "document",
    "node",
)


@dataclass(frozen=True)
class WorkerSettings:
    """What every actor of one run shares (pickled to each actor once)."""

    model: str
    fmt: str
    cpus: int
    precision: str = "auto"
    device: str = "auto"
    options: TranscribeOptions = field(default_factory=TranscribeOptions)
    retries: int = 1


@dataclass
class _Outcome:
    status: str = "failed"
    error: str | None = None
    attempts: int = 0
    duration_s: float | None = None
    language: str | None = None
    wall_s: float = 0.0
    document: str | None = None


class BulkWorker:
    """A model loaded once; ``worker(batch)`` transcribes the batch's files."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.node = _node_name()
        self.transcriber: Transcriber | None = None
        self.jobs = 1
        self.load_error: str | None = None
        self._load()

    def _load(self) -> None:
        """Load the model; a failure is kept and reported with each file, not raised: an actor
        whose constructor raises dies with a message that no longer says why."""
        from audiototext.errors import AudioToTextError
        from audiototext.inference import Transcriber
        from audiototext.inference.ort_session import CPU_PROVIDER

        s = self.settings
        cpus = max(1, s.cpus)
        jobs = cpus if s.device != "gpu" else 1
        try:
            transcriber = Transcriber.load(
                s.model,
                precision=s.precision,
                device=s.device,  # type: ignore[arg-type]  # checked by the driver
                threads=max(1, cpus // jobs),
            )
            transcriber.check_options(s.options)
        except AudioToTextError as exc:
            self.load_error = f"cannot load {s.model} on node {self.node}: {exc}"
            return
        if transcriber.model.providers[0] != CPU_PROVIDER:
            jobs = 1  # one accelerator: files side by side would only queue on it
        self.transcriber, self.jobs, self.load_error = transcriber, jobs, None

    def __call__(self, batch: Any) -> Any:
        """A pyarrow Table with a ``path`` column → a Table with :data:`ROW_FIELDS`."""
        import pyarrow as pa

        paths = [str(p) for p in batch.column("path").to_pylist()]
        outcomes = self.transcribe(paths)
        columns: dict[str, list[Any]] = {name: [] for name in ROW_FIELDS}
        for path in paths:
            outcome = outcomes[path]
            row = {"path": path, "node": self.node, **outcome.__dict__}
            for name in ROW_FIELDS:
                columns[name].append(row[name])
        return pa.table(columns)

    def transcribe(self, paths: Iterable[str]) -> dict[str, _Outcome]:
        """Each path's outcome, failed ones tried again up to ``settings.retries`` times."""
        outcomes = {path: _Outcome() for path in paths}
        for _ in range(1 + max(0, self.settings.retries)):
            todo = [p for p, o in outcomes.items() if o.status != "done"]
            if not todo:
                break
            for path in todo:
                outcomes[path].attempts += 1
            self._attempt(todo, outcomes)
        return outcomes

    def _attempt(self, paths: list[str], outcomes: dict[str, _Outcome]) -> None:
        from audiototext.store.exports import render
        from audiototext.store.outputs import transcript_metadata

        if self.transcriber is None:
            self._load()  # tried again with each attempt: a download may work the next time
        if self.transcriber is None:
            for path in paths:
                outcomes[path].error = self.load_error
            return
        s = self.settings
        started = time.perf_counter()
        finished: set[str] = set()
        try:
            results = self.transcriber.transcribe_each(
                [Path(p) for p in paths], s.options, jobs=min(self.jobs, len(paths))
            )
            for result in results:
                path = paths[result.index]
                finished.add(path)
                outcome = outcomes[path]
                outcome.wall_s = result.wall_s
                if result.error is not None:
                    outcome.error = str(result.error)
                    continue
                metadata = transcript_metadata(Path(path), s.model, result.language, result.audio_s)
                outcome.document = render(result.segments, s.fmt, metadata=metadata)
                outcome.status, outcome.error = "done", None
                outcome.duration_s = result.audio_s
                outcome.language = result.language
        except Exception as exc:  # a bug or a resource failure: report it per file, go on
            message = f"{type(exc).__name__}: {exc}"
            for path in paths:
                if path not in finished:
                    outcomes[path].error = message
                    outcomes[path].wall_s = time.perf_counter() - started


def _node_name() -> str:
    """The Ray node this actor runs on (its id, short), else host and process."""
    try:
        import ray

        if ray.is_initialized():
            return str(ray.get_runtime_context().get_node_id())[:12]
    except ImportError:
        pass
    return f"{socket.gethostname()}:{os.getpid()}"
