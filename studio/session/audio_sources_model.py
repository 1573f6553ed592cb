"""The audio sources: microphone, audio file and text-to-speech; one at a time is on air.

Each source runs on its own thread and hands its blocks to `sink` (the engine link) with their
capture time. A source goes on air only when the user starts it (Start microphone, Play, Speak);
the one that was on air stops, and says so (`microphone_changed` carries why the microphone went
off). Every POLL_MS the model reports what a meter and a transport bar show (`status`).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from studio.audio import AudioSink
from studio.audio.audio_file_source import AudioFileSource
from studio.audio.microphone import Microphone, MicrophoneError
from studio.audio.pulse import PREFIX as PULSE_PREFIX
from studio.audio.pulse_capture import PulseMicrophone
from studio.audio.tts import DEFAULT_VOICE, SpeechSource, list_voices
from studio.session.devices_model import InputChoice
from studio.session.problems_model import Problem, ProblemsModel

SOURCES = ("microphone", "file", "speech")
SOURCE_NAMES = {"": "nothing", "microphone": "the microphone", "file": "the audio file", "speech": "text to speech"}
FILE_PHASES = ("none", "opening", "ready", "failed")
POLL_MS = 50  # file position and microphone level


@dataclass(frozen=True)
class SourceStatus:
    file_position_s: float
    file_playing: bool
    level: float  # peak of the microphone's last block, 0..1 (0 without a microphone)
    microphone_on: bool
    muted: bool
    speaking: bool  # a typed sentence is being played


@dataclass(frozen=True)
class MicrophoneState:
    on: bool
    name: str = ""  # the device it records
    note: str = ""  # why it is off ("stopped: the audio file is on air", an error), "" when nothing to say


@dataclass(frozen=True)
class FileState:
    path: str = ""
    phase: str = "none"  # one of FILE_PHASES
    error: str = ""  # phase "failed": why, one line
    duration_s: float = 0.0  # 0.0 when unknown


class AudioSourcesModel(QObject):
    on_air_changed = Signal(str)  # one of SOURCES
    microphone_changed = Signal(object)  # MicrophoneState
    file_changed = Signal(object)  # FileState
    file_ended = Signal()  # the file played to its end (without looping)
    speech_ready = Signal(str)  # error ("" when fine)
    voices_listed = Signal(object)  # list[Voice]
    message = Signal(str)  # one line for the status bar (a source that stopped because another went on air)
    status = Signal(object)  # SourceStatus, every POLL_MS
    _file_opened = Signal(str, str)  # path, error: from the opening thread

    def __init__(self, sink: AudioSink, problems: ProblemsModel | None = None, poll_ms: int = POLL_MS):
        super().__init__()
        self._sink = sink
        self.problems = problems or ProblemsModel()
        self.source = ""  # the source on air: none until the user starts one
        self.muted = False  # the microphone's mute, kept while it is off
        self.voice = DEFAULT_VOICE
        self.file = FileState()
        self.microphone = MicrophoneState(False)
        self._file = AudioFileSource(lambda pcm, t: self._feed("file", pcm, t), on_end=self.file_ended.emit)
        self._speech = SpeechSource(lambda pcm, t: self._feed("speech", pcm, t))
        self._microphone: Microphone | PulseMicrophone | None = None
        self._file_opened.connect(self._on_file_opened)
        self._file_error_reported = ""
        self._poll = QTimer(self)
        self._poll.timeout.connect(self._on_poll)
        self._poll.start(poll_ms)

    def _feed(self, source: str, pcm: np.ndarray, capture_t: float) -> None:
        """Audio sink shared by the sources (called on their threads); only the one on air speaks."""
        if source == self.source:
            self._sink(pcm, capture_t)

    def _feed_microphone(self, pcm: np.ndarray, capture_t: float) -> None:
        self._feed("microphone", pcm, capture_t)

    @property
    def speech_available(self) -> bool:
        return self._speech.available()

    @property
    def file_path(self) -> Path | None:
        return self._file.path

    @property
    def file_source(self) -> AudioFileSource:
        return self._file

    def current_status(self) -> SourceStatus:
        mic = self._microphone
        return SourceStatus(self._file.position_s, self._file.playing, mic.level if mic else 0.0,
                            mic is not None, self.muted, self._speech.playing)

    def _on_poll(self) -> None:
        mic = self._microphone
        if mic is not None and getattr(mic, "error", ""):  # the device went away
            self._close_microphone(mic.error)
            self.problems.report(Problem("microphone", f"The microphone stopped: {mic.error}.",
                                         "Plug it in again or choose another input, then press Start microphone."))
        if self._file.error and self._file.error != self._file_error_reported:
            self._file_error_reported = self._file.error
            self.problems.report(Problem("audio_file", f"The audio file stopped playing: {self._file.error}."))
        self.status.emit(self.current_status())

    def select(self, name: str) -> None:
        """Put `name` on air; the others stop (the microphone closes and says why)."""
        if name not in SOURCES:
            raise ValueError(f"unknown audio source {name!r}")
        if name != "file":
            self._file.pause()
        if name != "speech":
            self._speech.stop()
        if name != "microphone" and self._microphone is not None:
            self._close_microphone(f"stopped: {SOURCE_NAMES[name]} is on air")
            self.message.emit(f"microphone stopped: {SOURCE_NAMES[name]} is on air now")
        if name != self.source:
            self.source = name
            self.on_air_changed.emit(name)

    # -- audio file ------------------------------------------------------------------------------
    def load_file(self, path: str | Path) -> None:
        """Drop the current file at once, open `path` off the UI thread; `file_changed` follows."""
        path = str(path)
        self._set_file(FileState(path, "opening"))
        self._file.load(path, lambda error: self._file_opened.emit(path, error))

    def load_file_now(self, path: str | Path) -> None:
        """Blocking variant for startup scripts; raises AudioFileError (one line)."""
        self._set_file(FileState(str(path), "opening"))
        self._file.load_now(path)
        self._on_file_opened(str(path), "")

    def close_file(self) -> None:
        self._file.unload()
        self._set_file(FileState())

    def _on_file_opened(self, path: str, error: str) -> None:
        if path != self.file.path or self.file.phase != "opening":
            return  # a newer file was chosen meanwhile
        if error:
            self._set_file(FileState(path, "failed", error))
            self.problems.report(Problem("audio_file", _sentence(error)))
            return
        self.problems.solve("audio_file")
        self._file_error_reported = ""
        self._set_file(FileState(path, "ready", duration_s=self._file.duration_s))

    def _set_file(self, state: FileState) -> None:
        self.file = state
        self.file_changed.emit(state)
        if state.phase != "ready" and self.source == "file":  # nothing of the file can play now
            self.source = ""
            self.on_air_changed.emit("")

    def play_file(self) -> None:
        if not self._file.loaded:
            self.message.emit("open an audio file first" if self.file.phase != "opening" else
                              "the audio file is still opening")
            return
        self.select("file")
        self._file.play()

    def pause_file(self) -> None:
        self._file.pause()

    def seek_file(self, seconds: float) -> None:
        self._file.seek(seconds)

    def set_loop(self, on: bool) -> None:
        self._file.loop = on

    # -- microphone ------------------------------------------------------------------------------
    def start_microphone(self, choice: InputChoice | None = None) -> str:
        """Open the microphone (None: the system's default) and put it on air; returns "" or a one-line error."""
        self._close_microphone("")
        try:
            if choice is not None and choice.key.startswith(PULSE_PREFIX):
                mic = PulseMicrophone(self._feed_microphone, choice.key[len(PULSE_PREFIX):], choice.label)
            else:
                mic = Microphone(self._feed_microphone, choice.index if choice is not None else None)
            mic.muted = self.muted
            mic.start()
        except MicrophoneError as exc:
            self.microphone = MicrophoneState(False, note=str(exc))
            self.microphone_changed.emit(self.microphone)
            self.problems.report(Problem("microphone", _sentence(str(exc)),
                                         "Choose another input, or check that it is plugged in and not "
                                         "used by another program."))
            return str(exc)
        self._microphone = mic
        self.problems.solve("microphone")
        self.select("microphone")
        self.microphone = MicrophoneState(True, mic.name)
        self.microphone_changed.emit(self.microphone)
        return ""

    def stop_microphone(self) -> None:
        self._close_microphone("")

    def _close_microphone(self, note: str) -> None:
        mic, self._microphone = self._microphone, None
        if mic is not None:
            mic.close()
            self.microphone = MicrophoneState(False, note=note)
            self.microphone_changed.emit(self.microphone)

    def set_muted(self, muted: bool) -> None:
        self.muted = muted
        if self._microphone is not None:
            self._microphone.muted = muted

    def toggle_mute(self) -> bool:
        """Mute/unmute the microphone (remembered while it is off); returns the new muted state."""
        self.set_muted(not self.muted)
        if self._microphone is None:
            self.message.emit(f"microphone {'muted' if self.muted else 'unmuted'} (it is off: "
                              "Start microphone on the Microphone tab)")
        return self.muted

    # -- text to speech --------------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.select("speech")
        self._speech.say(text, self.voice, self.speech_ready.emit)

    def stop_speech(self) -> None:
        self._speech.stop()

    def set_voice(self, code: str) -> None:
        self.voice = code or DEFAULT_VOICE

    def list_voices(self) -> None:
        """The installed voices, off the UI thread; `voices_listed` follows."""
        def work() -> None:
            voices = list_voices()
            try:
                self.voices_listed.emit(voices)
            except RuntimeError:  # the studio closed meanwhile
                pass
        threading.Thread(target=work, name="list-voices", daemon=True).start()

    def close(self) -> None:
        self._poll.stop()
        self._file.close()
        self._speech.close()
        self.stop_microphone()


def _sentence(line: str) -> str:
    """A one-line error as a sentence for the problems panel; one that starts with a file's name
    keeps the name as it is spelled ("empty.wav is empty", not "Empty.wav")."""
    line = line.strip()
    if not line:
        return line
    first = line.split(maxsplit=1)[0].rstrip(":,;")
    starts_with_name = "." in first or "/" in first
    return (line if starts_with_name else line[:1].upper() + line[1:]).rstrip(".") + "."
