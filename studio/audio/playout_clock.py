"""The playout clock: plays a session's audio and says which session sample is being heard now.

The engine sends each chunk's frames together with the audio they show. The studio plays that
audio and shows frame k when the listener hears sample k*640, so voice and lips agree by
construction; the audio is late by exactly the pipeline latency. The clock is driven by the
output that consumes the audio (a sound card callback, or a monotonic-time pacer when there is
no device), so video follows what is actually played.

A live session may skip ahead (studio.live_latency decides when): the UI thread asks for a jump to
a frame boundary, and the audio thread, the ring's only reader, makes it at its next block with a
FADE_S fade-out and fade-in, so no click is heard. The frame schedule jumps to the same frame.
"""
from __future__ import annotations

import time

import numpy as np

from avkit.timeline import SAMPLE_RATE
from studio.audio.sample_ring import SampleRing

START_MARGIN_S = 0.2  # jitter margin: playing starts this long after audio (re)appears
CAPACITY_S = 120.0
FADE_S = 0.004  # a skip fades the old audio out and the new one in over this long


class PlayoutClock:
    """One per engine session. `fill()` runs on the audio thread, `position()` and `request_skip()`
    on the UI thread."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, capacity_s: float = CAPACITY_S,
                 start_margin_s: float = START_MARGIN_S):
        self.sample_rate = sample_rate
        self.ring = SampleRing(int(capacity_s * sample_rate))
        self.start_margin_s = start_margin_s
        self.output_latency_s = 0.0  # set by the output: time from fill() to the listener's ear
        self.underruns = 0  # the output ran dry while more audio was still expected
        self.finished = False  # the engine said no more audio will come
        self.starving = False  # ran dry and waiting to refill ("catching up")
        self.skips = 0  # jumps made by fill()
        self.skipped_samples = 0  # session samples jumped over (never played)
        self._start_at: float | None = None  # monotonic time from which playing may begin
        self._played = 0  # session samples handed to the output (the ring's read counter)
        self._anchor = (0, 0.0)  # (session sample at the start of the last fill, monotonic time of it)
        self._skip_to: int | None = None  # asked for by the UI thread, made by fill()
        self._resume_at = 0  # the jump lands once this many samples are received
        self._jumping = False  # fill() faded out for the jump asked for and waits for its audio
        fade = max(1, int(FADE_S * sample_rate))
        self._fade_out = np.linspace(1.0, 0.0, fade, endpoint=False, dtype=np.float32)
        self._fade_in = self._fade_out[::-1].copy()

    @property
    def played(self) -> int:
        return self._played

    @property
    def received(self) -> int:
        """Session samples pushed so far: the play head can move up to here."""
        return self.ring.written

    @property
    def skip_pending(self) -> bool:
        return self._skip_to is not None

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

    def request_skip(self, to_sample: int, resume_at: int | None = None) -> None:
        """Jump the play head ahead to session sample `to_sample`; fill() makes the jump at its next
        block and plays on from there once `resume_at` samples (default `to_sample`) are received.
        Until then it plays silence and drops the audio before `to_sample` as it comes, so a jump
        can land where live will be once an engine's backlog is in, with a buffer to play on."""
        self._skip_to = int(to_sample)
        self._resume_at = max(int(to_sample), int(resume_at or 0))

    def fill(self, out: np.ndarray, now: float) -> None:
        """Audio-thread side: write the next block [M] into `out`; never allocates arrays or blocks."""
        start_at = self._start_at
        if start_at is None or now < start_at:
            out.fill(0.0)
            return
        head, landed = 0, False
        skip_to = self._skip_to
        if skip_to is not None:
            if not self._jumping:  # the first block of a jump: fade out what would have played
                head = min(len(self._fade_out), len(out))
                self._fade_out_into(out[:head])
                self._jumping = True
                self.skips += 1
            dropped = self.ring.discard(skip_to - self._played)
            self._played += dropped
            self.skipped_samples += dropped
            if (self._played < skip_to or self.ring.written < self._resume_at) and not self.finished:
                # not here yet: silence until it is
                out[head:] = 0.0
                self._anchor = (self._played, now)
                return
            self._skip_to, self._jumping, landed = None, False, True
        first = self._played - head  # the faded-out head counts as played just before the landing
        tail = out[head:]
        got = self.ring.read_into(tail)
        if landed:
            self._fade(tail[:got], self._fade_in)
        if got < len(tail):
            tail[got:] = 0.0
            if not self.finished and not self.starving:
                self.underruns += 1
                self.starving = True
                self._start_at = now + self.start_margin_s
        elif self.starving:
            self.starving = False
        self._played += got
        self._anchor = (first, now)

    def _fade_out_into(self, head: np.ndarray) -> None:
        """Play what comes next into `head`, fading it out (silence where nothing is left)."""
        old = self.ring.read_into(head)
        head[old:] = 0.0
        self._fade(head[:old], self._fade_out)
        self._played += old

    @staticmethod
    def _fade(block: np.ndarray, ramp: np.ndarray) -> None:
        n = min(len(block), len(ramp))
        np.multiply(block[:n], ramp[:n], out=block[:n])

    def position(self, now: float | None = None) -> float:
        """Session sample the listener hears at monotonic time `now` (fractional, >= 0)."""
        now = time.monotonic() if now is None else now
        first, t_fill = self._anchor
        pos = first + (now - t_fill) * self.sample_rate - self.output_latency_s * self.sample_rate
        return float(min(max(pos, 0.0), self._played)) if self._played else 0.0
