"""An audio file decoded ahead of playback on its own thread, a few seconds at most.

The player's feeder thread takes blocks from a bounded queue; the decoder thread keeps it full
and seeks when asked. A two-hour file costs the same memory as a ten-second one, and closing it
gives that memory back.
"""
from __future__ import annotations

import threading
from collections import deque

import numpy as np

from avkit.audio_decode import AudioFileError, AudioFileReader

AHEAD_S = 4.0  # decoded and waiting, at most
DECODE_BLOCK_S = 0.25  # what the decoder adds to the queue at a time
READ_WAIT_S = 0.05  # a read of an empty queue waits this long for the decoder before returning nothing


class StreamedFile:
    """A `PcmSource` over an open `AudioFileReader` (which it owns and closes)."""

    def __init__(self, reader: AudioFileReader, ahead_s: float = AHEAD_S):
        self.duration_s = reader.duration_s
        self.path = reader.path
        self.error = ""  # the file turned out damaged further in (one line)
        self.limit = int(ahead_s * reader.sample_rate)  # samples waiting, at most (plus one block)
        self._reader = reader
        self._block = int(DECODE_BLOCK_S * reader.sample_rate)
        self._cond = threading.Condition()
        self._blocks: deque[np.ndarray] = deque()
        self._held = 0
        self._seek_to: float | None = None
        self._ended = False
        self._closed = False
        self.peak_held = 0  # the most samples ever waiting (tests check the bound)
        self._thread = threading.Thread(target=self._run, name="audio-file-decoder", daemon=True)
        self._thread.start()

    @property
    def held_samples(self) -> int:
        return self._held

    def read(self, n: int) -> np.ndarray | None:
        with self._cond:
            if not self._blocks and not self._ended and not self._closed:
                self._cond.wait(READ_WAIT_S)
            if not self._blocks:
                return None if self._ended or self._closed else np.zeros(0, np.float32)
            out = np.empty(min(n, self._held), np.float32)
            filled = 0
            while filled < out.size:
                block = self._blocks[0]
                take = min(block.size, out.size - filled)
                out[filled:filled + take] = block[:take]
                filled += take
                if take == block.size:
                    self._blocks.popleft()
                else:
                    self._blocks[0] = block[take:]
            self._held -= out.size
            self._cond.notify_all()
            return out

    def seek(self, seconds: float) -> None:
        with self._cond:
            self._seek_to = seconds
            self._blocks.clear()
            self._held = 0
            self._ended = False
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._blocks.clear()
            self._held = 0
            self._cond.notify_all()
        self._thread.join(2.0)

    def _run(self) -> None:
        reader = self._reader
        try:
            while True:
                with self._cond:
                    while not self._closed and self._seek_to is None and (self._held >= self.limit or self._ended):
                        self._cond.wait()
                    if self._closed:
                        return
                    seek, self._seek_to = self._seek_to, None
                try:
                    if seek is not None:
                        reader.seek(seek)
                    block = reader.read(self._block)
                except AudioFileError as exc:
                    with self._cond:
                        self.error, self._ended = str(exc), True
                        self._cond.notify_all()
                    continue
                with self._cond:
                    if self._seek_to is not None or self._closed:  # a seek came meanwhile: this block is stale
                        continue
                    if block.size:
                        self._blocks.append(block)
                        self._held += block.size
                        self.peak_held = max(self.peak_held, self._held)
                    else:
                        self._ended = True
                    self._cond.notify_all()
        finally:
            reader.close()
