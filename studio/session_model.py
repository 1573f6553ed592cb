"""The studio's session: portrait, audio source, engine session, playout and outputs (no widgets).

Widgets observe its signals and call its methods; tests drive it directly. It runs on the UI
thread but only does bounded, small work there: socket I/O lives on the engine worker's thread,
audio on the sources' and output's threads, encoding on the recorder's thread.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal

from avkit.portrait_image import PortraitImageError, load_portrait, read_portrait_bytes
from avkit.timeline import Timeline
from studio.audio.audio_file_source import AudioFileSource
from studio.audio.audio_output import open_output
from studio.audio.microphone import Microphone, MicrophoneError
from studio.audio.playout_clock import PlayoutClock
from studio.audio.tts import SpeechSource
from studio.engine_client import EngineLink
from studio.engine_options import EngineOptions
from studio.frame_schedule import DueFrame, FrameSchedule, ReceivedChunk
from studio.outputs.fanout import OutputFanout
from studio.outputs.recorder import Recorder
from studio.outputs.virtual_camera import (
    VirtualCamera,
    VirtualCameraConfig,
    VirtualCameraUnavailable,
)
from studio.session_stats import SessionStats

TICK_MS = 10  # frame presentation check at the latest; well under one frame period (40 ms)
SUMMARY_MS = 250
MAX_RECENT = 8
SOURCES = ("microphone", "file", "speech")
RECORDER_FINISH_S = 10.0  # at quit: time to finish the recording before the process exits


class SessionModel(QObject):
    portrait_changed = Signal(str, object)  # path, uint8 RGB [H, W, 3] thumbnail source
    portrait_verdict = Signal(bool, str)  # face found / one-line error
    recent_changed = Signal(object)
    state_changed = Signal(str)  # see `state`
    frame_shown = Signal(object)  # DueFrame
    summary_changed = Signal(str)
    notice = Signal(str)  # one line for the status bar
    recording_changed = Signal(bool)  # recording or not (a failed recorder stops itself)
    source_changed = Signal(str)
    audio_file_loaded = Signal(str, str)  # path, error ("" when fine)
    speech_ready = Signal(str)  # error ("" when fine)
    _file_ended = Signal()
    done = Signal(int)  # quit-when-done: everything played and written; exit code

    def __init__(self, link: EngineLink, timeline: Timeline = Timeline(), output_device: str | None = None):
        super().__init__()
        self.link = link
        self.timeline = timeline
        self.engine_options = EngineOptions()
        self.mode = "live"  # "file": the audio file's end ends the session (--quit-when-done)
        self.state = "no engine"
        self.portrait_path = ""
        self.portrait_bytes = b""
        self.portrait_problem = ""  # why the last portrait chosen could not be used
        self.recent: list[str] = []
        self.outputs = OutputFanout()
        self.virtual_camera: VirtualCamera | None = None
        self.recorder: Recorder | None = None
        self.stats = SessionStats(timeline.fps, t0=time.monotonic())
        self.clock: PlayoutClock | None = None
        self.schedule = FrameSchedule(timeline)
        self.session_ended = False
        self.source = "file"
        self.file_player = AudioFileSource(lambda pcm, t: self._feed("file", pcm, t),
                                           on_end=self._file_ended.emit)
        self.speech = SpeechSource(lambda pcm, t: self._feed("speech", pcm, t))
        self.microphone: Microphone | None = None
        self.quit_when_done = False
        self.failure = ""  # quit-when-done: why the file could not be played to its end (exit status 1)
        self.autoplay_file = False  # start the loaded file when the first session opens (scripts)
        self._closing_outputs = False
        self.output, note = open_output(output_device)
        self.output.start()
        if note:
            self.notice.emit(note)
        self.output_note = note
        self._wire_engine()
        self._file_ended.connect(self._on_file_ended)
        self._tick_timer = QTimer(self)
        self._tick_timer.setTimerType(Qt.PreciseTimer)
        self._tick_timer.timeout.connect(self.tick)
        self._tick_timer.start(TICK_MS)
        self._summary_timer = QTimer(self)
        self._summary_timer.timeout.connect(self._update_summary)
        self._summary_timer.start(SUMMARY_MS)

    def _wire_engine(self) -> None:
        link = self.link
        link.connected.connect(self._on_connected)
        link.disconnected.connect(self._on_disconnected)
        link.session_opened.connect(self._on_session_opened)
        link.session_refused.connect(self._on_session_refused)
        link.chunk.connect(self._on_chunk)
        link.metrics.connect(self._on_metrics)
        link.event.connect(self._on_event)
        link.error.connect(self._on_error)
        link.state_changed.connect(self._on_engine_state)

    # -- state -----------------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)

    @property
    def catching_up(self) -> bool:
        return self.clock is not None and self.clock.starving

    # -- portrait --------------------------------------------------------------------------------
    def set_portrait(self, path: str | Path) -> bool:
        """Read and check a portrait file; (re)open the session with it when an engine is connected."""
        path = str(path)
        try:
            data = read_portrait_bytes(path)
            image = load_portrait(data)
        except (PortraitImageError, OSError) as exc:
            self.portrait_problem = str(exc)
            self.portrait_verdict.emit(False, self.portrait_problem)
            return False
        self.portrait_path, self.portrait_bytes = path, data
        self.recent = [path] + [p for p in self.recent if p != path][:MAX_RECENT - 1]
        self.recent_changed.emit(list(self.recent))
        self.portrait_changed.emit(path, image)
        self.portrait_verdict.emit(True, "checking the portrait with the engine…")
        self.open_session()
        return True

    def open_session(self) -> None:
        if not self.portrait_bytes:
            self._set_state("waiting for a portrait")
            return
        if not self.link.is_connected:
            return
        self._set_state("opening")
        self.link.open_session(self.portrait_bytes, self.engine_options.session_settings(self.mode))

    # -- audio sources ---------------------------------------------------------------------------
    def select_source(self, name: str) -> None:
        if name not in SOURCES:
            raise ValueError(f"unknown audio source {name!r}")
        if name != "file":
            self.file_player.pause()
        if name != "speech":
            self.speech.pause()
        if name != "microphone":
            self.stop_microphone()
        self.source = name
        self.source_changed.emit(name)

    def _feed(self, source: str, pcm: np.ndarray, capture_t: float) -> None:
        """Audio sink shared by the sources (called on their threads); only the chosen one speaks."""
        if source == self.source:
            self.link.send_audio(pcm, capture_t)

    def load_audio_file(self, path: str | Path) -> None:
        self.file_player.load(path, lambda error: self.audio_file_loaded.emit(str(path), error))

    def load_audio_file_now(self, path: str | Path) -> None:
        """Blocking variant for startup scripts; raises AudioFileError (one line)."""
        self.file_player.load_now(path)
        self.audio_file_loaded.emit(str(path), "")

    def start_microphone(self, device: int | None = None) -> str:
        """Open the microphone; returns "" or a one-line error."""
        self.stop_microphone()
        try:
            self.microphone = Microphone(lambda pcm, t: self._feed("microphone", pcm, t), device)
            self.microphone.start()
        except MicrophoneError as exc:
            self.microphone = None
            return str(exc)
        self.select_source("microphone")
        return ""

    def stop_microphone(self) -> None:
        mic, self.microphone = self.microphone, None
        if mic is not None:
            mic.close()

    def say(self, text: str) -> None:
        self.select_source("speech")
        self.speech.say(text, self.speech_ready.emit)

    def toggle_mute(self) -> bool:
        """Mute/unmute the microphone; returns the new muted state (False without a microphone)."""
        if self.microphone is None:
            return False
        self.microphone.muted = not self.microphone.muted
        return self.microphone.muted

    # -- outputs ---------------------------------------------------------------------------------
    def start_virtual_camera(self, config: VirtualCameraConfig | None = None) -> str:
        """Send the video to a virtual camera; returns "" or a one-line "what to do" message."""
        self.stop_virtual_camera()
        config = config or VirtualCameraConfig()
        try:
            self.virtual_camera = VirtualCamera(config, self.timeline.fps)
        except VirtualCameraUnavailable as exc:
            self.notice.emit(str(exc))
            return str(exc)
        self.outputs.add(self.virtual_camera)
        self.notice.emit(f"virtual camera on: {self.virtual_camera.device} "
                         f"({config.width}x{config.height} at {config.fps} fps)")
        return ""

    def stop_virtual_camera(self) -> None:
        camera, self.virtual_camera = self.virtual_camera, None
        if camera is not None:
            self.outputs.remove(camera)
            camera.close(lambda error: self.notice.emit(error or "virtual camera off"))

    def start_recording(self, path: str | Path) -> None:
        self.stop_recording()
        self.recorder = Recorder(path)
        self.outputs.add(self.recorder)
        self.notice.emit(f"recording to {path}")
        self.recording_changed.emit(True)

    def stop_recording(self) -> None:
        """Finish the file on the recorder's thread; a notice says where it went."""
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            self.outputs.remove(recorder)
            recorder.close(lambda error: self.notice.emit(error or f"recorded {recorder.path}"))
            self.recording_changed.emit(False)

    def _on_file_ended(self) -> None:
        if self.mode == "file":
            self.link.end_audio()

    def set_output_device(self, name: str | None) -> None:
        old = self.output
        self.output, self.output_note = open_output(name)
        old.close()
        self.output.attach(self.clock)
        self.output.start()
        if self.output_note:
            self.notice.emit(self.output_note)

    # -- engine events ---------------------------------------------------------------------------
    def _on_connected(self, welcome) -> None:
        self.open_session()

    def _on_disconnected(self, reason: str) -> None:
        self.output.attach(None)
        self._set_state("engine restarting" if not self.engine_options.attached else "reconnecting")
        self._give_up(f"lost the engine: {reason}")

    def _on_engine_state(self, state: str, message: str) -> None:
        if state == "failed":  # the engine cannot start: no session will ever open
            self._give_up(message)

    def _on_session_opened(self, opened) -> None:
        self.stats.new_session()
        self.clock = PlayoutClock(opened.sample_rate)
        self.schedule = FrameSchedule(self.timeline)
        self.session_ended = False
        self.output.attach(self.clock)
        face = " (face found)" if opened.face_box else ""
        self.portrait_verdict.emit(True, f"ready: {opened.width}x{opened.height} "
                                   f"{opened.backend}{face}, prepared in {opened.prepare_ms / 1e3:.1f} s")
        self._set_state("live")
        if self.autoplay_file:
            self.autoplay_file = False
            self.select_source("file")
            self.file_player.play()

    def _on_session_refused(self, code: str, message: str) -> None:
        self.portrait_verdict.emit(False, message)
        self._set_state("waiting for a portrait")
        self._give_up(message)

    def _on_chunk(self, chunk: ReceivedChunk) -> None:
        clock = self.clock
        if clock is None:
            return
        gap = chunk.first_frame - self.schedule.end_frame
        if gap > 0:  # frames the engine dropped: keep the timeline exact with silence
            clock.push(np.zeros(gap * self.timeline.samples_per_frame, np.float32))
        clock.push(chunk.audio)
        self.schedule.add(chunk)
        self.stats.on_chunk(chunk)
        if not self._closing_outputs:
            self.outputs.write(chunk.frames, chunk.audio)

    def _on_metrics(self, values: dict) -> None:
        self.stats.dropped_now = int(values.get("dropped_frames", 0)) + int(values.get("skipped_frames", 0)) \
            + self.schedule.late + self.schedule.evicted

    def _on_event(self, kind: str, message: str) -> None:
        if kind == "session_ended":
            self.session_ended = True
            if self.clock is not None:
                self.clock.finished = True
        elif message:
            self.notice.emit(f"engine: {message}")

    def _on_error(self, code: str, message: str, fatal: bool) -> None:
        self.notice.emit(f"engine error: {message}")
        if fatal:
            self._set_state("session failed")
            self._give_up(message)

    # -- presentation (UI thread, every TICK_MS or sooner) ---------------------------------------
    def tick(self) -> None:
        if self.recorder is not None and self.recorder.failed:  # e.g. the disk filled up: its notice says why
            self.stop_recording()
        clock = self.clock
        if clock is None:
            return
        now = time.monotonic()
        position = clock.position(now)
        due: DueFrame | None = self.schedule.due(position)
        self._tick_timer.setInterval(self._next_tick_ms(position))
        if due is not None:
            self.stats.on_frame_shown(now, due.capture_t, clock.buffered_s())
            if not self._closing_outputs:
                self.outputs.show(due.index, due.image)  # the virtual camera: same moment as the preview
            self.frame_shown.emit(due)
        if self.state in ("live", "catching up"):
            self._set_state("catching up" if clock.starving else "live")
        self.stats.underruns_now = clock.underruns
        if self.session_ended and self.schedule.shown + 1 >= self.schedule.end_frame:
            self._set_state("ended")
            if self.quit_when_done and not self._closing_outputs:
                self.finish_outputs()

    def _next_tick_ms(self, position: float) -> int:
        """Wake right after the next frame's first sample is heard rather than up to TICK_MS later,
        so the preview and the virtual camera do not trail the voice by the polling period."""
        boundary = (self.schedule.shown + 1) * self.timeline.samples_per_frame
        ahead_ms = 1e3 * (boundary - position) / self.timeline.sample_rate
        if ahead_ms <= 0 or self.clock is None or self.clock.starving:  # not due yet / no frame: poll
            return TICK_MS
        return max(1, min(TICK_MS, math.ceil(ahead_ms)))

    def _update_summary(self) -> None:
        if self.clock is None:
            self.summary_changed.emit(self.state)
        else:
            self.summary_changed.emit(self.stats.summary(time.monotonic(), self.catching_up))

    def finish_outputs(self) -> None:
        """Close every output (recorder files finish on their threads), then emit `done`."""
        self._closing_outputs = True
        self.outputs.close_all(lambda errors: self.done.emit(1 if errors or self.failure else 0))

    def _give_up(self, reason: str) -> None:
        """Quit-when-done: the file can no longer play to its end (a script would otherwise wait
        forever); keep what the outputs hold and exit non-zero."""
        if self.quit_when_done and not self._closing_outputs:
            self.failure = reason
            self.finish_outputs()

    def shutdown(self) -> None:
        self._tick_timer.stop()
        self._summary_timer.stop()
        self.file_player.close()
        self.speech.close()
        self.stop_microphone()
        self.stop_virtual_camera()
        recorder = self.recorder
        self.stop_recording()
        if recorder is not None:
            recorder.wait(RECORDER_FINISH_S)
        self.output.close()
        self.link.shutdown()
