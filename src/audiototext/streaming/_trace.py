"""How each final was made, recorded for benchmarks (``StreamingRecognizer.final_trace``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FinalTrace"]


@dataclass(frozen=True)
class FinalTrace:
    """How one emitted final was made (for benchmarks; stream positions in samples).

    ``began_at`` is how far the VAD had read the stream when the final's decoding began (for
    a speculation, before the endpoint), ``emitted_at`` how far when it went out; with
    ``cpu_s`` they give the latency an idle machine would see. In wall time: ``wait_s`` from
    the endpoint to its decoding being handed out (0 for a speculation: decoded before it),
    ``decode_s`` that decoding's wall time and ``batch`` the finals decoded with it.
    """

    session_id: int
    utterance_id: int
    stop: int
    began_at: int
    emitted_at: int
    cpu_s: float
    speculative: bool
    reduced: bool
    wait_s: float = 0.0
    decode_s: float = 0.0
    batch: int = 1
