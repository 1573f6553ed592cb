"""Preallocated ring buffers of time series for the latency graphs.

Writers push one row per event without allocating; the graph timer reads the last rows in time
order a few times a second.
"""
from __future__ import annotations

import numpy as np


class MetricsRing:
    """`capacity` rows of (t, *channels) float64; NaN marks a missing value."""

    def __init__(self, channels: tuple[str, ...], capacity: int = 1500):
        self.channels = channels
        self.capacity = capacity
        self._index = {name: i + 1 for i, name in enumerate(channels)}
        self._rows = np.full((capacity, len(channels) + 1), np.nan)
        self._count = 0

    def __len__(self) -> int:
        return min(self._count, self.capacity)

    @property
    def pushed(self) -> int:
        """Rows ever pushed (a reader can tell whether anything came in since it last looked)."""
        return self._count

    def push(self, t: float, **values: float) -> None:
        row = self._rows[self._count % self.capacity]
        row.fill(np.nan)
        row[0] = t
        for name, value in values.items():
            row[self._index[name]] = value
        self._count += 1

    def clear(self) -> None:
        self._count = 0

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(t [N], values [N]) oldest first."""
        n = len(self)
        start = self._count % self.capacity if self._count > self.capacity else 0
        col = self._index[name]
        order = (np.arange(n) + start) % self.capacity
        return self._rows[order, 0], self._rows[order, col]

    def last(self, name: str) -> float:
        if not self._count:
            return float("nan")
        return float(self._rows[(self._count - 1) % self.capacity, self._index[name]])
