"""A fixed-capacity ring of 16 kHz samples addressed by absolute stream position."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["SampleRing"]

FloatArray = NDArray[np.float32]


class SampleRing:
    """The most recent ``capacity`` samples of a stream; older ones are overwritten.

    Positions are absolute (sample 0 is the first sample of the stream), so an utterance keeps
    its coordinates however much audio has passed through the ring since.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self._data = np.zeros(capacity, dtype=np.float32)
        self._capacity = capacity
        self.end = 0  # absolute position one past the newest sample

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def start(self) -> int:
        """The oldest absolute position still held."""
        return max(0, self.end - self._capacity)

    def append(self, samples: FloatArray) -> None:
        n = int(samples.shape[0])
        if n >= self._capacity:
            samples = samples[n - self._capacity :]
            self.end += n - self._capacity
            n = self._capacity
        at = self.end % self._capacity
        first = min(n, self._capacity - at)
        self._data[at : at + first] = samples[:first]
        self._data[: n - first] = samples[first:]
        self.end += n

    def read(self, start: int, stop: int) -> FloatArray:
        """A copy of samples ``[start, stop)``, clamped to what the ring still holds."""
        start = max(start, self.start)
        stop = min(stop, self.end)
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        a = start % self._capacity
        n = stop - start
        if a + n <= self._capacity:
            return self._data[a : a + n].copy()
        first = self._capacity - a
        return np.concatenate([self._data[a:], self._data[: n - first]])
