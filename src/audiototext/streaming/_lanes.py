"""Decoding lanes: the work items the worker hands out, the threads that decode them, and the
policy that splits work over idle lanes.

A lane decodes one batch at a time, partials or finals (speculative or not), and wakes the
worker when it is done; the worker applies the result. :class:`LaneDispatcher` holds the
hand-out rules with no threads in it, so they can be tested by calling them.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from audiototext.streaming._decode import Hypothesis
from audiototext.streaming._final import FinalRequest
from audiototext.streaming.state import PendingFinal
from audiototext.streaming.stream import RecognitionStream

__all__ = [
    "DecodeLane",
    "FinalBatch",
    "FinalJob",
    "LaneBatch",
    "LaneDispatcher",
    "PartialBatch",
    "PartialJob",
]

log = logging.getLogger(__name__)

# Most finals (or speculations) handed to one lane at once: a lane's results go out when its
# whole batch is done, so a pile of finals given to one lane would hold the first of them.
FINALS_PER_LANE = 4

_Job = TypeVar("_Job")


@dataclass
class PartialJob:
    session: RecognitionStream
    start: int
    stop: int
    missed: int = 0  # intervals passed since the last partial beyond the one this covers


@dataclass
class PartialBatch:
    """Partials computed together: inputs copied from the streams, then the hypotheses."""

    jobs: list[PartialJob]
    mel: np.ndarray
    prompts: list[list[int]]
    prefixes: list[list[int]]
    budgets: list[int]
    utterance_ids: list[int]
    hyps: list[Hypothesis] = field(default_factory=list)
    # Set by the worker when finals wait for a lane: the lane stops before its next decoder
    # step and brings back no partials (they are due again at once).
    cancel: bool = False


@dataclass
class FinalJob:
    session: RecognitionStream
    final: PendingFinal
    audio_start: int = 0  # where this utterance's own audio (with context padding) begins
    speculative: bool = False  # decoded before its endpoint: kept, not emitted
    reduced: bool = False  # decoded with the cheaper settings (finals were queuing)
    began_at: int = 0  # the stream's VAD position when its decoding began (samples)
    cpu_s: float = 0.0  # thread CPU of its decoding (its share of a batch)
    handed_wall: float = 0.0  # monotonic time its decoding was handed out
    decode_s: float = 0.0  # wall time of its batch's decoding
    batch: int = 1  # finals (or speculations) decoded in that batch


@dataclass(eq=False)
class FinalBatch:
    """Finals (or speculations) handed to a lane together, decoded as one batch."""

    jobs: list[FinalJob]
    requests: list[FinalRequest]
    texts: list[str] = field(default_factory=list)
    cpu_s: float = 0.0  # the lane's thread CPU for the batch
    decode_s: float = 0.0  # and its wall time
    # Set by the worker when every job is a speculation the speaker made void; the lane
    # stops at its next encoder or decoder call (DecodingCancelled) and brings back no text.
    cancel: bool = False
    cancelled: bool = False  # it did stop early


LaneBatch = PartialBatch | FinalBatch


class DecodeLane:
    """A thread that decodes one batch at a time for the worker: partials or finals."""

    def __init__(self, compute: Callable[[LaneBatch], None], wake: Callable[[], None]) -> None:
        self._compute = compute
        self._wake = wake
        self._inbox: queue.SimpleQueue[LaneBatch | None] = queue.SimpleQueue()
        self._done: LaneBatch | None = None
        self.busy = False  # a batch is submitted and not yet taken back (worker)
        self.current: LaneBatch | None = None  # that batch (worker)
        self.cpu_s: dict[str, float] = {}  # thread CPU seconds: partials, finals, speculative
        # (monotonic end, wall seconds) of each batch, for the load monitor
        self.busy_wall: collections.deque[tuple[float, float]] = collections.deque()
        self._thread = threading.Thread(target=self._run, name="audiototext-lane", daemon=True)
        self._thread.start()

    def submit(self, batch: LaneBatch) -> None:
        self.busy = True
        self.current = batch
        self._inbox.put(batch)

    def has_result(self) -> bool:
        return self._done is not None

    def take(self) -> LaneBatch | None:
        done = self._done
        if done is not None:
            self._done = None
            self.busy = False
            self.current = None
        return done

    def stop(self) -> None:
        """End the thread and wait for it: until it returns it holds the recognizer (through
        ``compute``), so a closed recognizer and its model could not be freed. Partials in
        flight are cut short; finals are not (their text is owed)."""
        if isinstance(self.current, PartialBatch):
            self.current.cancel = True
        self._inbox.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            batch = self._inbox.get()
            if batch is None:
                return
            began, cpu = time.monotonic(), time.thread_time()
            try:
                self._compute(batch)
            except Exception:
                log.exception("a batch on a decoding lane failed")
                if isinstance(batch, PartialBatch):
                    batch.hyps = []  # its partials are skipped
                else:
                    batch.texts = []  # its finals go out empty
            if isinstance(batch, PartialBatch):
                kind = "partials"
            else:
                kind = "speculative" if batch.jobs and batch.jobs[0].speculative else "finals"
            self.cpu_s[kind] = self.cpu_s.get(kind, 0.0) + time.thread_time() - cpu
            now = time.monotonic()
            self.busy_wall.append((now, now - began))
            self._done = batch
            self._wake()


class LaneDispatcher:
    """Which work goes to which idle lane (no threads: lanes are counted, not touched).

    Finals go first, oldest first, split evenly over the idle lanes, at most
    ``per_lane`` each; the rest wait for a lane. Partials never take the last idle lane, which
    is kept for the next final, so a final waits for at most one batch of finals; finals that
    find no idle lane stop the partial batches in flight.
    """

    def __init__(self, per_lane: int = FINALS_PER_LANE) -> None:
        self.per_lane = per_lane

    def split(self, jobs: Sequence[_Job], idle: int) -> list[list[_Job]]:
        """``jobs`` in order, one share per idle lane (fewer when there are few jobs)."""
        if not idle or not jobs:
            return []
        size = min(self.per_lane, -(-len(jobs) // idle))
        starts = range(0, len(jobs), size)[:idle]
        return [list(jobs[at : at + size]) for at in starts]

    def hand_out_finals(self, jobs: Sequence[FinalJob], idle: int) -> list[list[FinalJob]]:
        """Finals per idle lane, the oldest endpoints first."""
        return self.split(sorted(jobs, key=lambda job: job.final.triggered_at), idle)

    @staticmethod
    def partials_may_start(idle: int) -> bool:
        return idle >= 2

    @staticmethod
    def partials_to_stop(in_flight: Sequence[LaneBatch | None]) -> list[PartialBatch]:
        """The partial batches to stop for finals that wait for a lane."""
        return [b for b in in_flight if isinstance(b, PartialBatch)]
