"""The session's audio timeline: an append-only sample index with a bounded memory.

Sample s of the session lives at absolute index s forever; only the last `capacity` samples are
kept. Each appended block remembers its capture time (the client's clock) so any sample can be
traced back to the moment it was captured (end-to-end latency), and its arrival time (the
engine's clock) so the engine can tell how long a sample has been waiting (the skip rule).
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np


class AudioRing:
    def __init__(self, capacity: int, sample_rate: int):
        self.capacity = int(capacity)
        self.sample_rate = sample_rate
        self._buf = np.zeros(self.capacity, np.float32)
        self.total = 0  # samples ever appended = index one past the newest sample
        self._blocks: deque[tuple[int, float, float]] = deque(maxlen=4096)  # (first sample, capture_t, arrival_t)

    @property
    def oldest(self) -> int:
        return max(0, self.total - self.capacity)

    def append(self, mono: np.ndarray, capture_t: float | None = None) -> None:
        mono = np.asarray(mono, np.float32).reshape(-1)
        n = mono.size
        if n == 0:
            return
        now = time.monotonic()
        self._blocks.append((self.total, now if capture_t is None else capture_t, now))
        if n >= self.capacity:
            mono = mono[-self.capacity:]
            self.total += n - self.capacity
            n = self.capacity
        start = self.total % self.capacity
        first = min(n, self.capacity - start)
        self._buf[start:start + first] = mono[:first]
        self._buf[:n - first] = mono[first:]
        self.total += n

    def window(self, end: int, length: int) -> np.ndarray:
        """Samples [end-length, end): zeros before sample 0 and after `total` (the unknown future)."""
        out = np.zeros(length, np.float32)
        lo, hi = max(end - length, 0), min(end, self.total)
        if lo < self.oldest:
            raise IndexError(f"samples from {lo} are no longer kept (oldest is {self.oldest})")
        if hi > lo:
            idx = np.arange(lo, hi) % self.capacity
            out[lo - (end - length):hi - (end - length)] = self._buf[idx]
        return out

    def capture_time(self, sample: int) -> float:
        """Capture time of a sample: its block's capture time plus its offset in the block."""
        best = None
        for first, t, _ in reversed(self._blocks):
            if first <= sample:
                best = (first, t)
                break
        if best is None:
            best = self._blocks[0][:2] if self._blocks else (0, time.monotonic())
        first, t = best
        return t + (sample - first) / self.sample_rate

    def heard_time(self, sample: int) -> float:
        """When the engine could first have heard a sample (engine clock): its block's arrival, less
        the block's audio after the sample. Exact for a source that sends each block as soon as it
        is complete (a microphone); a burst sent at once counts as audio that has just ended."""
        end = self.total
        for first, _, arrival in reversed(self._blocks):
            if first <= sample:
                return arrival - (end - sample) / self.sample_rate
            end = first
        if not self._blocks:
            return time.monotonic()
        return self._blocks[0][2] - (end - sample) / self.sample_rate  # older than any block kept
