"""PulseAudio sinks as outputs: play the avatar's voice into a chosen sink, e.g. a null sink whose
monitor a call app records as its microphone (the "virtual microphone" of troubleshooting.md).

PortAudio's ALSA host API only sees PulseAudio's default sink, so a sink is opened directly with
libpulse's simple API (through ctypes: nothing to build). PipeWire serves the same API
(pipewire-pulse). Sinks are listed with `pactl`.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

import numpy as np

from avkit.timeline import SAMPLE_RATE
from studio.audio.playout_clock import PlayoutClock

PREFIX = "pulse:"  # output device names of the form "pulse:<sink name>"
BLOCK = 320  # samples per write (20 ms at 16 kHz), as the sound-card output
TARGET_LATENCY_S = 0.04  # what the server keeps buffered ahead of the listener (low: a live call)
LIST_TIMEOUT_S = 2.0


class PulseOutputError(RuntimeError):
    """The sink cannot be opened; one line."""


@dataclass(frozen=True)
class PulseSink:
    name: str  # e.g. flashtalk_mic
    description: str  # e.g. FlashTalk-Speaker
    monitor: str  # the source that records what the sink plays, e.g. flashtalk_mic.monitor
    virtual: bool = False  # a null sink: nobody hears it, a call app records its monitor (a virtual microphone)

    @property
    def device(self) -> str:
        """The output device name the studio stores in its settings."""
        return PREFIX + self.name

    @property
    def label(self) -> str:
        return f"{self.description} (virtual microphone)" if self.virtual else self.description


@dataclass(frozen=True)
class PulseSource:
    name: str  # e.g. alsa_input.usb-0d8c_USB_Audio-00.mono-fallback
    description: str  # e.g. USB-Microphone
    monitor: bool = False  # it records what a sink plays ("Monitor of Speakers"), not a microphone

    @property
    def device(self) -> str:
        """The input device name the studio stores in its settings."""
        return PREFIX + self.name


class PulseUnavailable(RuntimeError):
    """Nothing can be listed: `pactl` is not installed (`no_pactl`), or no sound server answers it."""

    def __init__(self, message: str, no_pactl: bool = False):
        super().__init__(message)
        self.no_pactl = no_pactl


def _pactl(*args: str, timeout_s: float = LIST_TIMEOUT_S) -> str:
    if shutil.which("pactl") is None:
        raise PulseUnavailable("pactl not found", no_pactl=True)
    try:
        return subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=timeout_s, check=True,
                              env=_c_locale()).stdout
    except (OSError, subprocess.SubprocessError):
        raise PulseUnavailable("no PulseAudio/PipeWire sound server answers") from None


def pulse_sinks() -> list[PulseSink]:
    """The PulseAudio/PipeWire sinks (empty when there is no server or no `pactl`)."""
    sinks = []
    for fields in _pactl_list("sinks"):
        name = fields["Name"]
        null = "null-sink" in fields.get("Driver", "") or "null-audio-sink" in fields.get("factory.name", "")
        sinks.append(PulseSink(name, fields.get("Description", name), fields.get("Monitor Source", name + ".monitor"),
                               virtual=null))
    return sinks


def pulse_sources() -> list[PulseSource]:
    """The PulseAudio/PipeWire sources by their description, microphones before monitors (empty
    when there is no server or no `pactl`)."""
    sources = []
    for fields in _pactl_list("sources"):
        name = fields["Name"]
        monitor = fields.get("Monitor of Sink", "n/a") != "n/a"
        sources.append(PulseSource(name, fields.get("Description", name), monitor))
    return sorted(sources, key=lambda s: s.monitor)


def _pactl_list(kind: str) -> list[dict[str, str]]:
    """`pactl list <kind>` as one dict per entry: its "Key: value" lines and its properties
    (`key = "value"`)."""
    try:
        listing = _pactl("list", kind)
    except PulseUnavailable:
        return []
    entries, fields = [], {}
    for line in listing.splitlines() + ["#end"]:
        if line and not line[0].isspace():  # "Sink #3", "Source #1": a new entry
            if "Name" in fields:
                entries.append(fields)
            fields = {}
            continue
        key, sep, value = line.strip().partition(": ")
        if sep:
            fields.setdefault(key, value)
            continue
        key, sep, value = line.strip().partition(" = ")
        if sep:
            fields.setdefault(key, value.strip('"'))
    return entries


def null_sink_names(timeout_s: float = LIST_TIMEOUT_S) -> list[str]:
    """Sinks made by module-null-sink: the playback side of a virtual microphone (their monitor is
    what a call app records). Raises PulseUnavailable."""
    listing = _pactl("list", "short", "modules", timeout_s=timeout_s)
    return [arg.split("=", 1)[1] for line in listing.splitlines() if "\tmodule-null-sink\t" in line
            for arg in line.split("\t", 2)[2].split() if arg.startswith("sink_name=")]


def call_microphone_hint(sink_name: str, sinks: list[PulseSink] | None = None) -> str:
    """One line: which microphone to pick in a call app once the voice plays into `sink_name`
    ("" for a sink people hear, such as the speakers: nothing to pick there)."""
    sinks = pulse_sinks() if sinks is None else sinks
    sink = next((s for s in sinks if s.name == sink_name), None)
    if sink is not None and not sink.virtual:
        return ""
    description = sink.description if sink else sink_name
    return (f"the voice plays into {description}: in the call app choose \"Monitor of {description}\" "
            f"as the microphone (browsers list only a source remapped from it: see troubleshooting)")


def _c_locale() -> dict:
    return dict(os.environ, LC_ALL="C")  # pactl translates its field names otherwise


# -- libpulse-simple through ctypes ---------------------------------------------------------------
class SampleSpec(ctypes.Structure):
    _fields_ = [("format", ctypes.c_int), ("rate", ctypes.c_uint32), ("channels", ctypes.c_uint8)]


class BufferAttr(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in ("maxlength", "tlength", "prebuf", "minreq", "fragsize")]


PA_STREAM_PLAYBACK = 1
PA_STREAM_RECORD = 2
PA_SAMPLE_FLOAT32LE = 5
PA_DEFAULT = 0xFFFFFFFF  # (uint32_t) -1: "the server's choice" in pa_buffer_attr
_lib = None


def pulse_simple_api():
    global _lib
    if _lib is None:
        try:
            simple = ctypes.CDLL("libpulse-simple.so.0")
            pulse = ctypes.CDLL("libpulse.so.0")
        except OSError as exc:
            raise PulseOutputError(f"PulseAudio client library missing ({exc}): install libpulse0") from None
        simple.pa_simple_new.restype = ctypes.c_void_p
        simple.pa_simple_new.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                         ctypes.c_char_p, ctypes.POINTER(SampleSpec), ctypes.c_void_p,
                                         ctypes.POINTER(BufferAttr), ctypes.POINTER(ctypes.c_int)]
        simple.pa_simple_write.restype = ctypes.c_int
        simple.pa_simple_write.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                           ctypes.POINTER(ctypes.c_int)]
        simple.pa_simple_read.restype = ctypes.c_int
        simple.pa_simple_read.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                          ctypes.POINTER(ctypes.c_int)]
        simple.pa_simple_get_latency.restype = ctypes.c_uint64
        simple.pa_simple_get_latency.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
        simple.pa_simple_free.restype = None
        simple.pa_simple_free.argtypes = [ctypes.c_void_p]
        pulse.pa_strerror.restype = ctypes.c_char_p
        pulse.pa_strerror.argtypes = [ctypes.c_int]
        _lib = (simple, pulse)
    return _lib


class PulseSimpleStream:
    """One libpulse "simple" stream (a sink played into, a source recorded from) and the thread
    that moves its blocks: `_run`, which PulseOutput and PulseMicrophone each define."""

    def _open(self, direction: int, device: str, stream_name: bytes, spec: SampleSpec, attr: BufferAttr,
              thread_name: str) -> str:
        """Open the stream on `device`; "" or the server's reason it could not (PulseOutputError:
        no libpulse here)."""
        self._simple, pulse = pulse_simple_api()
        error = ctypes.c_int(0)
        self._handle = self._simple.pa_simple_new(None, b"FlashTalk Studio", direction, device.encode(), stream_name,
                                                  ctypes.byref(spec), None, ctypes.byref(attr), ctypes.byref(error))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        return "" if self._handle else pulse.pa_strerror(error.value).decode(errors="replace")

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1.0)
        if self._handle and not self._thread.is_alive():
            self._simple.pa_simple_free(self._handle)
            self._handle = None

    def _run(self) -> None:
        raise NotImplementedError


class PulseOutput(PulseSimpleStream):
    """Plays the session into one PulseAudio sink; its writer thread drives the playout clock.

    Each block's clock anchor is the server's own latency estimate (time until the next written
    sample is played), so video follows the sink's clock exactly like with a sound card.
    """

    def __init__(self, sink: str, sample_rate: int = SAMPLE_RATE, target_latency_s: float = TARGET_LATENCY_S):
        self.sample_rate = sample_rate
        self.sink = sink
        self.name = f"PulseAudio sink {sink}"
        spec = SampleSpec(PA_SAMPLE_FLOAT32LE, sample_rate, 1)
        attr = BufferAttr(PA_DEFAULT, int(target_latency_s * sample_rate) * 4, PA_DEFAULT, PA_DEFAULT, PA_DEFAULT)
        reason = self._open(PA_STREAM_PLAYBACK, sink, b"avatar voice", spec, attr, "pulse-audio-output")
        if reason:
            raise PulseOutputError(f"cannot play into the PulseAudio sink {sink!r}: {reason}")
        self.latency_s = target_latency_s
        self.error = ""
        self._clock: PlayoutClock | None = None
        self._buf = np.zeros(BLOCK, np.float32)

    def attach(self, clock: PlayoutClock | None) -> None:
        if clock is not None:
            clock.output_latency_s = self.latency_s
        self._clock = clock

    def _run(self) -> None:
        error = ctypes.c_int(0)
        buf, simple, handle = self._buf, self._simple, self._handle
        while not self._stop.is_set():
            latency_us = simple.pa_simple_get_latency(handle, ctypes.byref(error))
            clock = self._clock
            if clock is None:
                buf.fill(0.0)
            else:
                if 0 < latency_us < 1_000_000:
                    self.latency_s = clock.output_latency_s = latency_us / 1e6
                clock.fill(buf, time.monotonic())
            # Blocks (GIL released) while the server's buffer is full: this paces the loop.
            if simple.pa_simple_write(handle, buf.ctypes.data, buf.nbytes, ctypes.byref(error)) < 0:
                self.error = f"the PulseAudio sink {self.sink} stopped (error {error.value})"
                return
