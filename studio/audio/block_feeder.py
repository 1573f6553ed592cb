"""Paces PCM to an audio sink in real time, in small blocks, on its own thread.

Shared by the audio-file player and text-to-speech: both play a source (studio.audio.pcm_source)
as if it were being spoken now, so the engine sees the same live timeline it gets from a
microphone.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from avkit.timeline import SAMPLE_RATE
from studio.audio import AudioSink
from studio.audio.pcm_source import PcmSource

BLOCK_S = 0.02


class ClipPlayer:
    """Play / pause / seek / loop over one PcmSource at 16 kHz, feeding `sink`."""

    def __init__(self, sink: AudioSink, sample_rate: int = SAMPLE_RATE, on_end=None):
        self._sink = sink
        self.sample_rate = sample_rate
        self.on_end = on_end  # called (on the feeder thread) when the source ends without looping
        self._source: PcmSource | None = None
        self._pos = 0  # samples into the source of the next block
        self._generation = 0  # bumped by every seek or new source: a block read before it is stale
        self.loop = False
        self._playing = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- state -----------------------------------------------------------------------------------
    @property
    def duration_s(self) -> float:
        source = self._source
        return source.duration_s if source is not None else 0.0

    @property
    def position_s(self) -> float:
        return self._pos / self.sample_rate

    @property
    def playing(self) -> bool:
        return self._playing.is_set()

    @property
    def loaded(self) -> bool:
        return self._source is not None

    def set_source(self, source: PcmSource | None) -> None:
        """Play from `source` from now on (None: nothing); the previous source is closed."""
        self.pause()
        with self._lock:
            old, self._source = self._source, source
            self._pos = 0
            self._generation += 1
        if old is not None:
            old.close()

    # -- transport -------------------------------------------------------------------------------
    def play(self) -> None:
        source = self._source
        if source is None:
            return
        if source.duration_s and self._pos >= source.duration_s * self.sample_rate:
            self.seek(0.0)  # played to the end: Play starts it again
        self._playing.set()
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="clip-player", daemon=True)
            self._thread.start()

    def pause(self) -> None:
        self._playing.clear()

    def seek(self, seconds: float) -> None:
        with self._lock:
            source = self._source
            if source is None:
                return
            seconds = max(seconds, 0.0)
            if source.duration_s:
                seconds = min(seconds, source.duration_s)
            source.seek(seconds)
            self._pos = int(seconds * self.sample_rate)
            self._generation += 1

    def close(self) -> None:
        self._stop.set()
        self._playing.set()  # wake the thread so it sees the stop
        if self._thread is not None:
            self._thread.join(1.0)
        self.set_source(None)

    def _next_block(self, n: int) -> tuple[np.ndarray | None, bool]:
        """(block, ended): a block to send (empty: none ready yet), or the source's end."""
        with self._lock:
            source, generation = self._source, self._generation
        if source is None:
            return None, True
        block = source.read(n)  # may wait briefly for a decoder: never under the lock
        with self._lock:
            if generation != self._generation:  # a seek or a new source came while reading
                return np.zeros(0, np.float32), False
            if block is None:
                if not self.loop:
                    return None, True
                source.seek(0.0)
                self._pos = 0
                self._generation += 1
                return np.zeros(0, np.float32), False
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
            if not len(block):  # the decoder is behind (or a seek): resume in real time once it delivers
                next_t = time.monotonic()
                continue
            self._sink(block, time.monotonic())
            next_t += len(block) / self.sample_rate
            delay = next_t - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -0.5:  # the machine stalled: do not burst to catch up
                next_t = time.monotonic()
