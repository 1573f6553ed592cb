"""The microphones and voice outputs the user can choose, by the names the desktop gives them.

With a PulseAudio/PipeWire server the choices are its sources and sinks by description
("USB-Microphone", "Speakers", "FlashTalk-Speaker (virtual microphone)"): PortAudio sees only
the server's default there, as "pulse" and "default". Without one they are the sound cards
PortAudio lists. Listing runs `pactl` and PortAudio, which can take seconds: it runs on a thread
and `listed` follows.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from studio.audio.devices import input_devices, output_devices
from studio.audio.pulse import pulse_sinks, pulse_sources

DEFAULT_INPUT = "default input"
DEFAULT_OUTPUT = "default output"


@dataclass(frozen=True)
class InputChoice:
    key: str  # what the settings keep: "" (the system's default), "pulse:<source>", or a sound card's name
    label: str
    index: int | None = None  # the sound card's PortAudio index (None: default, or a PulseAudio source)


@dataclass(frozen=True)
class OutputChoice:
    key: str  # "" (default), a sound card's name, or "pulse:<sink>" (studio.audio.audio_output.open_output)
    label: str


@dataclass(frozen=True)
class DeviceList:
    inputs: tuple[InputChoice, ...] = (InputChoice("", DEFAULT_INPUT),)
    outputs: tuple[OutputChoice, ...] = (OutputChoice("", DEFAULT_OUTPUT),)

    def input(self, key: str) -> InputChoice | None:
        return next((c for c in self.inputs if c.key == key), None)


def list_devices() -> DeviceList:
    """Blocking: call it off the UI thread (DevicesModel.refresh)."""
    sources, sinks = pulse_sources(), pulse_sinks()
    inputs = [InputChoice("", DEFAULT_INPUT)]
    if sources:
        inputs += [InputChoice(s.device, s.description) for s in sources]
    else:
        inputs += [InputChoice(d.name, d.name, d.index) for d in input_devices()]
    outputs = [OutputChoice("", DEFAULT_OUTPUT)]
    if sinks:
        outputs += [OutputChoice(s.device, s.label) for s in sinks]
    else:
        outputs += [OutputChoice(d.name, d.name) for d in output_devices()]
    return DeviceList(tuple(inputs), tuple(outputs))


class DevicesModel(QObject):
    listed = Signal(object)  # DeviceList
    listing_changed = Signal(bool)  # a listing runs (the Refresh button waits)
    _done = Signal(object)  # DeviceList, from the listing thread

    def __init__(self):
        super().__init__()
        self.devices = DeviceList()
        self.listing = False
        self._done.connect(self._on_done)

    def refresh(self) -> None:
        if self.listing:
            return
        self.listing = True
        self.listing_changed.emit(True)
        def work() -> None:
            devices = list_devices()
            try:
                self._done.emit(devices)
            except RuntimeError:  # the studio closed meanwhile
                pass
        threading.Thread(target=work, name="list-devices", daemon=True).start()

    def _on_done(self, devices: DeviceList) -> None:
        self.devices = devices
        self.listing = False
        self.listed.emit(devices)
        self.listing_changed.emit(False)
