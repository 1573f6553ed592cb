"""The audio sources: microphone, audio file and text-to-speech; only the chosen one speaks.

Each source runs on its own thread and hands its blocks to `sink` (the engine link) with their
capture time. Every POLL_MS the model reports what a meter and a transport bar show (`status`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from studio.audio import AudioSink
from studio.audio.audio_file_source import AudioFileSource
from studio.audio.microphone import Microphone, MicrophoneError
from studio.audio.tts import SpeechSource

SOURCES = ("microphone", "file", "speech")
POLL_MS = 50  # file position and microphone level


@dataclass(frozen=True)
class SourceStatus:
    file_position_s: float
    file_playing: bool
    level: float  # peak of the microphone's last block, 0..1 (0 without a microphone)
    microphone_on: bool
    muted: bool


class AudioSourcesModel(QObject):
    source_changed = Signal(str)  # one of SOURCES
    file_loaded = Signal(str, str, float)  # path, error ("" when fine), duration in seconds
    file_ended = Signal()  # the file played to its end (without looping)
    speech_ready = Signal(str)  # error ("" when fine)
    status = Signal(object)  # SourceStatus, every POLL_MS

    def __init__(self, sink: AudioSink, poll_ms: int = POLL_MS):
        super().__init__()
        self._sink = sink
        self.source = "file"
        self._file = AudioFileSource(lambda pcm, t: self._feed("file", pcm, t), on_end=self.file_ended.emit)
        self._speech = SpeechSource(lambda pcm, t: self._feed("speech", pcm, t))
        self._microphone: Microphone | None = None
        self._poll = QTimer(self)
        self._poll.timeout.connect(lambda: self.status.emit(self.current_status()))
        self._poll.start(poll_ms)

    def _feed(self, source: str, pcm: np.ndarray, capture_t: float) -> None:
        """Audio sink shared by the sources (called on their threads); only the chosen one speaks."""
        if source == self.source:
            self._sink(pcm, capture_t)

    @property
    def speech_available(self) -> bool:
        return self._speech.available()

    @property
    def file_path(self) -> Path | None:
        return self._file.path

    def current_status(self) -> SourceStatus:
        mic = self._microphone
        return SourceStatus(self._file.position_s, self._file.playing, mic.level if mic else 0.0,
                            mic is not None, bool(mic and mic.muted))

    def select(self, name: str) -> None:
        if name not in SOURCES:
            raise ValueError(f"unknown audio source {name!r}")
        if name != "file":
            self._file.pause()
        if name != "speech":
            self._speech.pause()
        if name != "microphone":
            self.stop_microphone()
        self.source = name
        self.source_changed.emit(name)

    # -- audio file ------------------------------------------------------------------------------
    def load_file(self, path: str | Path) -> None:
        """Decode off the UI thread; `file_loaded` follows."""
        self._file.load(path, lambda error: self.file_loaded.emit(str(path), error, self._file.duration_s))

    def load_file_now(self, path: str | Path) -> None:
        """Blocking variant for startup scripts; raises AudioFileError (one line)."""
        self._file.load_now(path)
        self.file_loaded.emit(str(path), "", self._file.duration_s)

    def play_file(self) -> None:
        self.select("file")
        self._file.play()

    def pause_file(self) -> None:
        self._file.pause()

    def seek_file(self, seconds: float) -> None:
        self._file.seek(seconds)

    def set_loop(self, on: bool) -> None:
        self._file.loop = on

    # -- microphone ------------------------------------------------------------------------------
    def start_microphone(self, device: int | None = None) -> str:
        """Open the microphone; returns "" or a one-line error."""
        self.stop_microphone()
        try:
            self._microphone = Microphone(lambda pcm, t: self._feed("microphone", pcm, t), device)
            self._microphone.start()
        except MicrophoneError as exc:
            self._microphone = None
            return str(exc)
        self.select("microphone")
        return ""

    def stop_microphone(self) -> None:
        mic, self._microphone = self._microphone, None
        if mic is not None:
            mic.close()

    def set_muted(self, muted: bool) -> None:
        if self._microphone is not None:
            self._microphone.muted = muted

    def toggle_mute(self) -> bool:
        """Mute/unmute the microphone; returns the new muted state (False without a microphone)."""
        if self._microphone is None:
            return False
        self._microphone.muted = not self._microphone.muted
        return self._microphone.muted

    # -- text to speech --------------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.select("speech")
        self._speech.say(text, self.speech_ready.emit)

    def close(self) -> None:
        self._poll.stop()
        self._file.close()
        self._speech.close()
        self.stop_microphone()
