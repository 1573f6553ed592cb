"""Real audio streams through a private PulseAudio null sink: playback, microphone capture, and
the playout clock's A/V sync (a frame is shown when its audio is heard, within one frame)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from avkit.timeline import Timeline
from studio.audio.audio_output import DeviceOutput
from studio.audio.playout_clock import PlayoutClock
from studio.engine_link.received_chunk import ReceivedChunk
from studio.frame_schedule import FrameSchedule

pytestmark = pytest.mark.audio
RATE = 16000
FRAME_S = 1 / 25


@pytest.fixture
def sound(pulse_server):
    """sounddevice re-initialised so it sees the PulseAudio server started for the tests."""
    import sounddevice as sd
    sd._terminate()
    sd._initialize()
    assert sd.query_devices(), "PortAudio sees no device even with PulseAudio running"
    yield sd


class Recorder:
    """Collects what the Microphone hands its sink: (capture_t, pcm) blocks."""

    def __init__(self):
        self.blocks: list[tuple[float, np.ndarray]] = []
        self.lock = threading.Lock()

    def __call__(self, pcm: np.ndarray, capture_t: float) -> None:
        with self.lock:
            self.blocks.append((capture_t, pcm.copy()))

    def audio(self) -> tuple[np.ndarray, np.ndarray]:
        """(samples [N], capture time of each sample [N])."""
        with self.lock:
            blocks = list(self.blocks)
        pcm = np.concatenate([b for _, b in blocks])
        times = np.concatenate([t + np.arange(len(b)) / RATE for t, b in blocks])
        return pcm, times


def _play_all(clock: PlayoutClock, probe, timeout: float = 6.0) -> float:
    """Play everything queued on `clock` into the sink; returns the highest probe() seen meanwhile."""
    out = DeviceOutput()
    out.attach(clock)
    out.start()
    deadline = time.monotonic() + timeout
    highest = 0.0
    while clock.ring.available() and time.monotonic() < deadline:
        time.sleep(0.02)
        highest = max(highest, probe())
    time.sleep(0.3 + out.latency_s)
    out.close()
    return highest


def test_playback_and_microphone_capture_through_the_sink(sound):
    from studio.audio.microphone import Microphone
    rec = Recorder()
    mic = Microphone(rec)
    mic.start()
    clock = PlayoutClock(start_margin_s=0.05)
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE).astype(np.float32)
    clock.push(tone)
    clock.finished = True
    peak_level = _play_all(clock, lambda: mic.level)
    mic.close()
    assert clock.played == RATE and clock.underruns == 0
    pcm, times = rec.audio()
    loud = np.abs(pcm) > 0.25
    assert loud.sum() > 0.5 * RATE, "the tone played into the sink did not come back from its monitor"
    segment = pcm[np.argmax(loud):][:8192]
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
    peak_hz = np.argmax(spectrum) * RATE / len(segment)
    assert abs(peak_hz - 440) < 10
    assert 0.3 < peak_level <= 1.0  # the input meter saw the tone
    assert abs(times[-1] - time.monotonic()) < 2.0  # capture times are recent monotonic times


def test_frame_is_shown_when_its_audio_is_heard(sound):
    """Clicks in frames 20, 40, 60, 80: each frame must be shown when its click is heard (recorded
    back from the sink's monitor), within about one frame period."""
    from studio.audio.microphone import Microphone
    timeline = Timeline()
    spf = timeline.samples_per_frame
    frames, clicks = 100, (20, 40, 60, 80)
    audio = np.zeros(frames * spf, np.float32)
    for k in clicks:
        audio[k * spf:k * spf + spf // 2] = 0.8
    schedule = FrameSchedule(timeline)
    schedule.add(ReceivedChunk(0, np.zeros((frames, 2, 2, 3), np.uint8), audio, 0.0, False, {}, 0.0, 0.0))
    rec = Recorder()
    mic = Microphone(rec)
    mic.start()
    time.sleep(0.3)
    clock = PlayoutClock(start_margin_s=0.1)
    clock.push(audio)
    clock.finished = True
    out = DeviceOutput()
    out.attach(clock)
    out.start()
    shown = {}
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and schedule.shown < frames - 1:
        due = schedule.due(clock.position())
        if due is not None and due.index in clicks:
            shown[due.index] = time.monotonic()
        time.sleep(0.002)
    time.sleep(0.3)
    out.close()
    mic.close()
    assert sorted(shown) == list(clicks), "the playout clock skipped a click's frame"
    pcm, times = rec.audio()
    loud = np.abs(pcm) > 0.4
    onsets = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
    heard = [times[i] for i in onsets]
    assert len(heard) == len(clicks), f"heard {len(heard)} clicks back from the sink, expected {len(clicks)}"
    offsets_ms = [1e3 * (shown[k] - t) for k, t in zip(clicks, heard)]
    print(f"output latency {out.latency_s * 1e3:.0f} ms (clock used {clock.output_latency_s * 1e3:.0f}), "
          f"input latency {mic.latency_s * 1e3:.0f} ms, shown - heard: "
          + ", ".join(f"{o:+.0f}" for o in offsets_ms) + " ms")
    # The first click falls in PulseAudio's start-up stall of the monitor stream (its capture time
    # is unreliable); the monitor's ~35 ms fragments quantize the others, hence the 10 ms margin.
    assert abs(float(np.median(offsets_ms[1:]))) < 1e3 * FRAME_S + 10
