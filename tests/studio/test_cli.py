"""`flashtalk-studio` as a script: record a file session to MP4 and quit; one-line usage errors."""
from __future__ import annotations

import os
import subprocess
import sys

from avkit.mp4_writer import probe_mp4

from .conftest import ASSETS, ROOT

ENV = dict(os.environ, QT_QPA_PLATFORM="offscreen")


def studio_cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=ENV)


def test_record_quit_when_done_writes_a_valid_mp4(tmp_path, short_speech):
    out = tmp_path / "out.mp4"
    done = studio_cli("--settings", str(tmp_path / "s.ini"), "--portrait", str(ASSETS / "portrait.png"),
                      "--audio-file", str(short_speech), "--record", str(out), "--quit-when-done")
    assert done.returncode == 0, done.stderr[-2000:]
    info = probe_mp4(out)
    assert info.video_frames == 63  # ceil(2.5 s * 25 fps): every frame of the file, none lost
    assert info.audio_rate == 16000 and abs(info.audio_samples - 63 * 640) < 1024
    assert info.width > 0 and info.height > 0
    assert not list(tmp_path.glob("*.partial*"))


def test_usage_mistakes_are_one_line(tmp_path):
    done = studio_cli("--portrait", str(tmp_path / "missing.png"))
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "no such file" in done.stderr
    done = studio_cli("--quit-when-done")
    assert done.returncode == 2 and "--audio-file" in done.stderr
