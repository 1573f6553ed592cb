"""The studio's session: a portrait, and the four models that carry it, wired one to the next.

    audio sources --blocks--> engine link --chunks--> playout --frames--> outputs
                                  |                      `--frame_shown--> preview (MainWindow)
                                  `--session opened/ended, errors--> this model's state

This model owns the portrait (it opens the engine session), the live choice (quality, target
latency) it asks the session for, the session's state as the user sees it, and the script mode
(`--quit-when-done`: exit once the file has played and everything is written). Widgets call its
models' methods and observe their signals; tests drive them directly.
"""
from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from avkit.portrait_image import PortraitImageError, load_portrait, read_portrait_bytes
from avkit.timeline import Timeline
from engine.protocol.engine_state import EngineState
from studio.engine_link.link import EngineLink
from studio.engine_link.options import LiveChoice
from studio.live_latency import LiveLatency, engine_facts
from studio.session.audio_sources_model import AudioSourcesModel
from studio.session.outputs_model import OutputsModel
from studio.session.playout_model import PlayoutModel
from studio.session.studio_state import StudioState

MAX_RECENT = 8


class SessionModel(QObject):
    portrait_changed = Signal(str, object)  # path, uint8 RGB [H, W, 3] thumbnail source
    portrait_verdict = Signal(bool, str)  # face found / one-line error
    recent_changed = Signal(object)  # list[str], newest first
    state_changed = Signal(object)  # StudioState
    summary_changed = Signal(str)  # the one-line summary: the playout's numbers, or the state before them
    notice = Signal(str)  # one line for the status bar, from any of the models
    done = Signal(int)  # quit-when-done: everything played and written; exit code
    profiles_changed = Signal(object)  # list[str]: the quality profiles the opened session offers, best first
    settings_refused = Signal(str)  # the engine refused the session's settings (quality, target...); why

    def __init__(self, link: EngineLink, timeline: Timeline = Timeline(), output_device: str | None = None):
        super().__init__()
        self.link = link
        self.outputs = OutputsModel(timeline.fps)
        self.playout = PlayoutModel(self.outputs, timeline, output_device)
        self.sources = AudioSourcesModel(link.send_audio)
        self.mode = "live"  # "file": every frame kept, whatever it costs (--quit-when-done without --pace realtime)
        self.live = LiveChoice()  # quality and target latency asked of every session
        self.timeline = timeline
        self.state = StudioState.NO_ENGINE
        self.portrait_path = ""
        self.portrait_bytes = b""
        self.portrait_problem = ""  # why the last portrait chosen could not be used
        self.recent: list[str] = []
        self.quit_when_done = False
        self.failure = ""  # quit-when-done: why the file could not be played to its end (exit status 1)
        self.refused_settings = ""  # quit-when-done: the engine refused what was asked (exit status 2)
        self.autoplay_file = False  # start the loaded file when the first session opens (scripts)
        self._wire()

    def _wire(self) -> None:
        link, playout, outputs = self.link, self.playout, self.outputs
        link.connected.connect(self._on_connected)
        link.disconnected.connect(self._on_disconnected)
        link.state_changed.connect(self._on_engine_state)
        link.session_opened.connect(self._on_session_opened)
        link.session_refused.connect(self._on_session_refused)
        link.chunk.connect(playout.add_chunk)
        link.metrics.connect(playout.on_engine_metrics)
        link.event.connect(self._on_event)
        link.error.connect(self._on_error)
        self.sources.file_ended.connect(self._on_file_ended)
        playout.catching_up_changed.connect(self._on_catching_up)
        playout.played_to_end.connect(self._on_played_to_end)
        playout.summary_changed.connect(self.summary_changed)
        playout.output_changed.connect(lambda note: self.notice.emit(note) if note else None)
        playout.skipped.connect(lambda now, total: self.notice.emit(
            f"skipped {now:.1f} s of video to stay live ({total:.1f} s in all)"))
        outputs.notice.connect(self.notice)
        outputs.finished.connect(lambda errors: self.done.emit(self.exit_code(errors)))

    def exit_code(self, output_errors: list[str]) -> int:
        """Quit-when-done: 2 when the engine refused the settings asked, 1 when the file could not be
        played or written to its end, else 0."""
        if self.refused_settings:
            return 2
        return 1 if output_errors or self.failure else 0

    # -- state -----------------------------------------------------------------------------------
    def _set_state(self, state: StudioState) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)
            if not self.playout.started:  # before the first session the summary says what is going on
                self.summary_changed.emit(str(state))

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
        self.set_recent([path] + [p for p in self.recent if p != path])
        self.portrait_changed.emit(path, image)
        self.portrait_verdict.emit(True, "checking the portrait with the engine…")
        self.open_session()
        return True

    def set_recent(self, paths: list[str]) -> None:
        self.recent = list(paths[:MAX_RECENT])
        self.recent_changed.emit(list(self.recent))

    def open_session(self) -> None:
        if not self.portrait_bytes:
            self._set_state(StudioState.WAITING_FOR_PORTRAIT)
            return
        if not self.link.is_connected:
            return
        self._set_state(StudioState.OPENING)
        self.link.open_session(self.portrait_bytes, self.link.options.session_settings(self.mode, self.live))

    def set_live_choice(self, choice: LiveChoice) -> None:
        """A new quality choice or target latency: the open session is opened again with it."""
        if choice == self.live:
            return
        self.live = choice
        if self.link.is_connected:
            self.open_session()

    # -- engine link -----------------------------------------------------------------------------
    def _on_connected(self, welcome) -> None:
        self.open_session()

    def _on_disconnected(self, reason: str) -> None:
        self.playout.detach()
        self._set_state(StudioState.RECONNECTING if self.link.options.attached else StudioState.ENGINE_RESTARTING)
        self._give_up(f"lost the engine: {reason}")

    def _on_engine_state(self, state: EngineState, message: str) -> None:
        if state is EngineState.FAILED:  # the engine cannot start: no session will ever open
            self._give_up(message)

    def _on_session_opened(self, opened) -> None:
        facts = engine_facts(opened)
        latency = None
        if self.mode == "live":
            latency = LiveLatency.for_session(opened, self.live.target_latency_s or None, self.timeline)
        self.playout.begin(opened.sample_rate, latency, facts)
        self.profiles_changed.emit(facts["profiles"])
        face = " (face found)" if opened.face_box else ""
        self.portrait_verdict.emit(True, f"ready: {opened.width}x{opened.height} "
                                   f"{opened.backend}{face}, prepared in {opened.prepare_ms / 1e3:.1f} s")
        self._set_state(StudioState.LIVE)
        if self.autoplay_file:
            self.autoplay_file = False
            self.sources.play_file()

    def _on_session_refused(self, code: str, message: str) -> None:
        if code == "bad_settings":  # what was asked (quality, target latency...), not the portrait
            self.settings_refused.emit(message)
            if self.quit_when_done:
                self.refused_settings = message
            self._set_state(StudioState.SESSION_FAILED)
        else:
            self.portrait_verdict.emit(False, message)
            self._set_state(StudioState.WAITING_FOR_PORTRAIT)
        self._give_up(message)

    def _on_event(self, kind: str, message: str, data: dict | None = None) -> None:
        data = data or {}
        if kind == "session_ended":
            self.playout.end_of_session()
            return
        if kind == "warning":
            self.playout.stats.on_engine_warning(time.monotonic(), message)
        elif kind == "profile" and data.get("profile"):
            self.playout.stats.profile = str(data["profile"])
        if message:
            self.notice.emit(f"engine: {message}")

    def _on_error(self, code: str, message: str, fatal: bool) -> None:
        self.notice.emit(f"engine error: {message}")
        if fatal:
            self._set_state(StudioState.SESSION_FAILED)
            self._give_up(message)

    # -- sources and playout ---------------------------------------------------------------------
    def _on_file_ended(self) -> None:
        if self.mode == "file" or self.quit_when_done:  # a script's file played live ends its session too
            self.link.end_audio()

    def _on_catching_up(self, starving: bool) -> None:
        if self.state in (StudioState.LIVE, StudioState.CATCHING_UP):
            self._set_state(StudioState.CATCHING_UP if starving else StudioState.LIVE)

    def _on_played_to_end(self) -> None:
        self._set_state(StudioState.ENDED)
        if self.quit_when_done and not self.outputs.closing:
            self.outputs.finish()

    # -- the end ---------------------------------------------------------------------------------
    def _give_up(self, reason: str) -> None:
        """Quit-when-done: the file can no longer play to its end (a script would otherwise wait
        forever); keep what the outputs hold and exit non-zero."""
        if self.quit_when_done and not self.outputs.closing:
            self.failure = reason
            self.outputs.finish()

    def shutdown(self) -> None:
        self.sources.close()
        self.outputs.close()
        self.playout.close()
        self.link.shutdown()
