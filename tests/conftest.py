"""Suite-wide isolation: no test touches the user's cache or reaches a real network host."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# Model fixtures (tiny_en_source, random_whisper_dir, built_cache, cache, filled_cache) for
# every test folder; realtime tests get the machine to themselves under pytest-xdist.
pytest_plugins = ["support.model_fixtures", "support.realtime"]


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AUDIOTOTEXT_HOME", str(tmp_path / "audiototext-home"))
    # Port 9 (discard) on loopback refuses connections: a test that forgets to start the
    # fake Hub fails fast instead of reaching huggingface.co.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    # huggingface_hub reads these at import time.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield
