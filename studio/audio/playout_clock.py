"""The playout clock: plays a session's audio and says which session sample is being heard now.

The engine sends each chunk's frames together with the audio they show. The studio plays that
audio and shows frame k when the listener hears sample k*640, so voice and lips agree by
construction; the audio is late by exactly the pipeline latency. The clock is driven by the
output that consumes the audio (a sound card callback, or a monotonic-time pacer when there is
no device), so video follows what is actually played.
"""
from __future__ import annotations

import time

import numpy as np

from avkit.timeline import SAMPLE_RATE
from studio.audio.sample_ring import SampleRing

START_MARGIN_S = 0.2  # jitter margin: playing starts this long after audio (re)appears
CAPACITY_S = 120.0


class PlayoutClock:
    """One per engine session. `fill()` runs on the audio thread, `position()` on the UI thread."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, capacity_s: float = CAPACITY_S,
                 start_margin_s: float = START_MARGIN_S):
        self.sample_rate = sample_rate
        self.ring = SampleRing(int(capacity_s * sample_rate))
        self.start_margin_s = start_margin_s
        self.output_latency_s = 0.0  # set by the output: time from fill() to the listener's ear
        self.underruns = 0  # the output ran dry while more audio was still expected
        self.finished = False  # the engine said no more audio will come
        self.starving = False  # ran dry and waiting to refill ("catching up")
        self._start_at: float | None = None  # monotonic time from which playing may begin
        self._played = 0  # session samples handed to the output
        self._anchor = (0, 0.0)  # (first session sample of the last fill, monotonic time of it)

    @property
    def played(self) -> int:
        return self._played

    def push(self, pcm: np.ndarray) -> int:
        """Queue session audio [N] float32 (called by the UI thread as chunks arrive)."""
        taken = self.ring.write(pcm)
        if self._start_at is None:
            self._start_at = time.monotonic() + self.start_margin_s
        return taken

    def buffered_s(self) -> float:
        return self.ring.available() / self.sample_rate

    def started(self) -> bool:
        return self._start_at is not None and self._played > 0

    def fill(self, out: np.ndarray, now: float) -> None:
        """Audio-thread side: write the next block [M] into `out`; never allocates arrays or blocks."""
        start_at = self._start_at
        if start_at is None or now < start_at:
            out.fill(0.0)
            return
        first = self._played
        n = self.ring.read_into(out)
        if n < len(out):
            out[n:] = 0.0
            if not self.finished and not self.starving:
                self.underruns += 1
                self.starving = True
                self._start_at = now + self.start_margin_s
        elif self.starving:
            self.starving = False
        self._played = first + n
        self._anchor = (first, now)

    def position(self, now: float | None = None) -> float:
        """Session sample the listener hears at monotonic time `now` (fractional, >= 0)."""
        now = time.monotonic() if now is None else now
        first, t_fill = self._anchor
        pos = first + (now - t_fill - self.output_latency_s) * self.sample_rate
        return float(min(max(pos, 0.0), self._played)) if self._played else 0.0
