"""What ``audiototext --version`` prints: this package, its engine libraries and the build.

The one-file executable (scripts/build-binary.sh) carries ``_build.json`` beside this module
with the commit it was built from; an installed package has none.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from audiototext._version import __version__

__all__ = ["build_info", "version_text"]

BUILD_FILE = "_build.json"


def build_info() -> dict[str, Any] | None:
    """The build's record (commit, date, kind) in a binary build, else None."""
    try:
        text = resources.files("audiototext").joinpath(BUILD_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return None
    data = json.loads(text)
    return data if isinstance(data, dict) else None


def version_text() -> str:
    lines = [f"audiototext {__version__}"]
    try:
        import onnxruntime

        lines.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:  # pragma: no cover - a runtime dependency
        lines.append("onnxruntime not installed")
    try:
        import av

        ffmpeg = getattr(av, "ffmpeg_version_info", "unknown")
        lines.append(f"PyAV {av.__version__} (FFmpeg {ffmpeg})")
    except ImportError:  # pragma: no cover - a runtime dependency
        lines.append("PyAV not installed")
    info = build_info()
    if info is None:
        lines.append("build: installed package (not a binary build)")
    else:
        lines.append(
            f"build: {info.get('kind', 'binary')} from commit {info.get('commit', 'unknown')}"
            f" ({info.get('date', 'date unknown')})"
        )
    return "\n".join(lines)
