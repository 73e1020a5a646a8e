"""How ONNX Runtime sessions are configured (the thread settings the benchmarks rely on)."""

from __future__ import annotations

from audiototext.inference import SessionConfig
from audiototext.inference.session import _session_options


def test_thread_pools_stop_spinning_when_a_run_returns() -> None:
    # Two sessions (encoder, decoder) share two cores: a pool left spinning after its run
    # takes a core from the other's next run (bench/NOTES.md, round 8).
    options = _session_options(SessionConfig(intra_op_threads=2))
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
