"""Bulk transcription of many files on a Ray cluster (``audiototext transcribe --ray``).

An adapter outside the core, like the CLI and the server: it drives the same file
transcription (:class:`~audiototext.inference.Transcriber`) and writers as the CLI, spread over
Ray Data actors. Needs the ``ray`` extra; importing this package does not import Ray.

    from audiototext.bulk import transcribe_many
    report = transcribe_many(["recordings/"], ray_address="auto", output_dir="out", fmt="srt")
    print(len(report.failed), report.index_path)
"""

from __future__ import annotations

from audiototext.bulk.index import FileOutcome, read_index
from audiototext.bulk.run import BulkReport, transcribe_many

__all__ = ["BulkReport", "FileOutcome", "read_index", "transcribe_many"]
