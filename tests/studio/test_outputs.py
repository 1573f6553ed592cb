"""Studio outputs: virtual camera (through a registered fake pyvirtualcam backend), crash-safe
recorder, and the Session menu's hotkeys."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import pyvirtualcam

from avkit.mp4_writer import Mp4Writer, probe_mp4, read_mp4_audio, read_mp4_frames
from studio.outputs.recorder import Recorder
from studio.outputs.virtual_camera import (
    LINUX_HINT,
    OBS_HINT,
    VirtualCamera,
    VirtualCameraConfig,
    VirtualCameraUnavailable,
    letterbox,
    setup_hint,
)

from .conftest import ROOT
from .fake_camera import FakeCameraBackend

CONFIG = VirtualCameraConfig(width=160, height=120, fps=20, backend="fake")


@pytest.fixture
def camera():
    cam = VirtualCamera(CONFIG, source_fps=25)
    yield cam, FakeCameraBackend.instances[-1]
    cam.close()
    cam.wait(5)


def _wait_for(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_letterbox_keeps_aspect_with_black_bars():
    wide = np.full((32, 64, 3), 200, np.uint8)  # 2:1 into 4:3 -> 160x80 band, 20-row bars
    out = letterbox(wide, 160, 120)
    assert out.shape == (120, 160, 3) and out.dtype == np.uint8
    assert (out[:20] == 0).all() and (out[100:] == 0).all() and (out[20:100] == 200).all()
    tall = np.full((100, 50, 3), 90, np.uint8)  # 1:2 into 4:3 -> 60x120 band, 50-column bars
    out = letterbox(tall, 160, 120)
    assert (out[:, :50] == 0).all() and (out[:, 110:] == 0).all() and (out[:, 50:110] == 90).all()


def test_camera_sends_each_presented_frame_letterboxed_and_repeats_the_last(camera):
    cam, backend = camera
    assert (backend.width, backend.height, backend.fps) == (160, 120, 20)
    assert backend.fourcc == pyvirtualcam.util.encode_fourcc(pyvirtualcam.PixelFormat.RGB.value)
    _wait_for(lambda: len(backend.frames()) >= 3)
    assert (backend.frames()[-1][1] == 0).all()  # black (repeated) before the first presented frame
    red = np.zeros((32, 64, 3), np.uint8)
    red[..., 0] = 255  # RGB order: red must stay in channel 0
    cam.show(7, red)
    _wait_for(lambda: cam.sent_index == 7)
    _wait_for(lambda: sum((f[60, 80, 0] == 255) for _, f in backend.frames()) >= 4)  # then repeated
    last = backend.frames()[-1][1]
    assert last.shape == (120, 160, 3) and last.dtype == np.uint8
    assert (last[20:100, :, 0] == 255).all() and (last[20:100, :, 1:] == 0).all()
    assert (last[:20] == 0).all() and (last[100:] == 0).all()


def test_camera_sends_what_is_presented_never_what_merely_arrived(camera):
    cam, backend = camera
    frames = np.zeros((3, 32, 64, 3), np.uint8)
    frames[:, :, :, 1] = np.array([10, 20, 30], np.uint8)[:, None, None]  # frame k: green = 10 (k + 1)
    assert not hasattr(cam, "write")  # arriving chunks never reach the camera directly
    for k in range(3):
        cam.show(k, frames[k])
        _wait_for(lambda k=k: cam.sent_index == k)
    greens = [int(f[60, 80, 1]) for _, f in backend.frames()]
    shown = [g for i, g in enumerate(greens) if g and (i == 0 or greens[i - 1] != g)]
    assert shown == [10, 20, 30]  # each presented frame went out, in order


def test_no_device_gives_setup_guidance():
    assert "sudo modprobe v4l2loopback exclusive_caps=1" in setup_hint("linux")
    assert "OBS" in setup_hint("win32") and setup_hint("darwin") == OBS_HINT
    native = "v4l2loopback" if sys.platform.startswith("linux") else "obs"  # the OS's real backend
    with pytest.raises(VirtualCameraUnavailable) as err:  # this machine has no v4l2loopback device
        VirtualCamera(VirtualCameraConfig(width=160, height=120, fps=20, backend=native))
    message = str(err.value)
    assert "\n" not in message and (LINUX_HINT in message if sys.platform.startswith("linux") else OBS_HINT in message)
    with pytest.raises(VirtualCameraUnavailable, match="unknown virtual camera backend 'nope'"):
        VirtualCamera(VirtualCameraConfig(backend="nope"))


def test_recorder_finishes_a_regular_mp4(tmp_path):
    rec = Recorder(tmp_path / "out.mp4")
    for i in range(3):
        rec.write(np.full((25, 48, 64, 3), 60 * i, np.uint8), np.zeros(25 * 640, np.float32))
    errors = []
    rec.close(errors.append)
    rec.wait(30)
    assert errors == [""]
    info = probe_mp4(tmp_path / "out.mp4")
    assert info.video_frames == 75 and (info.width, info.height) == (64, 48) and info.audio_samples >= 75 * 640
    data = (tmp_path / "out.mp4").read_bytes()
    assert b"moof" not in data and data.index(b"moov") < data.index(b"mdat")  # remuxed: index up front
    assert not list(tmp_path.glob("*.partial-*"))


def test_killed_recording_keeps_all_but_the_last_second(tmp_path):
    script = f"""
import os, signal, time
import numpy as np
from studio.outputs.recorder import Recorder
rec = Recorder({str(tmp_path / 'rec.mp4')!r})
for i in range(4):  # 100 frames = 4 s in 25-frame chunks
    rec.write(np.full((25, 48, 64, 3), 50 * i, np.uint8), np.zeros(25 * 640, np.float32))
while rec.frames_written < 100:
    time.sleep(0.01)
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT, timeout=60, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-500:]
    partial = next(tmp_path.glob("rec.partial-*.mp4"))
    info = probe_mp4(partial)
    assert 75 <= info.video_frames <= 100 and info.audio_samples >= 50 * 640
    frames = read_mp4_frames(partial)
    assert abs(int(frames[:25].mean()) - 0) <= 3 and abs(int(frames[50:75].mean()) - 100) <= 3


def test_session_menu_hotkeys(studio, qtbot, monkeypatch):
    expected = {"session": "Ctrl+Return", "mute": "Ctrl+M", "record": "Ctrl+R", "virtual_camera": "Ctrl+Shift+V"}
    menu = next(a.menu() for a in studio.menuBar().actions() if a.text() == "&Session")
    in_menu = set(menu.actions())
    for name, keys in expected.items():
        action = studio.actions[name]
        assert action.shortcut().toString() == keys and action in in_menu
    studio.store.setValue("virtual_camera/backend", "fake")
    studio.store.setValue("virtual_camera/width", 160)
    studio.store.setValue("virtual_camera/height", 120)
    studio.actions["virtual_camera"].trigger()
    assert studio.model.outputs.virtual_camera is not None and studio.actions["virtual_camera"].isChecked()
    assert studio.model.outputs.virtual_camera in studio.model.outputs.fanout.outputs
    assert (FakeCameraBackend.instances[-1].width, FakeCameraBackend.instances[-1].height) == (160, 120)
    studio.actions["virtual_camera"].trigger()
    assert studio.model.outputs.virtual_camera is None and not studio.actions["virtual_camera"].isChecked()
    studio.store.setValue("virtual_camera/backend", "v4l2loopback")  # no device here: a problem, no crash
    studio.actions["virtual_camera"].trigger()
    assert studio.model.outputs.virtual_camera is None and not studio.actions["virtual_camera"].isChecked()
    assert studio.model.problems.get("virtual_camera") is not None
    studio.actions["record"].trigger()  # no frames yet: a recorder waits for the first chunk
    recorder = studio.model.outputs.recorder
    assert recorder is not None and recorder in studio.model.outputs.fanout.outputs
    assert studio.actions["record"].isChecked() and str(recorder.path.parent) == studio.settings.recordings_folder
    studio.actions["record"].trigger()
    assert studio.model.outputs.recorder is None and not studio.actions["record"].isChecked()
    recorder.wait(10)
    assert "nothing was recorded" in recorder.error and not recorder.path.exists()


def test_remux_trims_aac_priming_like_a_regular_mp4(tmp_path):
    """The recorder's file (fragmented, then remuxed) trims the AAC priming like a regular one."""
    pcm = np.zeros(40 * 1024, np.float32)
    pcm[16000] = 1.0  # a click at exactly 1 s
    with Mp4Writer(tmp_path / "plain.mp4", 64, 48) as plain:
        plain.write_frames(np.zeros((50, 48, 64, 3), np.uint8))
        plain.write_audio(pcm)
    rec = Recorder(tmp_path / "rec.mp4")
    rec.write(np.zeros((50, 48, 64, 3), np.uint8), pcm)
    rec.close(lambda _error: None)
    rec.wait(30)
    clicks = [int(np.argmax(np.abs(read_mp4_audio(tmp_path / name)))) for name in ("plain.mp4", "rec.mp4")]
    assert abs(clicks[0] - 16000) < 200 and abs(clicks[1] - clicks[0]) < 50


MARKS = (30, 55)  # frames that flash white while their first 20 ms of audio carry a 1 kHz burst


def _marked_chunks() -> list[tuple[np.ndarray, np.ndarray]]:
    """100 frames (4 s) in 25-frame chunks; each mark is a flash and a burst at the same timeline position."""
    frames = np.zeros((100, 48, 64, 3), np.uint8)
    audio = np.zeros(100 * 640, np.float32)
    burst = 0.8 * np.sin(2 * np.pi * 1000 * np.arange(320) / 16000).astype(np.float32)
    for k in MARKS:
        frames[k] = 255
        audio[k * 640:k * 640 + 320] = burst
    return [(frames[i:i + 25], audio[i * 640:(i + 25) * 640]) for i in range(0, 100, 25)]


def _marks_in(path) -> tuple[list[float], list[float], list[int]]:
    """(flash times by pts, burst onset times by pts, burst onsets as decoded-sample indexes)."""
    import av
    with av.open(str(path)) as container:
        flashes = [float(f.time) for f in container.decode(video=0) if f.to_ndarray(format="rgb24").mean() > 128]
    with av.open(str(path)) as container:
        decoded = [(float(f.time), f.sample_rate, f.to_ndarray().reshape(-1)) for f in container.decode(audio=0)]
    pcm = np.concatenate([x for _, _, x in decoded])
    times = np.concatenate([t + np.arange(len(x)) / rate for t, rate, x in decoded])
    loud = np.flatnonzero(np.abs(pcm) > 0.3)
    onsets = [int(i) for n, i in enumerate(loud) if n == 0 or i - loud[n - 1] > 2000]
    return flashes, [float(times[i]) for i in onsets], onsets


def test_stopped_and_crashed_recordings_keep_flash_and_burst_together(tmp_path):
    """A flash frame and an audio burst at the same timeline position must play together (pts)
    and sit at that position (the AAC priming trimmed), in a stopped recording and a killed one."""
    rec = Recorder(tmp_path / "stopped.mp4")
    for frames, audio in _marked_chunks():
        rec.write(frames, audio)
    rec.close(lambda _error: None)
    rec.wait(30)
    script = f"""
import os, signal, time, sys
sys.path.insert(0, {str(ROOT)!r})
from tests.studio.test_outputs import Recorder, _marked_chunks
rec = Recorder({str(tmp_path / 'crashed.mp4')!r})
for frames, audio in _marked_chunks():
    rec.write(frames, audio)
while rec.frames_written < 100:
    time.sleep(0.01)
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT, timeout=60, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-500:]
    leftover = next(tmp_path.glob("crashed.partial-*.mp4"))
    measured = {name: _marks_in(path) for name, path in (("stopped", tmp_path / "stopped.mp4"),
                                                         ("crash leftover", leftover))}
    offsets = {}
    for name, (flashes, bursts, onsets) in measured.items():
        offsets[name] = [1e3 * (b - f) for f, b in zip(flashes, bursts)]
        print(f"{name}: flashes at {flashes} s, bursts at {bursts} s (pts) = samples {onsets}; "
              f"audio - video {', '.join(f'{o:+.1f}' for o in offsets[name])} ms")
    for name, (flashes, bursts, onsets) in measured.items():
        assert len(flashes) == len(bursts) == len(MARKS), (name, flashes, bursts)
        for k, flash, onset in zip(MARKS, flashes, onsets):
            assert abs(flash - k / 25) < 1 / 25, f"{name}: frame {k} shows at {flash:.3f} s"
            assert abs(onset - k * 640) < 640, f"{name}: the burst of frame {k} is decoded at sample {onset}"
        assert all(abs(o) < 40 for o in offsets[name]), f"{name}: audio and video {offsets[name]} ms apart"
    assert all(abs(a - b) < 40 for a, b in zip(offsets["stopped"], offsets["crash leftover"]))
