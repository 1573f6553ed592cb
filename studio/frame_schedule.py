"""Frames waiting for their presentation time, indexed on the session timeline.

Frame k is due when the playout clock reaches sample k*spf. Frames that were never shown because
the clock already passed them count as late; frames a live skip jumped over count as skipped;
older chunks are released as the clock advances.

A frame's capture time is its first sample's. An idle chunk (made in silence) has no captured
audio: the engine dates it by counting samples on from the last speech, a count that falls behind
the wall clock by every stall of its idle pacing. Its frames are dated as if its silence had been
heard just before it arrived, so what they report (and what a skip to live judges) is the time
they waited in the studio, not how long ago someone last spoke.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from avkit.timeline import FPS, Timeline
from studio.engine_link.received_chunk import ReceivedChunk


@dataclass
class DueFrame:
    index: int
    image: np.ndarray  # [H, W, 3] uint8
    capture_t: float
    idle: bool  # made in silence, from no captured audio


class FrameSchedule:
    def __init__(self, timeline: Timeline = Timeline(), max_frames: int = 60 * FPS):
        self.timeline = timeline
        self.max_frames = max_frames
        self._chunks: deque[ReceivedChunk] = deque()
        self.late = 0  # frames skipped because their time had passed
        self.evicted = 0  # frames dropped because too many were waiting
        self.skipped = 0  # received frames a skip to live jumped over
        self.shown = -1  # index of the frame shown last
        self.end_frame = 0  # one past the last frame received

    def add(self, chunk: ReceivedChunk) -> None:
        if chunk.first_frame <= self.shown:  # a skip to live went past frames still to come: they never show
            self.skipped += min(chunk.end_frame, self.shown + 1) - chunk.first_frame
        self._chunks.append(chunk)
        self.end_frame = max(self.end_frame, chunk.end_frame)
        while self.waiting() > self.max_frames and len(self._chunks) > 1:
            old = self._chunks.popleft()
            self.evicted += len(old.frames)

    def waiting(self) -> int:
        """Frames received and not yet due."""
        return max(0, self.end_frame - max(self.shown + 1, self._first()))

    def _first(self) -> int:
        return self._chunks[0].first_frame if self._chunks else 0

    def capture_time(self, frame: int) -> float | None:
        """When the audio of `frame`'s first sample was captured: from the chunk holding it, or, for a
        frame the engine never sent (a gap of silence on the timeline), back from the next chunk.
        None when no chunk at or after `frame` is held."""
        for chunk in self._chunks:
            if chunk.end_frame > frame:
                return self._capture_t0(chunk) + (frame - chunk.first_frame) / self.timeline.fps
        return None

    def _capture_t0(self, chunk: ReceivedChunk) -> float:
        if not chunk.idle:
            return chunk.capture_t0
        return max(chunk.capture_t0, chunk.received_t - len(chunk.frames) / self.timeline.fps)

    def skip_to(self, frame: int) -> int:
        """Jump over every frame before `frame` (the playout clock jumps to the same boundary), also
        those not received yet (counted as they come); returns how many received frames were skipped."""
        if frame <= self.shown + 1:
            return 0
        skipped = self._received_between(self.shown + 1, frame)
        while self._chunks and self._chunks[0].end_frame <= frame:
            self._chunks.popleft()
        self.skipped += skipped
        self.shown = frame - 1
        return skipped

    def _received_between(self, start: int, stop: int) -> int:
        """Frames in [start, stop) that a held chunk carries (gaps the engine left do not count)."""
        return sum(max(0, min(c.end_frame, stop) - max(c.first_frame, start)) for c in self._chunks)

    def due(self, position_samples: float) -> DueFrame | None:
        """The frame to show at this clock position, if it differs from the one shown."""
        k = int(position_samples // self.timeline.samples_per_frame)
        # The clock never runs past the audio received, so k == end_frame means every sample was
        # heard: the last frame's moment is over but it must still be shown (a late tick under load
        # would otherwise skip it, and the session would never be seen to end).
        k = min(k, self.end_frame - 1)
        if k <= self.shown:
            return None
        chunk = next((c for c in self._chunks if c.end_frame > k), None)
        if chunk is None or chunk.first_frame > k:
            return None
        if self.shown >= 0:  # passed without being shown (frames the engine never sent are its count)
            self.late += self._received_between(self.shown + 1, k)
        while self._chunks[0] is not chunk:
            self._chunks.popleft()
        self.shown = k
        offset = k - chunk.first_frame
        return DueFrame(k, chunk.frames[offset], self._capture_t0(chunk) + offset / self.timeline.fps, chunk.idle)
