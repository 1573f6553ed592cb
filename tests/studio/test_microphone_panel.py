"""The microphone in the real panel against a real PulseAudio server: inputs and outputs by the
names the desktop gives them, the microphone's button and meter always saying what it really
does, and the voice-output note only where it helps."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
from PySide6.QtCore import Qt

pytestmark = pytest.mark.audio
RATE = 16000


@pytest.fixture
def usb_microphone(pulse_server, tmp_path):
    """A source described "USB-Microphone" (remapped from a null sink's monitor) and a way to speak
    into it: what the studio records is what `speak()` plays into that sink."""
    loaded = [subprocess.run(["pactl", "load-module", *args], capture_output=True, text=True, check=True,
                             timeout=10).stdout.strip() for args in (
        ("module-null-sink", "sink_name=usb_feed", "rate=16000", "channels=1"),
        ("module-remap-source", "master=usb_feed.monitor", "source_name=usb_mic",
         "source_properties=device.description=USB-Microphone"))]
    tone = tmp_path / "tone.raw"
    (0.6 * np.sin(2 * np.pi * 440 * np.arange(6 * RATE) / RATE)).astype("<f4").tofile(tone)
    players = []

    def speak() -> None:
        players.append(subprocess.Popen(["pacat", "--playback", "--device=usb_feed", f"--rate={RATE}",
                                         "--channels=1", "--format=float32le", str(tone)]))
    yield speak
    for player in players:
        player.kill()
        player.wait(5)
    for module in reversed(loaded):
        subprocess.run(["pactl", "unload-module", module], check=False, timeout=10)


def _listed(studio, qtbot) -> None:
    """Press Refresh and wait for the listing thread."""
    qtbot.waitUntil(studio.audio.refresh_devices.isEnabled, timeout=10_000)
    qtbot.mouseClick(studio.audio.refresh_devices, Qt.LeftButton)
    qtbot.waitUntil(studio.audio.refresh_devices.isEnabled, timeout=10_000)


def test_the_microphone_is_chosen_by_name_and_shows_its_real_state(studio, qtbot, usb_microphone, short_speech):
    panel, sources = studio.audio, studio.model.sources
    _listed(studio, qtbot)
    labels = [panel.input_device.itemText(i) for i in range(panel.input_device.count())]
    assert "USB-Microphone" in labels and "pulse" not in labels and "default" not in labels
    panel.tabs.setCurrentIndex(0)
    panel.input_device.setCurrentIndex(labels.index("USB-Microphone"))
    qtbot.mouseClick(panel.mic_button, Qt.LeftButton)
    assert panel.mic_button.text() == "Stop microphone" and sources.source == "microphone"
    assert panel.on_air.text() == "On air: <b>the microphone</b>"
    assert panel.mic_note.text() == "recording USB-Microphone"
    usb_microphone()
    qtbot.waitUntil(lambda: panel.level.value() > 30, timeout=10_000)  # the meter follows what is spoken
    # Ctrl+M mutes: the checkbox and the menu say so
    studio.actions["mute"].trigger()
    qtbot.waitUntil(lambda: panel.mute.isChecked() and studio.actions["mute"].isChecked(), timeout=2_000)
    studio.actions["mute"].trigger()
    qtbot.waitUntil(lambda: not panel.mute.isChecked(), timeout=2_000)
    # Play on the file tab: the microphone stops, visibly
    sources.load_file(short_speech)
    qtbot.waitUntil(lambda: panel.play_button.isEnabled(), timeout=10_000)
    qtbot.mouseClick(panel.play_button, Qt.LeftButton)
    assert sources.source == "file" and panel.on_air.text() == "On air: <b>the audio file</b>"
    assert panel.mic_button.text() == "Start microphone" and panel.input_device.isEnabled()
    assert panel.mic_note.text() == "stopped: the audio file is on air" and panel.level.value() == 0
    assert studio.statusBar().currentMessage() == "microphone stopped: the audio file is on air now"
    assert panel.tabs.tabText(1).startswith("●") and not panel.tabs.tabText(0).startswith("●")
    studio.actions["mute"].trigger()  # with the microphone off, Ctrl+M still shows what it did
    qtbot.waitUntil(lambda: panel.mute.isChecked(), timeout=2_000)
    assert "it is off" in studio.statusBar().currentMessage()


def test_voice_to_speakers_needs_no_call_app_note_and_the_mute_box_keeps_its_room(studio, qtbot, pulse_server):
    module = subprocess.run(["pactl", "load-module", "module-remap-sink", "sink_name=speakers", "master=studio",
                             "sink_properties=device.description=Speakers"], capture_output=True, text=True,
                            check=True, timeout=10).stdout.strip()
    try:
        _listed(studio, qtbot)
        combo, panel = studio.audio.output_device, studio.audio
        for key, note in (("pulse:speakers", ""), ("pulse:studio", 'choose "Monitor of')):
            index = combo.findData(key)
            assert index >= 0
            combo.setCurrentIndex(index)
            combo.activated.emit(index)
            assert (note in panel.output_note.text()) if note else panel.output_note.isHidden()
        assert combo.itemText(combo.findData("pulse:speakers")) == "Speakers"
        studio.resize(1280, 720)
        panel.tabs.setCurrentIndex(0)
        qtbot.wait(50)
        mute = panel.mute
        assert mute.isVisible() and mute.height() >= mute.sizeHint().height()  # not clipped by the long note
        assert mute.visibleRegion().boundingRect().height() >= mute.sizeHint().height()
    finally:
        studio.model.playout.set_output_device(None)
        subprocess.run(["pactl", "unload-module", module], check=False, timeout=10)
