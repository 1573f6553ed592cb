"""A PulseAudio/PipeWire source as the microphone, chosen by name ("USB-Microphone").

PortAudio's ALSA host API sees only PulseAudio's default source (its "pulse" and "default"
devices), so a named source is recorded directly with libpulse's simple API, as PulseOutput
plays into a named sink. The server converts to 16 kHz mono float32 for us.
"""
from __future__ import annotations

import ctypes
import time

import numpy as np

from avkit.timeline import SAMPLE_RATE
from studio.audio import AudioSink
from studio.audio.microphone import MicrophoneError
from studio.audio.pulse import (
    PA_DEFAULT,
    PA_SAMPLE_FLOAT32LE,
    PA_STREAM_RECORD,
    BufferAttr,
    PulseOutputError,
    PulseSimpleStream,
    SampleSpec,
)

BLOCK = 320  # samples per read (20 ms at 16 kHz), as the sound-card microphone feeds them


class PulseMicrophone(PulseSimpleStream):
    """Same face as studio.audio.microphone.Microphone: start(), close(), level, muted, name."""

    def __init__(self, sink: AudioSink, source: str, label: str = "", sample_rate: int = SAMPLE_RATE):
        self._sink = sink
        self.source = source
        self.name = label or source
        self.rate = sample_rate
        self.muted = False
        self.level = 0.0  # peak of the last block, 0..1 (read by the UI meter)
        self.error = ""
        spec = SampleSpec(PA_SAMPLE_FLOAT32LE, sample_rate, 1)
        attr = BufferAttr(PA_DEFAULT, PA_DEFAULT, PA_DEFAULT, PA_DEFAULT, BLOCK * 4)  # fragsize: one block
        try:
            reason = self._open(PA_STREAM_RECORD, source, b"avatar microphone", spec, attr, "pulse-microphone")
        except PulseOutputError as exc:  # no libpulse here
            raise MicrophoneError(str(exc)) from None
        if reason:
            raise MicrophoneError(f"cannot open the microphone {self.name}: {reason}")
        self.latency_s = BLOCK / sample_rate
        self._buf = np.zeros(BLOCK, np.float32)

    def _run(self) -> None:
        error = ctypes.c_int(0)
        buf, simple, handle = self._buf, self._simple, self._handle
        while not self._stop.is_set():
            # Blocks (GIL released) until a block has been recorded: this paces the loop.
            if simple.pa_simple_read(handle, buf.ctypes.data, buf.nbytes, ctypes.byref(error)) < 0:
                self.error = f"the microphone {self.name} stopped (error {error.value})"
                return
            now = time.monotonic()
            latency_us = simple.pa_simple_get_latency(handle, ctypes.byref(error))
            if 0 < latency_us < 1_000_000:
                self.latency_s = latency_us / 1e6
            capture_t = now - self.latency_s - BLOCK / self.rate  # when the block's first sample was heard
            pcm = np.nan_to_num(buf.copy())
            self.level = float(np.abs(pcm).max())
            self._sink(np.zeros_like(pcm) if self.muted else pcm, capture_t)
