"""The driver of a bulk run: Ray Data over the file list, outputs and index written here.

:func:`transcribe_many` connects to a Ray cluster, makes a dataset of the input paths (longest
first, by declared duration, so the last file to finish does not start when the others are
done), maps it through a pool of :class:`~audiototext.bulk.worker.BulkWorker` actors and, as
each batch comes back, writes its documents where ``audiototext transcribe`` would and advances
the progress. The index (:mod:`audiototext.bulk.index`) is written at the end, a row per input,
also when the run itself fails (then the files it did not finish are ``failed`` with Ray's
error).

Addresses: ``local`` starts a private Ray instance on this machine for the run and stops it
after; ``auto`` joins the cluster this machine belongs to (``ray start`` ran here, or
``RAY_ADDRESS``); ``HOST:PORT`` is a head node's GCS address; ``ray://HOST:PORT`` goes through
Ray Client. The workers need audiototext installed and the input files at the same paths
(a shared file system); each node loads the model from its own cache
(``AUDIOTOTEXT_HOME``, forwarded to the workers when the driver has it set), pulling it there
once if it is missing. Ray is imported only here and in the worker, only when a run starts.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiototext.bulk.index import INDEX_NAME, FileOutcome, write_index
from audiototext.bulk.inputs import expand_inputs
from audiototext.bulk.worker import BulkWorker, WorkerSettings
from audiototext.errors import ConfigError
from audiototext.inference.options import TranscribeOptions
from audiototext.progress import NullProgress, ProgressSink
from audiototext.ray_connect import connected
from audiototext.store.outputs import check_output_dir, output_paths

__all__ = ["BulkReport", "transcribe_many"]

log = logging.getLogger(__name__)

# Times Ray restarts a dead actor and re-runs its batch before the run fails.
_ACTOR_RESTARTS = 3
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours its error messages


@dataclass(frozen=True)
class BulkReport:
    """A finished run: every input's outcome (in input order), the index, the pool used."""

    outcomes: list[FileOutcome]
    index_path: Path
    wall_s: float
    actors: int
    cpus_per_actor: int
    nodes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def audio_s(self) -> float:
        return sum(o.duration_s or 0.0 for o in self.outcomes if o.ok)


def transcribe_many(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    ray_address: str = "auto",
    output_dir: str | os.PathLike[str] = ".",
    fmt: str = "txt",
    model: str = "tiny.en",
    precision: str = "auto",
    device: str = "auto",
    options: TranscribeOptions | None = None,
    actors: int | None = None,
    cpus_per_actor: int = 2,
    retries: int = 1,
    progress: ProgressSink | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
) -> BulkReport:
    """Transcribe every file ``inputs`` name (files, folders, glob patterns) on a Ray cluster.

    Transcripts go to ``output_dir`` as ``audiototext transcribe -o output_dir --format fmt``
    writes them, plus ``index.parquet``. ``actors`` defaults to as many as the cluster's CPUs
    hold at ``cpus_per_actor`` each (never more than there are batches). ``on_file`` is
    called on this thread as each file is finished (written or failed). Raises ConfigError
    for settings or an address that cannot work, before any file is read.
    """
    from audiototext.store.exports import FORMATS

    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if device not in ("auto", "cpu", "gpu"):
        raise ConfigError(f"unknown device {device!r}; choose auto, cpu or gpu")
    if cpus_per_actor < 1 or (actors is not None and actors < 1) or retries < 0:
        raise ConfigError("actors and CPUs per actor must be at least 1, retries at least 0")
    from audiototext.models.registry import resolve

    resolve(model)  # a name that can never load fails here, not in every actor
    paths = expand_inputs([os.fspath(p) for p in inputs])
    folder = Path(output_dir)
    check_output_dir(folder)
    out_paths = dict(zip(paths, output_paths(paths, folder, fmt), strict=True))
    settings = WorkerSettings(
        model=model,
        fmt=fmt,
        cpus=cpus_per_actor,
        precision=precision,
        device=device,
        options=options or TranscribeOptions(),
        retries=retries,
    )
    sink = progress or NullProgress()
    started = time.perf_counter()
    with connected(ray_address) as ray:
        actors = _pool_size(ray, actors, cpus_per_actor, len(paths))
        sink.task("bulk", f"{len(paths)} files, {actors} actor(s)", total=len(paths), unit="files")
        by_path = {str(p): p for p in paths}
        done: dict[Path, FileOutcome] = {}
        try:
            for row in _rows(ray, _longest_first(paths), settings, actors):
                path = by_path[row["path"]]
                outcome = _finish(row, out_paths[path])
                done[path] = outcome
                sink.advance("bulk", 1)
                if on_file is not None:
                    on_file(outcome)
        except Exception as exc:  # Ray gave up (actors kept dying, a node was lost, ...)
            first = _ANSI.sub("", str(exc)).strip().splitlines()
            reason = f"the Ray run failed: {type(exc).__name__}: {first[0] if first else exc!r}"
            log.error("%s", reason)
            for path in paths:
                if path not in done:
                    done[path] = FileOutcome(str(path), "failed", error=reason)
                    if on_file is not None:
                        on_file(done[path])
        sink.done("bulk")
    outcomes = [done[p] for p in paths]
    index_path = write_index(outcomes, folder / INDEX_NAME)
    return BulkReport(
        outcomes,
        index_path,
        time.perf_counter() - started,
        actors,
        cpus_per_actor,
        sorted({o.node for o in outcomes if o.node}),
    )


def _finish(row: dict[str, Any], out_path: Path) -> FileOutcome:
    """Write one worker row's document; its outcome (failed if it could not be written)."""
    from audiototext.store.exports import write_text

    status, error, output = row["status"], row["error"], None
    if status == "done":
        try:
            write_text(row["document"], out_path)
            output = str(out_path)
        except OSError as exc:
            status, error = "failed", f"cannot write {out_path}: {exc.strerror or exc}"
    return FileOutcome(
        file=row["path"],
        status=status,
        error=error,
        attempts=int(row["attempts"]),
        duration_s=row["duration_s"],
        language=row["language"],
        output=output,
        wall_s=float(row["wall_s"]),
        node=row["node"],
    )


def _longest_first(paths: list[Path]) -> list[Path]:
    from audiototext.audio.decode import declared_duration_s

    def length(path: Path) -> float:
        duration = declared_duration_s(path) if path.is_file() else None
        return math.inf if duration is None else duration

    return sorted(paths, key=lambda p: -length(p))


def _rows(ray: Any, paths: list[Path], settings: WorkerSettings, actors: int) -> Iterator[Any]:
    """The workers' rows as batches finish (Ray Data, one block per batch)."""
    from ray.data import ActorPoolStrategy, DataContext
    from ray.util.annotations import RayDeprecationWarning

    DataContext.get_current().enable_progress_bars = False  # ours is the one shown
    # Its notes (execution started and finished, "progress bars disabled") are not the user's.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    batch = settings.cpus  # one file per reserved CPU, side by side
    ds = ray.data.from_items(
        [{"path": str(p)} for p in paths], override_num_blocks=math.ceil(len(paths) / batch)
    )
    with warnings.catch_warnings():
        # Ray 2.60 deprecates ray_remote_args_fn and names no other way to bound restarts;
        # when it goes (2.64), map_batches refuses the argument and the Ray tests fail.
        warnings.simplefilter("ignore", RayDeprecationWarning)
        ds = ds.map_batches(
            BulkWorker,
            fn_constructor_args=(settings,),
            batch_size=batch,
            batch_format="pyarrow",
            # One batch in flight per actor: an actor that queued more could hold the last
            # files while another stands idle.
            compute=ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
            num_cpus=settings.cpus,
            num_gpus=1 if settings.device == "gpu" else None,  # auto: what the node has
            ray_remote_args_fn=_fault_tolerance,
        )
    yield from ds.iter_rows()


def _fault_tolerance() -> dict[str, Any]:
    # Ray Data's default restarts a dead actor forever: a file that kills its process would
    # then never let the run end.
    return {"max_restarts": _ACTOR_RESTARTS, "max_task_retries": _ACTOR_RESTARTS}


def _pool_size(ray: Any, actors: int | None, cpus_per_actor: int, n_files: int) -> int:
    cluster_cpus = int(ray.cluster_resources().get("CPU", 0))
    if cpus_per_actor > cluster_cpus:
        raise ConfigError(
            f"an actor needs {cpus_per_actor} CPUs but the Ray cluster has {cluster_cpus}; "
            "give each fewer (--threads)"
        )
    batches = math.ceil(n_files / cpus_per_actor)
    if actors is None:
        return max(1, min(batches, cluster_cpus // cpus_per_actor))
    if actors * cpus_per_actor > cluster_cpus:
        raise ConfigError(
            f"{actors} actors of {cpus_per_actor} CPUs need {actors * cpus_per_actor} CPUs; "
            f"the Ray cluster has {cluster_cpus}: ask for fewer (--actors, --threads)"
        )
    return min(actors, batches)
