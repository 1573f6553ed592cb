"""What a paced player plays from: a clip in memory (text-to-speech) or a file decoded ahead
(studio.audio.streamed_file). Mono float32 at the timeline rate, read a block at a time."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class PcmSource(Protocol):
    duration_s: float  # 0.0 when unknown

    def read(self, n: int) -> np.ndarray | None:
        """Up to `n` next samples; an empty array when none are ready yet; None at the end."""

    def seek(self, seconds: float) -> None:
        """The next read starts at `seconds`."""

    def close(self) -> None:
        """Release what it holds (a file, a thread)."""


class InMemoryClip:
    """A short clip held whole (a synthesized sentence)."""

    def __init__(self, pcm: np.ndarray, sample_rate: int):
        self._pcm = np.ascontiguousarray(pcm, np.float32)
        self._rate = sample_rate
        self._pos = 0
        self.duration_s = len(self._pcm) / sample_rate

    def read(self, n: int) -> np.ndarray | None:
        pos = self._pos
        if pos >= len(self._pcm):
            return None
        block = self._pcm[pos:pos + n]
        self._pos = pos + len(block)
        return block

    def seek(self, seconds: float) -> None:
        self._pos = int(min(max(seconds, 0.0), self.duration_s) * self._rate)

    def close(self) -> None:
        self._pcm = np.zeros(0, np.float32)
