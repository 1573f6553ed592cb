"""The recorder when the disk fills up: it stops, says so in one line, keeps every whole second.

The disk fills for real, without root: the recording process runs under RLIMIT_FSIZE (SIGXFSZ
ignored), so its writes fail with EFBIG once the file reaches the limit, mid-fragment; or the
recorder's partial file is a name for /dev/full, where every write fails with ENOSPC.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

from avkit.mp4_writer import probe_mp4, read_mp4_frames

from .conftest import ASSETS, ROOT, write_wav

LIMIT = 200 * 1024  # bytes: about 5 s of the noisy 128x96 test video (40 KB a second)
STUDIO_LIMIT = 400 * 1024  # about 3 s of the puppet's 512x512 video (6 s make 750 KB)
ONE_LINE_ADVICE = "free some disk space or choose another folder"


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


RECORD_UNTIL_FULL = """
import json, sys, time
import numpy as np
from studio.outputs.recorder import Recorder

rec = Recorder(sys.argv[1])
rng = np.random.default_rng(0)
for second in range(30):  # second s: a noise texture around grey 40 + 8*s, panning 1 px a frame
    texture = (40 + 8 * second + rng.integers(-12, 13, (96, 128 + 25, 3))).astype(np.uint8)
    frames = np.stack([texture[:, i:i + 128] for i in range(25)])  # one keyframe (fragment) a second
    rec.write(frames, np.zeros(25 * 640, np.float32))
deadline = time.monotonic() + 60
while not rec.failed and time.monotonic() < deadline:
    time.sleep(0.01)
written = rec.frames_written
rec.write(np.zeros((25, 96, 128, 3), np.uint8), np.zeros(25 * 640, np.float32))  # after the failure
closed = []
rec.close(closed.append)
rec.wait(30)
print(json.dumps({"failed": rec.failed, "error": rec.error, "closed": closed,
                  "written_at_failure": written, "written_after": rec.frames_written,
                  "alive": rec._thread.is_alive()}))
"""


def test_recorder_stops_on_a_full_disk_and_keeps_every_whole_second(tmp_path):
    path = tmp_path / "rec.mp4"
    proc = subprocess.run([sys.executable, "-c", RECORD_UNTIL_FULL, str(path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, preexec_fn=_limit_file_size(LIMIT), check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]  # no crash
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    error = report["error"]
    assert report["failed"] and report["closed"] == [error] and not report["alive"]
    assert "\n" not in error and error.startswith("recording stopped, the disk is full (File too large)")
    assert str(path) in error and error.endswith(ONE_LINE_ADVICE)
    assert report["written_after"] == report["written_at_failure"] < 30 * 25  # nothing more after
    # What was recorded up to the last whole fragment (1 s each) is a playable file at the target.
    assert [p.name for p in tmp_path.iterdir()] == ["rec.mp4"], "partial or temporary files left behind"
    assert path.stat().st_size <= LIMIT
    info = probe_mp4(path)
    seconds = info.video_frames // 25
    assert info.video_frames == seconds * 25 and seconds >= 2, info
    assert f"the first {seconds} s are in" in error
    assert info.audio_rate == 16000 and info.audio_samples >= (seconds - 1) * 16000
    frames = read_mp4_frames(path).reshape(seconds, 25, -1).mean(axis=2)
    np.testing.assert_allclose(frames, 40 + np.arange(seconds)[:, None] * 8 + np.zeros((1, 25)), atol=2)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_disk_full_before_the_first_fragment_keeps_nothing_and_stops_the_recording_in_the_studio(
        studio, qtbot, tmp_path):
    """ENOSPC at the first write: the studio stops recording by itself and says why, in the status
    bar and in a problem that stays."""
    path = tmp_path / "rec.mp4"
    partial = tmp_path / f"rec.partial-{os.getpid()}.mp4"  # the recorder's working file, on a full "disk"
    partial.symlink_to("/dev/full")
    model = studio.model
    assert model.outputs.start_recording(path) == ""
    assert studio.actions["record"].isChecked() and studio.controls.record_button.isChecked()
    recorder = model.outputs.recorder
    for _ in range(4):  # the first fragment (1 s) is written once the next one starts
        recorder.write(np.full((25, 96, 128, 3), 90, np.uint8), np.zeros(25 * 640, np.float32))
    qtbot.waitUntil(lambda: model.outputs.recorder is None, timeout=20_000)
    assert not studio.actions["record"].isChecked() and not studio.controls.rec_lamp.isVisibleTo(studio)
    recorder.wait(10)
    assert recorder.failed
    message = recorder.error
    assert "\n" not in message and "the disk is full (No space left on device)" in message
    assert "nothing could be kept" in message and message.endswith(ONE_LINE_ADVICE)
    qtbot.waitUntil(lambda: studio.statusBar().currentMessage() == message, timeout=10_000)
    assert message[1:] in model.problems.get("recording").text  # as a sentence
    assert [card.problem.key for card in studio.problems.cards] == ["recording"] and studio.problems.isVisibleTo(studio)
    assert list(tmp_path.glob("rec*")) == []  # no empty or broken file, and the partial name is gone


def test_studio_recording_to_a_full_disk_quits_with_one_line_and_a_playable_file(tmp_path, speech):
    """`flashtalk-studio --record --quit-when-done` with a real engine: exit 1, one line, no crash."""
    audio = write_wav(tmp_path / "talk.wav", speech[: 6 * 16000])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "rec.mp4"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-m", "studio", "--settings", str(tmp_path / "s.ini"),
                           "--portrait", str(ASSETS / "portrait.png"), "--audio-file", str(audio),
                           "--record", str(out), "--quit-when-done"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env, preexec_fn=_limit_file_size(STUDIO_LIMIT), check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "disk is full" in line]
    assert len(lines) == 1 and lines[0].startswith("flashtalk-studio: recording stopped, the disk is full")
    assert str(out) in lines[0] and lines[0].endswith(ONE_LINE_ADVICE)
    assert "Traceback" not in proc.stderr
    assert [p.name for p in out_dir.iterdir()] == ["rec.mp4"]
    info = probe_mp4(out)
    assert info.video_frames >= 25 and info.video_frames % 25 == 0 and info.video_frames < 6 * 25
