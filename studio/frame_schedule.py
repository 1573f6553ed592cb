"""Frames waiting for their presentation time, indexed on the session timeline.

Frame k is due when the playout clock reaches sample k*spf. Frames that were never shown because
the clock already passed them count as late; older chunks are released as the clock advances.
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


class FrameSchedule:
    def __init__(self, timeline: Timeline = Timeline(), max_frames: int = 60 * FPS):
        self.timeline = timeline
        self.max_frames = max_frames
        self._chunks: deque[ReceivedChunk] = deque()
        self.late = 0  # frames skipped because their time had passed
        self.evicted = 0  # frames dropped because too many were waiting
        self.shown = -1  # index of the frame shown last
        self.end_frame = 0  # one past the last frame received

    def add(self, chunk: ReceivedChunk) -> None:
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

    def due(self, position_samples: float) -> DueFrame | None:
        """The frame to show at this clock position, if it differs from the one shown."""
        k = int(position_samples // self.timeline.samples_per_frame)
        # The clock never runs past the audio received, so k == end_frame means every sample was
        # heard: the last frame's moment is over but it must still be shown (a late tick under load
        # would otherwise skip it, and the session would never be seen to end).
        k = min(k, self.end_frame - 1)
        if k <= self.shown:
            return None
        while self._chunks and self._chunks[0].end_frame <= k:
            self._chunks.popleft()
        chunk = self._chunks[0] if self._chunks else None
        if chunk is None or chunk.first_frame > k:
            return None
        if self.shown >= 0:
            self.late += max(0, k - self.shown - 1)
        self.shown = k
        offset = k - chunk.first_frame
        return DueFrame(k, chunk.frames[offset], chunk.capture_t0 + offset / self.timeline.fps)
