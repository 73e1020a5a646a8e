"""A bulk run's results: one :class:`FileOutcome` per input, and the index file that lists them.

The index is one Parquet file (pyarrow comes with ``ray[data]``), a row per input in the order
given: ``file``, ``status`` (``done`` or ``failed``), ``error``, ``attempts``, ``duration_s``
(audio seconds), ``language``, ``output`` (the transcript's path), ``wall_s`` and ``node`` (the
Ray node that did it). It is written atomically, so a reader never sees half of one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

__all__ = ["INDEX_NAME", "FileOutcome", "read_index", "write_index"]

INDEX_NAME = "index.parquet"


@dataclass(frozen=True)
class FileOutcome:
    """What became of one input."""

    file: str
    status: str  # "done" or "failed"
    error: str | None = None
    attempts: int = 0
    duration_s: float | None = None
    language: str | None = None
    output: str | None = None
    wall_s: float = 0.0
    node: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "done"


def _schema() -> object:
    import pyarrow as pa

    types = {
        "file": pa.string(),
        "status": pa.string(),
        "error": pa.string(),
        "attempts": pa.int32(),
        "duration_s": pa.float64(),
        "language": pa.string(),
        "output": pa.string(),
        "wall_s": pa.float64(),
        "node": pa.string(),
    }
    return pa.schema([(f.name, types[f.name]) for f in fields(FileOutcome)])


def write_index(outcomes: Sequence[FileOutcome], path: Path) -> Path:
    """Write ``outcomes`` to ``path`` as Parquet, atomically. Raises OSError on failure."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [asdict(o) for o in outcomes]
    table = pa.Table.from_pylist(rows, schema=_schema())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_index(path: Path) -> list[FileOutcome]:
    """The outcomes an index file holds (the inverse of :func:`write_index`)."""
    import pyarrow.parquet as pq

    return [FileOutcome(**row) for row in pq.read_table(path).to_pylist()]
