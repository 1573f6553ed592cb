"""Audio outputs that drive the playout clock: a sound card, or a monotonic-time pacer.

Both call `PlayoutClock.fill()` with a preallocated buffer; the clock they drive can be swapped
between sessions (`attach`) while the output keeps running.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from avkit.timeline import SAMPLE_RATE
from studio.audio.playout_clock import PlayoutClock
from studio.audio.pulse import PREFIX as PULSE_PREFIX
from studio.audio.pulse import PulseOutput, PulseOutputError, call_microphone_hint

BLOCK = 320  # samples per callback (20 ms at 16 kHz)


class PacedOutput:
    """No sound card: consumes audio at 16 kHz of monotonic time on its own thread (CI, headless)."""

    name = "no audio device (silent clock)"

    def __init__(self, sample_rate: int = SAMPLE_RATE, period_s: float = 0.005):
        self.sample_rate = sample_rate
        self._clock: PlayoutClock | None = None
        self._buf = np.zeros(sample_rate, np.float32)  # up to 1 s per step
        self._period = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paced-audio-output", daemon=True)

    def attach(self, clock: PlayoutClock | None) -> None:
        if clock is not None:
            clock.output_latency_s = 0.0
        self._clock = clock

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1.0)

    def _run(self) -> None:
        last = time.monotonic()
        owed = 0.0
        while not self._stop.wait(self._period):
            now = time.monotonic()
            owed += (now - last) * self.sample_rate
            last = now
            n = min(int(owed), len(self._buf))
            owed -= n
            clock = self._clock
            if clock is not None and n:
                clock.fill(self._buf[:n], now)


class DeviceOutput:
    """A sounddevice output stream (16 kHz mono float32); its callback drives the clock."""

    def __init__(self, device: int | None = None, sample_rate: int = SAMPLE_RATE,
                 latency: str | float = "low"):
        import sounddevice as sd
        self.sample_rate = sample_rate
        self._clock: PlayoutClock | None = None
        self._stream = sd.OutputStream(samplerate=sample_rate, channels=1, dtype="float32",
                                       blocksize=BLOCK, device=device, latency=latency,
                                       callback=self._callback)
        self.name = sd.query_devices(self._stream.device)["name"]
        self.latency_s = float(self._stream.latency)

    def attach(self, clock: PlayoutClock | None) -> None:
        if clock is not None:
            clock.output_latency_s = self.latency_s
        self._clock = clock

    def start(self) -> None:
        self._stream.start()

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()

    def _callback(self, outdata, frames, time_info, status) -> None:
        mono = outdata[:, 0]
        clock = self._clock
        if clock is None:
            mono.fill(0.0)
        else:
            lag = time_info.outputBufferDacTime - time_info.currentTime
            if 0.0 < lag < 1.0:  # PortAudio's own estimate for this block, when it gives one
                clock.output_latency_s = lag
            clock.fill(mono, time.monotonic())


def open_output(device_name: str | None = None) -> tuple[PacedOutput | DeviceOutput | PulseOutput, str]:
    """The output named: a sound card, or "pulse:<sink>" (a PulseAudio sink, e.g. a virtual
    microphone for calls); the default card when none is named; the paced clock when there is none.

    Returns (output, note) where note is one line for the user ("" when there is nothing to say).
    """
    from studio.audio.devices import find_device, output_devices
    if device_name and device_name.startswith(PULSE_PREFIX):
        sink = device_name[len(PULSE_PREFIX):]
        try:
            output = PulseOutput(sink)
        except PulseOutputError as exc:
            fallback, note = open_output(None)
            return fallback, f"{exc}: playing on the default output instead" + (f"; {note}" if note else "")
        return output, call_microphone_hint(sink)
    devices = output_devices()
    if not devices:
        return PacedOutput(), "no sound output device found: playing silently on a timer clock"
    chosen = find_device(device_name, devices)
    try:
        return DeviceOutput(chosen.index if chosen else None), ""
    except Exception as exc:  # PortAudioError and friends: any device failure means "use the timer"
        return PacedOutput(), f"cannot open the sound output ({exc}): playing silently on a timer clock"
