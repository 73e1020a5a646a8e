"""Helpers of the metrics tests: tone bursts the engine double hears as utterances, and a
parsed /metrics scrape."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from prometheus_client.parser import text_string_to_metric_families

from audiototext.server.app import GrpcServer
from server.ws_harness import http_get

__all__ = ["Scrape", "scrape", "tones"]


def tones(utterances: int = 2, speech_s: float = 1.2, gap_s: float = 0.8) -> NDArray[np.float32]:
    """Loud tone bursts between silences: the fake engine's energy VAD hears utterances."""
    t = np.arange(int(speech_s * 16000)) / 16000
    burst = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    gap = np.zeros(int(gap_s * 16000), np.float32)
    return np.concatenate([gap] + [np.concatenate([burst, gap]) for _ in range(utterances)])


class Scrape:
    """One /metrics body, parsed."""

    def __init__(self, body: bytes) -> None:
        self.text = body.decode()
        self.families = {f.name: f for f in text_string_to_metric_families(self.text)}

    def value(self, sample_name: str, /, **labels: str) -> float:
        """The value of the sample with exactly these labels (0 when there is none)."""
        for family in self.families.values():
            for sample in family.samples:
                if sample.name == sample_name and sample.labels == labels:
                    return float(sample.value)
        return 0.0

    def sample_names(self) -> set[str]:
        return {s.name for f in self.families.values() for s in f.samples}


async def scrape(srv: GrpcServer, headers: dict[str, str] | None = None) -> Scrape:
    status, head, body = await http_get(srv, "/metrics", headers)
    assert status == 200, body
    assert head["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(body)
