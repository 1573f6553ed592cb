"""`flashtalk-studio --doctor`: can this desktop feed the avatar and show it to a call?

The checks of the studio's own parts, each with the studio's own probe: the sound devices it lists,
the PulseAudio sinks it plays into, the virtual camera it opens (with the hint it shows when that
fails), espeak-ng for text to speech, and a display for its window. They only warn: the studio
still runs from audio files, with the preview and the recorder, when any of them is missing.
The engine's checks (python, torch, GPUs, model folder, memory) are `flashtalk doctor`'s.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict

from avkit.timeline import FPS
from engine.protocol.doctor_report import OK, WARNING, CheckResult, check_lines
from studio.audio.devices import SoundSystemUnavailable, output_devices, sound_devices
from studio.audio.pulse import PulseUnavailable, null_sink_names
from studio.audio.tts import espeak_binary, install_command
from studio.display import NO_DISPLAY_FIX, display_variables, has_display

VIRTUAL_CABLE_NAMES = {"win32": ("CABLE Input",), "darwin": ("BlackHole",)}  # their playback side
PROBE_CAMERA_SIZE = 64  # a tiny frame: opening the device is the test
PACTL_TIMEOUT_S = 10.0
VERSION_TIMEOUT_S = 15.0


def check_microphone() -> CheckResult:
    name = "audio"
    try:
        inputs, outputs = sound_devices()
    except SoundSystemUnavailable as exc:
        fix = "pip install sounddevice" if exc.package_missing else _portaudio_fix()
        return CheckResult(name, WARNING, f"{exc}: no microphone input", fix)
    if not inputs and not outputs:
        return CheckResult(name, WARNING, "no microphone or speaker found: the studio can still drive the "
                           "avatar from audio files and text-to-speech", _no_audio_fix())
    detail = f"{len(inputs)} input(s), {len(outputs)} output(s)"
    if not inputs:
        return CheckResult(name, WARNING, detail + ": no microphone, live speech won't work", _no_audio_fix())
    return CheckResult(name, OK, f"{detail}; first input: {inputs[0].name}")


def _portaudio_fix() -> str:
    if sys.platform == "linux":
        return "sudo apt install libportaudio2   (Fedora: sudo dnf install portaudio)"
    return "pip install --force-reinstall sounddevice   (its wheel bundles PortAudio)"


def _no_audio_fix() -> str:
    if sys.platform == "linux":
        return "plug in a headset, or start the sound server: pulseaudio --start (or systemctl --user start pipewire)"
    return "plug in a microphone and allow microphone access for Python in the system settings"


def check_virtual_microphone() -> CheckResult:
    """Is there a device the avatar's voice can play into and a call app can use as microphone?"""
    name = "virtual microphone"
    if sys.platform != "linux":
        cables = VIRTUAL_CABLE_NAMES.get(sys.platform, ())
        found = [d.name for d in output_devices() if any(c in d.name for c in cables)]
        if found:
            return CheckResult(name, OK, f"{found[0]}: pick it under Voice to in the studio")
        return CheckResult(name, WARNING, "no virtual audio cable: a call hears your real microphone, "
                           "ahead of the avatar's lips", virtual_microphone_fix())
    try:
        sinks = null_sink_names(PACTL_TIMEOUT_S)
    except PulseUnavailable as exc:
        if exc.no_pactl:
            return CheckResult(name, WARNING, "pactl not found: cannot list or create a virtual microphone",
                               "sudo apt install pulseaudio-utils")
        return CheckResult(name, WARNING, str(exc),
                           "start it: pulseaudio --start (or systemctl --user start pipewire-pulse)")
    if sinks:
        return CheckResult(name, OK, f"null sink {sinks[0]}: studio Voice to -> {sinks[0]}, call "
                           f"microphone -> its monitor (docs/troubleshooting.md)")
    return CheckResult(name, WARNING, "no null sink: a call hears your real microphone, ahead of the "
                       "avatar's lips", virtual_microphone_fix())


def virtual_microphone_fix(platform: str = sys.platform) -> str:
    if platform == "linux":
        return ("pactl load-module module-null-sink sink_name=flashtalk_mic "
                "sink_properties=device.description=FlashTalk-Speaker   (then restart the studio; "
                "docs/troubleshooting.md adds a browser-visible microphone)")
    if platform == "darwin":
        return "brew install blackhole-2ch, then Voice to -> BlackHole 2ch and call microphone -> BlackHole 2ch"
    return "install VB-Audio Virtual Cable, then Voice to -> CABLE Input and call microphone -> CABLE Output"


def check_virtual_camera() -> CheckResult:
    name = "virtual camera"
    try:
        from studio.outputs.virtual_camera import (
            SYSTEM_BACKEND,
            VirtualCameraConfig,
            VirtualCameraUnavailable,
            open_camera,
        )
    except ImportError as exc:
        return CheckResult(name, WARNING, f"{exc.name or 'pyvirtualcam'} is not installed",
                           f"pip install {exc.name or 'pyvirtualcam'}")
    # The platform's own backend, never one registered in-process (tests register fakes).
    config = VirtualCameraConfig(PROBE_CAMERA_SIZE, PROBE_CAMERA_SIZE, FPS, backend=SYSTEM_BACKEND.get(sys.platform))
    try:
        with open_camera(config) as cam:
            device = cam.device
    except VirtualCameraUnavailable as exc:
        return CheckResult(name, WARNING, f"none available ({exc.reason.split('. ')[0]}); Zoom/Teams won't see "
                           "the avatar, preview and recording still work", exc.hint or "see docs/troubleshooting.md")
    return CheckResult(name, OK, f"{device} opens")


def check_speech() -> CheckResult:
    name = "text to speech"
    binary = espeak_binary()
    if binary is None:
        return CheckResult(name, WARNING, "espeak-ng not found: no text-to-speech input", install_command())
    try:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                 timeout=VERSION_TIMEOUT_S).stdout.split(" Data at")[0].strip()
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    return CheckResult(name, OK, version or binary)


def check_display() -> CheckResult:
    if not sys.platform.startswith("linux"):
        return CheckResult("display", OK, "desktop session")
    if has_display():
        return CheckResult("display", OK, ", ".join(display_variables()))
    return CheckResult("display", WARNING, "no DISPLAY or WAYLAND_DISPLAY: the studio window cannot open here; "
                       "`flashtalk render` and `flashtalk serve` work without one", NO_DISPLAY_FIX)


def run_checks() -> list[CheckResult]:
    return [check_microphone(), check_virtual_microphone(), check_virtual_camera(), check_speech(),
            check_display()]


def run_doctor(as_json: bool = False) -> int:
    """Print the checks; exit status 0 (they only warn: nothing here stops the studio)."""
    results = run_checks()
    if as_json:
        print(json.dumps({"checks": [asdict(r) for r in results]}, indent=2))
        return 0
    warnings = sum(r.status == WARNING for r in results)
    lines = ["flashtalk-studio --doctor: what the desktop parts can do here", "", *check_lines(results), ""]
    lines.append(f"{warnings} warning(s): the studio runs without those parts (files in, preview and "
                 "recording out); run the fix lines above to get them." if warnings else
                 "everything the studio uses on this desktop is here.")
    lines.append("the engine's checks (GPU, torch, model): flashtalk doctor")
    print("\n".join(lines))
    return 0
