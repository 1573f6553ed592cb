"""Paces PCM to an audio sink in real time, in small blocks, on its own thread.

Shared by the audio-file player and text-to-speech: both play a decoded clip as if it were being
spoken now, so the engine sees the same live timeline it gets from a microphone.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from avkit.timeline import SAMPLE_RATE
from studio.audio import AudioSink

BLOCK_S = 0.02


class ClipPlayer:
    """Play / pause / seek / loop over a mono float32 clip [N] at 16 kHz, feeding `sink`."""

    def __init__(self, sink: AudioSink, sample_rate: int = SAMPLE_RATE, on_end=None):
        self._sink = sink
        self.sample_rate = sample_rate
        self.on_end = on_end  # called (on the feeder thread) when the clip ends without looping
        self._clip = np.zeros(0, np.float32)
        self._pos = 0
        self.loop = False
        self._playing = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- state -----------------------------------------------------------------------------------
    @property
    def duration_s(self) -> float:
        return len(self._clip) / self.sample_rate

    @property
    def position_s(self) -> float:
        return self._pos / self.sample_rate

    @property
    def playing(self) -> bool:
        return self._playing.is_set()

    def set_clip(self, pcm: np.ndarray) -> None:
        with self._lock:
            self._clip = np.ascontiguousarray(pcm, np.float32)
            self._pos = 0

    # -- transport -------------------------------------------------------------------------------
    def play(self) -> None:
        if not len(self._clip):
            return
        with self._lock:
            if self._pos >= len(self._clip):
                self._pos = 0
        self._playing.set()
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="clip-player", daemon=True)
            self._thread.start()

    def pause(self) -> None:
        self._playing.clear()

    def seek(self, seconds: float) -> None:
        with self._lock:
            self._pos = int(min(max(seconds, 0.0), self.duration_s) * self.sample_rate)

    def close(self) -> None:
        self._stop.set()
        self._playing.set()  # wake the thread so it sees the stop
        if self._thread is not None:
            self._thread.join(1.0)

    def _next_block(self, n: int) -> tuple[np.ndarray | None, bool]:
        with self._lock:
            if self._pos >= len(self._clip):
                if not self.loop:
                    return None, True
                self._pos = 0
            block = self._clip[self._pos:self._pos + n]
            self._pos += len(block)
            return block, False

    def _run(self) -> None:
        n = int(BLOCK_S * self.sample_rate)
        next_t = time.monotonic()
        while not self._stop.is_set():
            if not self._playing.is_set():
                self._playing.wait()
                next_t = time.monotonic()
                continue
            block, ended = self._next_block(n)
            if ended:
                self._playing.clear()
                if self.on_end is not None:
                    self.on_end()
                continue
            self._sink(block, time.monotonic())
            next_t += len(block) / self.sample_rate
            delay = next_t - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -0.5:  # the machine stalled: do not burst to catch up
                next_t = time.monotonic()
