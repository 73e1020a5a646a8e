"""Where file transcripts go and what their documents say about the input.

Shared by ``audiototext transcribe`` and the bulk run on Ray (:mod:`audiototext.bulk`), so a
file transcribed either way ends up at the same path with the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audiototext.errors import ConfigError

__all__ = ["check_output_dir", "output_paths", "transcript_metadata"]


def check_output_dir(folder: Path) -> None:
    """Create ``folder`` if needed and prove it can be written; ConfigError saying why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the output folder {folder}: {exc.strerror or exc}"
        ) from exc
    if not folder.is_dir():
        raise ConfigError(f"the output path {folder} is not a folder")
    probe = folder / f".audiototext-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"cannot write to the output folder {folder}: {exc.strerror or exc}"
        ) from exc


def output_paths(paths: Sequence[Path], folder: Path, fmt: str) -> list[Path]:
    """Where each file's transcript goes; two inputs may not share one (one would be lost)."""
    out_paths = [folder / f"{path.stem or path.name}.{fmt}" for path in paths]
    first: dict[Path, Path] = {}
    for path, out in zip(paths, out_paths, strict=True):
        if out in first and first[out] != path:
            raise ConfigError(
                f"{first[out]} and {path} would both be written to {out}; transcribe them in "
                "separate runs with different --output folders, or rename one"
            )
        first.setdefault(out, path)
    return out_paths


def transcript_metadata(
    path: Path, model: str, language: str | None, audio_s: float
) -> dict[str, Any]:
    """The input's description at the top of a JSON transcript (other formats ignore it)."""
    return {
        "file": str(path),
        "model": model,
        "language": language,
        "duration_s": round(audio_s, 3),
    }
