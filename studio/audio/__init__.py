"""Audio for the studio: sources (microphone, file, text-to-speech), output and the playout clock.

Qt-free: sources call a plain `AudioSink` callable from their own threads.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

AudioSink = Callable[[np.ndarray, float], None]  # (float32 mono 16 kHz [N], capture monotonic time)
