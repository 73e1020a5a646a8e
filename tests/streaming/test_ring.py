"""SampleRing (streaming/_ring.py): the newest samples of a stream at absolute positions."""

from __future__ import annotations

import numpy as np
import pytest

from audiototext.streaming._ring import SampleRing


def _ramp(start: int, stop: int) -> np.ndarray:
    return np.arange(start, stop, dtype=np.float32)


def test_reads_by_absolute_position_across_the_wrap() -> None:
    ring = SampleRing(10)
    assert (ring.start, ring.end, ring.capacity) == (0, 0, 10)
    ring.append(_ramp(0, 7))
    ring.append(_ramp(7, 15))  # wraps: 0-4 overwritten
    assert (ring.start, ring.end) == (5, 15)
    np.testing.assert_array_equal(ring.read(5, 15), _ramp(5, 15))
    np.testing.assert_array_equal(ring.read(8, 12), _ramp(8, 12))


def test_reads_are_clamped_to_what_is_held_and_are_copies() -> None:
    ring = SampleRing(10)
    ring.append(_ramp(0, 15))
    np.testing.assert_array_equal(ring.read(0, 100), _ramp(5, 15))
    assert ring.read(20, 30).shape == (0,)
    assert ring.read(9, 9).shape == (0,)
    held = ring.read(5, 10)
    ring.append(_ramp(15, 20))
    np.testing.assert_array_equal(held, _ramp(5, 10))  # not a view of the ring


def test_a_chunk_longer_than_the_ring_keeps_its_newest_samples() -> None:
    ring = SampleRing(4)
    ring.append(_ramp(0, 3))
    ring.append(_ramp(3, 13))
    assert (ring.start, ring.end) == (9, 13)
    np.testing.assert_array_equal(ring.read(0, 13), _ramp(9, 13))


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        SampleRing(0)
