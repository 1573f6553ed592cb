"""Sound devices as the user sees them (names), from sounddevice/PortAudio."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SoundDevice:
    index: int
    name: str
    default_rate: float


class SoundSystemUnavailable(RuntimeError):
    """No device can be listed: sounddevice is not installed, or its PortAudio library is missing
    or failed to start. str() is one line; `package_missing` tells the first case apart."""

    def __init__(self, message: str, package_missing: bool = False):
        super().__init__(message)
        self.package_missing = package_missing


def sound_devices() -> tuple[list[SoundDevice], list[SoundDevice]]:
    """(inputs, outputs); raises SoundSystemUnavailable."""
    try:
        import sounddevice as sd
    except ImportError:
        raise SoundSystemUnavailable("sounddevice is not installed", package_missing=True) from None
    except OSError as exc:  # the package is there, PortAudio is not
        raise SoundSystemUnavailable(f"PortAudio is missing ({exc})") from None
    try:
        found = sd.query_devices()
    except OSError as exc:
        raise SoundSystemUnavailable(f"PortAudio failed to start ({exc})") from None
    inputs = [SoundDevice(i, d["name"], float(d["default_samplerate"])) for i, d in enumerate(found)
              if d["max_input_channels"] > 0]
    outputs = [SoundDevice(i, d["name"], float(d["default_samplerate"])) for i, d in enumerate(found)
               if d["max_output_channels"] > 0]
    return inputs, outputs


def input_devices() -> list[SoundDevice]:
    """The microphones; none when the sound system is unavailable."""
    try:
        return sound_devices()[0]
    except SoundSystemUnavailable:
        return []


def output_devices() -> list[SoundDevice]:
    try:
        return sound_devices()[1]
    except SoundSystemUnavailable:
        return []


def find_device(name: str | None, devices: list[SoundDevice]) -> SoundDevice | None:
    """The device called `name` (or the first one whose name contains it); None if absent."""
    if not name:
        return None
    for dev in devices:
        if dev.name == name:
            return dev
    return next((dev for dev in devices if name in dev.name), None)
