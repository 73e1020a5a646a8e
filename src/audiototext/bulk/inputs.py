"""The files a bulk run transcribes: folders, glob patterns and plain paths, expanded.

A folder gives the audio and video files directly in it (by suffix; hidden files skipped), a
pattern with ``*``, ``?`` or ``[`` gives every file it matches (``**`` descends into folders),
anything else must be a file. Each argument must give at least one file, so a typo is an error
rather than a run over nothing. The list is in argument order, each argument's files sorted,
a file named twice kept once.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

from audiototext.errors import ConfigError

__all__ = ["AUDIO_SUFFIXES", "expand_inputs"]

# What a folder argument picks up: the containers PyAV reads that hold audio in practice.
AUDIO_SUFFIXES = frozenset(
    {
        ".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma",
        ".aif", ".aiff", ".caf", ".amr", ".webm", ".mka", ".mkv", ".mp4", ".mov", ".3gp",
    }
)  # fmt: skip


def _is_pattern(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def expand_inputs(specs: Sequence[str]) -> list[Path]:
    """Every file ``specs`` name (folders, patterns, files); ConfigError for one that names none."""
    if not specs:
        raise ConfigError("no input given: name files, folders or glob patterns")
    found: list[Path] = []
    seen: set[Path] = set()
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in AUDIO_SUFFIXES
            )
            if not files:
                raise ConfigError(
                    f"the folder {spec} holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})"
                )
        elif _is_pattern(spec):
            files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            if not files:
                raise ConfigError(f"the pattern {spec!r} matches no file")
        elif path.exists():
            files = [path]  # not a folder, so a file (or a device, which decoding reports)
        else:
            raise ConfigError(f"{spec}: no such file or folder")
        for file in files:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                found.append(file)
    return found
