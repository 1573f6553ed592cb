"""Retake docs/studio.png and docs/screens/*.png: the real studio, driven through its states.

Runs the studio window on a virtual X screen the size of a laptop's (1280x720) with the puppet
engine, a private PulseAudio server (a "USB-Microphone" source, "Speakers" and the
"FlashTalk-Speaker" virtual microphone) and a stand-in virtual camera that discards its frames
(this machine has no v4l2loopback). Each state is grabbed from the screen, dialogs included, and
saved as a 256-colour PNG (small enough for the repository).

Run: xvfb-run -a -s "-screen 0 1280x720x24" .venv/bin/python scripts/take_screenshots.py
     (scripts/setup dev installs xvfb, pulseaudio, sox and espeak-ng)
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCREEN = (1280, 720)
OUT = ROOT / "docs" / "screens"
README_SHOT = ROOT / "docs" / "studio.png"
COLOURS = 256
RATE = 16000


class DiscardingCamera:
    """A pyvirtualcam backend for the screenshots only: accepts frames and drops them."""

    def __init__(self, width, height, fps, fourcc, device, **_kw):
        self.fourcc = fourcc

    def send(self, frame) -> None:
        pass

    def close(self) -> None:
        pass

    def device(self) -> str:
        return "/dev/video10"

    def native_fourcc(self):
        return self.fourcc


def start_pulse(runtime: Path) -> list[subprocess.Popen]:
    """A private PulseAudio server with the devices the shots show; returns the processes to stop."""
    env = {"XDG_RUNTIME_DIR": str(runtime), "PULSE_RUNTIME_PATH": str(runtime / "pulse"), "HOME": str(runtime)}
    os.environ.update(env)
    subprocess.run(["pulseaudio", "--start", "--exit-idle-time=-1", "-n", "--load=module-native-protocol-unix",
                    "--load=module-null-sink sink_name=speakers_out rate=16000 channels=1"], check=True, timeout=30)
    for args in (("module-remap-sink", "sink_name=speakers", "master=speakers_out",
                  "sink_properties=device.description=Speakers"),
                 ("module-null-sink", "sink_name=flashtalk_mic",
                  "sink_properties=device.description=FlashTalk-Speaker"),
                 ("module-null-sink", "sink_name=usb_feed", "rate=16000", "channels=1"),
                 ("module-remap-source", "master=usb_feed.monitor", "source_name=usb_mic",
                  "source_properties=device.description=USB-Microphone")):
        subprocess.run(["pactl", "load-module", *args], check=True, timeout=10, capture_output=True)
    subprocess.run(["pactl", "set-default-sink", "speakers"], check=True, timeout=10)
    subprocess.run(["pactl", "set-default-source", "usb_mic"], check=True, timeout=10)
    return [subprocess.Popen(["pacat", "--playback", "--device=speakers_out", "--rate=16000", "--channels=1",
                              "--format=s16le", "/dev/zero"])]


def speak_into_microphone(wav: Path) -> subprocess.Popen:
    return subprocess.Popen(["paplay", "--device=usb_feed", str(wav)])


class Shots:
    def __init__(self, app, window):
        self.app, self.window = app, window
        OUT.mkdir(parents=True, exist_ok=True)

    def settle(self, seconds: float, until=None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until is not None and until()):
            self.app.processEvents()
            time.sleep(0.01)

    def wait(self, until, what: str, timeout: float = 60.0) -> None:
        self.settle(timeout, until)
        if not until():
            raise SystemExit(f"take_screenshots: timed out waiting for {what}")

    def save(self, name: str, widget=None, path: Path | None = None) -> None:
        """The whole screen (dialogs included), or one widget."""
        from PIL import Image
        from PySide6.QtCore import QBuffer, QIODevice
        self.settle(0.3)
        pixmap = widget.grab() if widget is not None else self.app.primaryScreen().grabWindow(0)
        buffer = QBuffer()
        buffer.open(QIODevice.WriteOnly)
        pixmap.save(buffer, "PNG")
        image = Image.open(io.BytesIO(bytes(buffer.data()))).convert("RGB")
        target = path or OUT / f"{name}.png"
        image.quantize(COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(target, optimize=True)
        print(f"{target.relative_to(ROOT)}: {target.stat().st_size // 1024} KB")


def main() -> int:
    for tool in ("pulseaudio", "pactl", "pacat", "paplay", "sox", "espeak-ng"):
        if shutil.which(tool) is None:
            print(f"take_screenshots: {tool} is missing (scripts/setup dev installs it)", file=sys.stderr)
            return 2
    if not os.environ.get("DISPLAY"):
        print('take_screenshots: run it under xvfb-run -a -s "-screen 0 1280x720x24"', file=sys.stderr)
        return 2
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    with tempfile.TemporaryDirectory(prefix="flashtalk-shots-") as tmp:
        tmp = Path(tmp)
        (tmp / "pulse").mkdir(mode=0o700)
        keepers = start_pulse(tmp / "pulse")
        try:
            return take(tmp)
        finally:
            for proc in keepers:
                proc.kill()
            subprocess.run(["pulseaudio", "--kill"], timeout=10, check=False)


def take(tmp: Path) -> int:
    import pyvirtualcam
    from PIL import Image
    from PySide6.QtWidgets import QApplication, QMessageBox

    from studio.app import build, parse_args
    from studio.engine_link.options import EngineOptions

    speech = ROOT / "assets" / "speech.wav"
    mic_speech, long_wav, stretched = tmp / "mic.wav", tmp / "two-hours.wav", tmp / "stretched.jpg"
    subprocess.run(["sox", str(speech), str(mic_speech), "repeat", "3"], check=True, timeout=60)
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(long_wav), "synth", "7200", "sine", "300",
                    "vol", "0.05"], check=True, timeout=300)
    Image.open(ROOT / "assets" / "portrait.png").convert("RGB").resize((6000, 4000)).save(stretched, quality=80)
    pyvirtualcam.register_backend("screenshots", DiscardingCamera)
    settings = tmp / "settings.ini"
    settings.write_text("[virtual_camera]\nbackend=screenshots\n")
    app, window = build(parse_args(["--settings", str(settings)]))
    shots = Shots(app, window)
    model, audio, sources = window.model, window.audio, window.model.sources
    window.set_recordings_folder(str(tmp / "Videos" / "FlashTalk"))
    window.move(0, 0)
    window.resize(*SCREEN)
    window.show()

    # stopped: nothing started yet, the same words everywhere
    shots.settle(1.0)
    shots.save("01-stopped")

    # failed: the flashtalk backend without its model, at once, with the command that gets it
    window.engine.set_options(EngineOptions(backend="flashtalk"))
    window.toggle_engine()
    shots.save("02-failed-no-model")

    # running on the puppet, recording and broadcasting with their lamps (the README's picture)
    window.engine.set_options(EngineOptions())
    model.set_portrait(ROOT / "assets" / "portrait.png")
    window.toggle_engine()
    shots.wait(lambda: model.state == "running", "the session")
    sources.load_file(speech)
    shots.wait(lambda: sources.file.phase == "ready", "the speech file")
    sources.set_loop(True)
    sources.play_file()
    window.toggle_virtual_camera()
    window.toggle_recording()
    shots.settle(8.0)
    shots.save("studio", path=README_SHOT)

    # quitting while recording asks first
    window.close()
    shots.wait(lambda: window.findChild(QMessageBox, "confirm-quit") is not None, "the quit question")
    shots.save("03-quit-while-recording")
    question = window.findChild(QMessageBox, "confirm-quit")
    next(b for b in question.buttons() if b.text() == "Keep recording").click()
    window.toggle_recording()
    window.toggle_virtual_camera()

    # the microphone by its name, on air, its meter moving
    shots.wait(lambda: audio.input_device.findText("USB-Microphone") >= 0, "the device listing")
    audio.tabs.setCurrentIndex(0)
    audio.input_device.setCurrentIndex(audio.input_device.findText("USB-Microphone"))
    audio.mic_button.click()
    talker = speak_into_microphone(mic_speech)
    shots.settle(3.0)
    shots.save("04-microphone-on-air", audio)

    # Play on the file tab: the microphone stops and says so
    audio.tabs.setCurrentIndex(1)
    audio.play_button.click()
    audio.tabs.setCurrentIndex(0)
    shots.save("05-file-on-air-microphone-stopped", audio)
    talker.kill()

    # a refused portrait: the session goes on, thumbnail and recents unchanged
    model.set_portrait(stretched)
    shots.wait(lambda: window.portrait.verdict.text().startswith("✗"), "the refusal")
    shots.settle(1.0)
    shots.save("06-refused-portrait-session-goes-on")

    # a two-hour file streams: open at once, play from anywhere
    sources.load_file(long_wav)
    shots.wait(lambda: sources.file.phase == "ready", "the long file")
    sources.play_file()
    sources.seek_file(3912)
    audio.tabs.setCurrentIndex(1)
    shots.settle(1.5)
    shots.save("07-two-hour-file-streaming", audio)

    # a broken WAV: the old file is gone, the problem stays in words
    broken = tmp / "broken.wav"
    broken.write_bytes(b"RIFF" + bytes(range(256)) * 8)
    sources.load_file(broken)
    shots.wait(lambda: sources.file.phase == "failed", "the failed load")
    audio.tabs.setCurrentIndex(1)
    shots.save("08-broken-wav")
    model.problems.solve("audio_file")

    # no virtual camera device: the fix, ready to copy
    window.store.setValue("virtual_camera/backend", "v4l2loopback")
    window.toggle_virtual_camera()
    shots.save("09-no-virtual-camera")
    model.problems.solve("virtual_camera")

    # devices by name, the voice to the speakers (no call-app note), text to speech with its voices
    audio.select_output("pulse:speakers")
    window._choose_output("pulse:speakers")
    audio.tabs.setCurrentIndex(2)
    audio.text.setText("Hello from the avatar.")
    shots.settle(0.5)
    shots.save("10-speakers-and-voices", audio)
    shots.save("11-puppet-engine-panel", window.engine)

    window.close()
    app.processEvents()
    QApplication.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
