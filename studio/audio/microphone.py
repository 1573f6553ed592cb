"""Microphone capture: a sounddevice input stream whose callback only copies into a ring.

A feeder thread takes the captured samples every 20 ms, resamples them to 16 kHz mono, measures
the level for the meter and hands them to the sink with their capture time.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from avkit.resample import StreamResampler
from studio.audio import AudioSink
from studio.audio.sample_ring import SampleRing

FEED_PERIOD_S = 0.02
RING_S = 4.0


class MicrophoneError(RuntimeError):
    """The microphone cannot be opened; one line."""


class Microphone:
    def __init__(self, sink: AudioSink, device: int | None = None):
        import sounddevice as sd
        self._sink = sink
        self.muted = False
        self.level = 0.0  # peak of the last fed block, 0..1 (read by the UI meter)
        try:
            info = sd.query_devices(device, "input")
            self.rate = int(info["default_samplerate"])
            self.name = info["name"]
            self._stream = sd.InputStream(samplerate=self.rate, channels=1, dtype="float32",
                                          device=device, callback=self._callback)
        except Exception as exc:  # PortAudioError, ValueError: no such device
            raise MicrophoneError(f"cannot open the microphone: {exc}") from None
        self.latency_s = float(self._stream.latency)
        self._ring = SampleRing(int(RING_S * self.rate))
        self._block = np.zeros(self._ring.capacity, np.float32)
        self._anchor = (0, 0.0)  # (ring count of a block's first sample, its monotonic capture time)
        self._resampler = StreamResampler(self.rate, 1)
        self.overflows = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, name="microphone-feeder", daemon=True)

    def start(self) -> None:
        self._stream.start()
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)
        self._stream.stop()
        self._stream.close()

    def _callback(self, indata, frames, time_info, status) -> None:
        now = time.monotonic()
        lag = time_info.currentTime - time_info.inputBufferAdcTime  # PortAudio: first sample's age
        if not 0.0 < lag < 1.0:  # not reported by this host API: assume the stream's latency
            lag = self.latency_s + frames / self.rate
        first = self._ring._written
        if self._ring.write(indata[:, 0]) < frames:
            self.overflows += 1
        self._anchor = (first, now - lag)

    def _feed(self) -> None:
        while not self._stop.wait(FEED_PERIOD_S):
            anchor_sample, anchor_t = self._anchor
            read_before = self._ring._read
            n = self._ring.read_into(self._block)
            if not n:
                continue
            # time the first sample of this block hit the microphone
            capture_t = anchor_t - (anchor_sample - read_before) / self.rate
            pcm = self._resampler.push(self._block[:n])
            if not len(pcm):
                continue
            self.level = float(np.abs(pcm).max())
            self._sink(np.zeros_like(pcm) if self.muted else pcm, capture_t)
