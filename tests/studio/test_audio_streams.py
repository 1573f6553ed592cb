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
from studio.frame_schedule import FrameSchedule, ReceivedChunk

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
    # capture times follow the wall clock: no drift over the recording, and they are recent
    assert abs((times[-1] - times[0]) - len(pcm) / RATE) < 0.1
    assert abs(times[-1] - time.monotonic()) < 2.0


def test_frame_is_shown_when_its_audio_is_heard(sound):
    """A click in frame 30's audio must be heard within one frame period of frame 30 being shown."""
    from studio.audio.microphone import Microphone
    timeline = Timeline()
    spf = timeline.samples_per_frame
    frames, click_frame = 60, 30
    audio = np.zeros(frames * spf, np.float32)
    audio[click_frame * spf:(click_frame + 1) * spf] = 0.8
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
    shown_t = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and schedule.shown < frames - 1:
        due = schedule.due(clock.position())
        if due is not None and due.index == click_frame:
            shown_t = time.monotonic()
        time.sleep(0.002)
    time.sleep(0.3)
    out.close()
    mic.close()
    assert shown_t is not None, "the playout clock never reached the click's frame"
    pcm, times = rec.audio()
    onset = np.argmax(np.abs(pcm) > 0.4)
    assert np.abs(pcm[onset]) > 0.4, "the click never came back from the sink's monitor"
    heard_t = times[onset]
    print(f"output latency {out.latency_s * 1e3:.0f} ms (clock used {clock.output_latency_s * 1e3:.0f}), "
          f"input latency {mic.latency_s * 1e3:.0f} ms, shown - heard {1e3 * (shown_t - heard_t):+.0f} ms")
    assert abs(shown_t - heard_t) < FRAME_S, f"frame shown {1e3 * (shown_t - heard_t):+.0f} ms from its audio"
