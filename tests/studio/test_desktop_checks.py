"""`flashtalk-studio --doctor` on this machine, for real: the desktop's checks with the studio's
own probes, the report and its JSON (the virtual microphone against PulseAudio:
test_virtual_microphone_check.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio.audio.tts import espeak_binary, install_command
from studio.desktop_checks import check_display, check_microphone, check_speech, check_virtual_camera
from studio.outputs.virtual_camera import LINUX_HINT, setup_hint

from .conftest import ROOT

ENV = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}


def studio_doctor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio", "--doctor", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=ENV)


def test_the_doctor_runs_without_a_display_and_lists_the_desktop_checks():
    done = studio_doctor("json")
    assert done.returncode == 0, done.stderr
    checks = json.loads(done.stdout)["checks"]
    assert [c["name"] for c in checks] == ["audio", "virtual microphone", "virtual camera", "text to speech",
                                           "display"]
    for check in checks:
        assert check["status"] in ("ok", "warning")  # nothing here stops the studio
        if check["status"] != "ok":
            assert check["fix"], check
    text = studio_doctor()
    assert text.returncode == 0 and text.stdout.startswith("flashtalk-studio --doctor:")
    assert text.stdout.rstrip().endswith("flashtalk doctor")


def test_the_virtual_camera_verdict_matches_the_devices_here_and_gives_the_studios_hint():
    result = check_virtual_camera()
    has_loopback = sys.platform == "linux" and any(Path("/dev").glob("video*"))
    if sys.platform == "linux" and not has_loopback:
        assert result.status == "warning" and result.fix == LINUX_HINT  # the one hint the studio shows
        assert 'modprobe v4l2loopback exclusive_caps=1 card_label="FlashTalk"' in result.fix
    assert "OBS" in setup_hint("win32") and "OBS" in setup_hint("darwin")


def test_the_microphone_verdict_follows_the_devices_here():
    result = check_microphone()
    assert result.status in ("ok", "warning")
    assert (result.status == "ok") == ("first input" in result.detail)


def test_display_follows_the_environment(monkeypatch):
    if sys.platform != "linux":
        pytest.skip("DISPLAY only decides on Linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert check_display().status == "warning" and "QT_QPA_PLATFORM=offscreen" in check_display().fix
    monkeypatch.setenv("DISPLAY", ":7")
    assert check_display().status == "ok" and "DISPLAY=:7" in check_display().detail


def test_speech_found_when_espeak_is_on_path(monkeypatch):
    result = check_speech()
    assert (result.status == "ok") == (espeak_binary() is not None)
    monkeypatch.setenv("PATH", "/nonexistent")
    result = check_speech()
    assert result.status == "warning" and result.fix == install_command()
