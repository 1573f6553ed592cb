"""Sound devices as the user sees them (names), from sounddevice/PortAudio."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SoundDevice:
    index: int
    name: str
    default_rate: float


def _devices(kind: str) -> list[SoundDevice]:
    try:
        import sounddevice as sd
        found = sd.query_devices()
    except (OSError, ImportError):  # no PortAudio library, or it failed to initialise
        return []
    key = "max_input_channels" if kind == "input" else "max_output_channels"
    return [SoundDevice(i, d["name"], float(d["default_samplerate"]))
            for i, d in enumerate(found) if d[key] > 0]


def input_devices() -> list[SoundDevice]:
    return _devices("input")


def output_devices() -> list[SoundDevice]:
    return _devices("output")


def find_device(name: str | None, devices: list[SoundDevice]) -> SoundDevice | None:
    """The device called `name` (or the first one whose name contains it); None if absent."""
    if not name:
        return None
    for dev in devices:
        if dev.name == name:
            return dev
    return next((dev for dev in devices if name in dev.name), None)
