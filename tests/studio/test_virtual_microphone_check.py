"""`flashtalk-studio --doctor`'s virtual-microphone check against a real PulseAudio server."""
from __future__ import annotations

import subprocess

import pytest

from engine.protocol.doctor_report import OK, WARNING
from studio.desktop_checks import check_virtual_microphone, virtual_microphone_fix
from tests.conftest import ROOT

pytestmark = pytest.mark.audio


def test_a_null_sink_is_found_and_named(pulse_server):
    result = check_virtual_microphone()
    assert result.status == OK and "null sink studio" in result.detail


def test_without_a_null_sink_the_fix_creates_one(pulse_server, monkeypatch):
    modules = subprocess.run(["pactl", "list", "short", "modules"], capture_output=True, text=True,
                             check=True).stdout
    assert "module-null-sink" in modules
    monkeypatch.setenv("PULSE_SERVER", "unix:/nonexistent/pulse/native")  # a server that is not there
    result = check_virtual_microphone()
    assert result.status == WARNING and "sound server" in result.detail
    monkeypatch.setenv("PATH", "/nonexistent")
    result = check_virtual_microphone()
    assert result.status == WARNING and result.fix == "sudo apt install pulseaudio-utils"


def test_the_linux_fix_is_the_documented_command(pulse_server):
    fix = virtual_microphone_fix("linux").split("   (")[0]
    loaded = subprocess.run(fix.split(), capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    try:
        result = check_virtual_microphone()
        assert result.status == OK
        assert "flashtalk_mic" in subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True,
                                                 text=True, check=True).stdout
    finally:
        subprocess.run(["pactl", "unload-module", loaded], check=False, timeout=10)
    assert fix in (ROOT / "docs" / "troubleshooting.md").read_text().replace("\n", " ")
