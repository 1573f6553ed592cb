"""A single-producer, single-consumer float32 ring buffer that never allocates after creation.

The audio output callback reads from it while another thread writes; each side only moves its
own counter, and the counters only grow, so no lock is needed under the GIL.
"""
from __future__ import annotations

import numpy as np


class SampleRing:
    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, np.float32)
        self._written = 0  # samples ever written (producer's counter)
        self._read = 0  # samples ever read (consumer's counter)

    @property
    def written(self) -> int:
        """Samples ever written."""
        return self._written

    def available(self) -> int:
        return self._written - self._read

    def space(self) -> int:
        return self.capacity - self.available()

    def write(self, pcm: np.ndarray) -> int:
        """Copy as much of `pcm` [N] as fits; returns how many samples were taken."""
        n = min(len(pcm), self.space())
        start = self._written % self.capacity
        first = min(n, self.capacity - start)
        self._buf[start:start + first] = pcm[:first]
        self._buf[:n - first] = pcm[first:n]
        self._written += n
        return n

    def read_into(self, out: np.ndarray) -> int:
        """Fill `out` [M] from the ring; returns the samples copied (the rest of `out` is untouched)."""
        n = min(len(out), self.available())
        start = self._read % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self._buf[start:start + first]
        out[first:n] = self._buf[:n - first]
        self._read += n
        return n

    def discard(self, n: int) -> int:
        """Consumer side: drop up to `n` of the oldest samples unread; returns how many."""
        n = max(0, min(int(n), self.available()))
        self._read += n
        return n
