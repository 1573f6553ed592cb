"""Studio fixtures: offscreen Qt, short speech clips, studio windows on private engine sockets,
and a PulseAudio server with a null sink for real audio streams."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import wave
from pathlib import Path

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before anything imports Qt

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "assets"


def write_wav(path: Path, pcm: np.ndarray, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture
def short_speech(tmp_path, speech) -> Path:
    """The first 2.5 s of the shipped speech sample as a WAV file."""
    return write_wav(tmp_path / "short.wav", speech[: int(2.5 * 16000)])


@pytest.fixture
def studio(qtbot, tmp_path):
    """A main window whose supervised engine listens on a private socket; settings in an INI file."""
    from studio.engine_link.link import EngineLink
    from studio.engine_link.supervisor import EngineSupervisor
    from studio.main_window import MainWindow
    from studio.session.session_model import SessionModel
    from studio.settings_store import open_store

    link = EngineLink(EngineSupervisor(address=f"ipc://{tmp_path}/run/studio.sock"))
    model = SessionModel(link)
    window = MainWindow(model, open_store(str(tmp_path / "settings.ini")))
    window.set_recordings_folder(str(tmp_path / "recordings"))  # never the user's Videos folder
    qtbot.addWidget(window)
    window.show()
    yield window
    window.quit_confirmed = True  # a recording a test left running is finished without asking
    window.close()


@pytest.fixture(scope="session")
def pulse_server(tmp_path_factory):
    """A private PulseAudio daemon with a 16 kHz mono null sink; its monitor is a microphone.

    Skips where PulseAudio cannot run, except under FLASHTALK_REQUIRE_PULSE=1 (scripts/test, CI):
    there a missing or broken server must fail, not hide the audio tests."""
    def unavailable(reason: str):
        if os.environ.get("FLASHTALK_REQUIRE_PULSE") == "1":
            pytest.fail(f"{reason} (FLASHTALK_REQUIRE_PULSE=1; scripts/setup dev installs it)")
        pytest.skip(reason)

    missing = [tool for tool in ("pulseaudio", "pactl", "pacat", "parec") if shutil.which(tool) is None]
    if missing:
        unavailable(f"{', '.join(missing)} not installed (apt install pulseaudio pulseaudio-utils)")
    runtime = tmp_path_factory.mktemp("pulse")
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), PULSE_RUNTIME_PATH=str(runtime / "pulse"),
               HOME=str(runtime))
    started = subprocess.run(["pulseaudio", "--start", "--exit-idle-time=-1", "--disallow-exit", "-n",
                              "--load=module-native-protocol-unix",
                              "--load=module-null-sink sink_name=studio rate=16000 channels=1",
                              "--load=module-always-sink"], env=env, capture_output=True, text=True,
                             timeout=30, check=False)
    if started.returncode != 0:
        lines = [line for line in started.stderr.splitlines() if line.strip()]
        unavailable(f"PulseAudio cannot start here: {lines[-1] if lines else f'exit {started.returncode}'}")
    old = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "PULSE_RUNTIME_PATH", "HOME")}
    os.environ.update({k: env[k] for k in old})
    subprocess.run(["pactl", "set-default-sink", "studio"], check=True, timeout=10)
    subprocess.run(["pactl", "set-default-source", "studio.monitor"], check=True, timeout=10)
    # keep the sink busy so streams do not stall at start
    keeper = subprocess.Popen(["pacat", "--playback", "--device=studio", "--rate=16000", "--channels=1",
                               "--format=s16le", "/dev/zero"], env=env)
    time.sleep(0.5)
    yield env
    keeper.terminate()
    subprocess.run(["pulseaudio", "--kill"], env=env, timeout=10)
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
