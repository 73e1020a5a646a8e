"""How ONNX Runtime sessions are configured (the thread settings the benchmarks rely on)."""

from __future__ import annotations

import pytest

from audiototext.inference import SessionConfig
from audiototext.inference.session import _session_options


def test_thread_pools_stop_spinning_when_a_run_returns() -> None:
    # Two sessions (encoder, decoder) share two cores: a pool left spinning after its run
    # takes a core from the other's next run (bench/NOTES.md, round 8).
    options = _session_options(SessionConfig(intra_op_threads=2))
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"


def test_heap_is_trimmed_only_when_it_grows_above_its_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each window frees its working set and the next one reuses it from the heap: trimming it
    # every window made every window fault it in again (bench/NOTES.md, round 10).
    from audiototext.inference import session

    trims: list[int] = []
    rss_mb = [200.0]
    page_mb = session._PAGE_MB
    monkeypatch.setattr(session, "_malloc_trim", lambda: trims.append)
    monkeypatch.setattr(session, "_rss_pages", lambda: int(rss_mb[0] / page_mb))
    monkeypatch.setattr(session, "_level", [0])

    session.release_memory()  # e.g. after the sessions are loaded
    assert trims == [0]
    for rss in (250.0, 252.0, 249.0, 265.0):  # windows: the first sets the level
        rss_mb[0] = rss
        session.release_memory_if_grown(16.0)
    assert trims == [0]
    rss_mb[0] = 267.0  # 17 MB above the level: fragmentation, trimmed
    session.release_memory_if_grown(16.0)
    assert trims == [0, 0]
    for rss in (280.0, 290.0):  # the level is taken again after a trim
        rss_mb[0] = rss
        session.release_memory_if_grown(16.0)
    assert trims == [0, 0]


def test_heap_is_not_trimmed_after_a_short_file_s_features(monkeypatch: pytest.MonkeyPatch) -> None:
    # A short file's audio is small beside the encoder's working set, which a trim would make
    # fault in again; a long block's chunks are worth returning.
    import numpy as np

    from audiototext.inference import transcribe

    trims: list[None] = []
    monkeypatch.setattr(transcribe, "release_memory", lambda: trims.append(None))
    rate = 16_000
    short = np.zeros(30 * rate, dtype=np.float32)
    transcribe._FeatureStream(iter([short]), 80, 3000).window(0)
    assert trims == []
    long = [np.zeros(30 * rate, dtype=np.float32) for _ in range(4)]
    transcribe._FeatureStream(iter(long), 80, 3000).window(0)
    assert trims == [None]
