"""The audio one chunk is made from, and the audio its frames show, on the session's one timeline.

A chunk of `frames` frames starting at frame `first` shows samples [first*spf, (first+frames)*spf).
The backend makes it from its context window: the `context_samples` that end at the chunk's last
sample, zeros before the session's start and past what has arrived. LiveSession cuts every chunk
this way, and so does `flashtalk bench`, so a benchmark feeds a backend what a session would.
"""
from __future__ import annotations

import numpy as np

from avkit.timeline import Timeline
from engine.session.audio_ring import AudioRing


def chunk_end(first: int, frames: int, timeline: Timeline) -> int:
    """One past the last sample that frames [first, first + frames) show."""
    return timeline.frame_start_sample(first + frames)


def context_window(ring: AudioRing, first: int, frames: int, context_samples: int,
                   timeline: Timeline) -> np.ndarray:
    """float32 [context_samples]: what the backend generates frames [first, first + frames) from."""
    return ring.window(chunk_end(first, frames, timeline), context_samples)


def shown_audio(ring: AudioRing, first: int, frames: int, timeline: Timeline) -> np.ndarray:
    """float32 [frames * spf]: the samples frames [first, first + frames) present."""
    return ring.window(chunk_end(first, frames, timeline), frames * timeline.samples_per_frame)
