"""A stopped lane's thread is gone when ``stop`` returns: until then it holds the recognizer
(through its ``compute``), so a closed recognizer and its model could not be freed."""

from __future__ import annotations

import threading

import numpy as np

from audiototext.streaming._lanes import DecodeLane, LaneBatch, PartialBatch


def test_stop_cuts_a_partial_batch_short_and_waits_for_the_thread() -> None:
    started = threading.Event()
    seen: list[bool] = []

    def compute(batch: LaneBatch) -> None:
        started.set()
        # A decoder checks ``cancel`` before each step; here the "steps" go on until it is set.
        while not batch.cancel:
            threading.Event().wait(0.01)
        seen.append(batch.cancel)

    lane = DecodeLane(compute, wake=lambda: None)
    thread = lane._thread
    lane.submit(PartialBatch([], np.zeros((0, 80, 0), np.float32), [], [], [], []))
    assert started.wait(30), "the lane never took its batch"
    lane.stop()
    assert not thread.is_alive(), "stop() returned while the lane's thread still ran"
    assert seen == [True]


def test_stop_of_an_idle_lane_ends_its_thread() -> None:
    lane = DecodeLane(lambda batch: None, wake=lambda: None)
    lane.stop()
    assert not lane._thread.is_alive()
