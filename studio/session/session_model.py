"""The studio's session: a portrait, and the models that carry it, wired one to the next.

    audio sources --blocks--> engine link --chunks--> playout --frames--> outputs
                                  |                      `--frame_shown--> preview (MainWindow)
                                  `--engine states, session opened/ended, errors--> this model's status

This model owns the portrait (it opens the engine session), the one status the whole window shows
(`StudioStatus`, derived from the engine's state and the session's), the problems that wait for
the user, and the script mode (`--quit-when-done`: exit once the file has played and everything is
written). Widgets call its models' methods and observe their signals; tests drive them directly.

A portrait becomes the session's only once the engine has checked it (`check_portrait`, answered
while a live session goes on): a refused one changes nothing but the portrait panel's verdict.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from avkit.portrait_image import PortraitImageError, load_portrait, read_portrait_bytes
from avkit.timeline import Timeline
from engine.protocol.engine_state import EngineState
from studio.engine_link.link import EngineLink
from studio.engine_link.options import LiveChoice
from studio.live_latency import LiveLatency, engine_facts
from studio.session.audio_sources_model import AudioSourcesModel
from studio.session.devices_model import DevicesModel
from studio.session.outputs_model import OutputsModel
from studio.session.playout_model import PlayoutModel
from studio.session.problems_model import Problem, ProblemsModel
from studio.session.studio_state import ACTIVE, StudioState, StudioStatus

MAX_RECENT = 8
SESSION_PHASES = ("none", "preparing", "open", "ended", "failed")
VERDICTS = ("checking", "ok", "refused")  # what the portrait panel says about the last portrait chosen
MODEL_DOWNLOAD = "flashtalk models download ~/models"
STARTING_ENGINE = (EngineState.STARTING, EngineState.CONNECTING, EngineState.READY)  # not connected yet


@dataclass(frozen=True)
class PortraitCandidate:
    """A portrait the user chose that the engine has not accepted yet."""

    request: int
    path: str
    data: bytes
    image: np.ndarray  # uint8 RGB [H, W, 3]


class SessionModel(QObject):
    portrait_changed = Signal(str, object)  # path, uint8 RGB [H, W, 3] thumbnail source: the engine accepted it
    portrait_verdict = Signal(str, str)  # one of VERDICTS, one line
    recent_changed = Signal(object)  # list[str], newest first
    state_changed = Signal(object)  # StudioStatus
    summary_changed = Signal(str)  # the one-line summary: the playout's numbers while running, else the status
    notice = Signal(str)  # one line for the status bar, from any of the models
    done = Signal(int)  # quit-when-done: everything played and written; exit code
    profiles_changed = Signal(object)  # list[str]: the quality profiles the opened session offers, best first
    settings_refused = Signal(str)  # the engine refused the session's settings (quality, target...); why
    _portrait_read = Signal(int, str, object, object, str)  # request, path, bytes, image, error (reader thread)

    def __init__(self, link: EngineLink, timeline: Timeline = Timeline(), output_device: str | None = None):
        super().__init__()
        self.link = link
        self.problems = ProblemsModel()
        self.outputs = OutputsModel(timeline.fps, self.problems)
        self.playout = PlayoutModel(self.outputs, timeline, output_device)
        self.sources = AudioSourcesModel(link.send_audio, self.problems)
        self.devices = DevicesModel()
        self.mode = "live"  # "file": every frame kept, whatever it costs (--quit-when-done without --pace realtime)
        self.live = LiveChoice()  # quality and target latency asked of every session
        self.timeline = timeline
        self.status = StudioStatus(StudioState.STOPPED, "press Start to run the engine")
        self.portrait_path = ""
        self.portrait_bytes = b""
        self.portrait_problem = ""  # why the last portrait chosen could not be used
        self.recent: list[str] = []
        self.quit_when_done = False
        self.failure = ""  # quit-when-done: why the file could not be played to its end (exit status 1)
        self.refused_settings = ""  # quit-when-done: the engine refused what was asked (exit status 2)
        self.autoplay_file = False  # start the loaded file when the first session opens (scripts)
        self._engine: tuple[EngineState, str] = (EngineState.STOPPED, "")
        self._session = "none"  # one of SESSION_PHASES
        self._session_detail = ""  # preparing: the engine's progress; failed: why
        self._starving = False
        self._candidate: PortraitCandidate | None = None
        self._requests = 0
        self._wire()

    @property
    def state(self) -> StudioState:
        return self.status.state

    def _wire(self) -> None:
        link, playout, outputs = self.link, self.playout, self.outputs
        link.connected.connect(self._on_connected)
        link.disconnected.connect(self._on_disconnected)
        link.state_changed.connect(self._on_engine_state)
        link.session_opened.connect(self._on_session_opened)
        link.session_refused.connect(self._on_session_refused)
        link.portrait_checked.connect(self._on_portrait_checked)
        link.chunk.connect(playout.add_chunk)
        link.metrics.connect(playout.on_engine_metrics)
        link.event.connect(self._on_event)
        link.error.connect(self._on_error)
        self._portrait_read.connect(self._on_portrait_read)
        self.sources.file_ended.connect(self._on_file_ended)
        self.sources.message.connect(self.notice)
        playout.catching_up_changed.connect(self._on_catching_up)
        playout.played_to_end.connect(self._on_played_to_end)
        playout.summary_changed.connect(self._on_playout_summary)
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

    # -- the one status --------------------------------------------------------------------------
    def _derive(self) -> StudioStatus:
        engine, message = self._engine
        if engine is EngineState.FAILED:
            return StudioStatus(StudioState.FAILED, message)
        if not self.link.running:
            return StudioStatus(StudioState.STOPPED, "press Start to run the engine")
        if engine in (EngineState.RESTARTING, EngineState.RECONNECTING):
            return StudioStatus(StudioState.RESTARTING, message)
        if engine is EngineState.WARMING_UP:
            return StudioStatus(StudioState.WARMING_UP, message)
        if engine in STARTING_ENGINE or not self.link.is_connected:
            return StudioStatus(StudioState.STARTING, message)
        if self._session == "open":
            return StudioStatus(StudioState.CATCHING_UP if self._starving else StudioState.RUNNING)
        if self._session == "preparing":
            return StudioStatus(StudioState.PREPARING, self._session_detail or "preparing the avatar")
        if self._session == "ended":
            return StudioStatus(StudioState.ENDED, "the audio file played to its end")
        if self._session == "failed":
            return StudioStatus(StudioState.FAILED, self._session_detail)
        if self._candidate is not None:
            return StudioStatus(StudioState.READY, "checking the portrait")
        return StudioStatus(StudioState.READY, "open a portrait to start")

    def _update(self) -> None:
        status = self._derive()
        if status == self.status:
            return
        self.status = status
        self.state_changed.emit(status)
        if status.state not in ACTIVE:  # the numbers would be stale: say what is going on instead
            self.summary_changed.emit(status.text)

    def _on_playout_summary(self, text: str) -> None:
        if self.status.state in ACTIVE:
            self.summary_changed.emit(text)

    # -- portrait --------------------------------------------------------------------------------
    def set_portrait(self, path: str | Path) -> None:
        """Read the portrait off the UI thread, have the engine check it, and only then use it;
        `portrait_verdict` says how far it got."""
        path = str(path)
        self._requests += 1
        request = self._requests
        self.portrait_verdict.emit("checking", f"reading {Path(path).name}…")

        def work() -> None:
            data, image, error = b"", None, ""
            try:
                data = read_portrait_bytes(path)
                image = load_portrait(data)
            except (PortraitImageError, OSError) as exc:
                error = str(exc)
            try:
                self._portrait_read.emit(request, path, data, image, error)
            except RuntimeError:  # the studio closed meanwhile
                pass
        threading.Thread(target=work, name="portrait-read", daemon=True).start()

    def _on_portrait_read(self, request: int, path: str, data: bytes, image, error: str) -> None:
        if request != self._requests:
            return  # a newer portrait was chosen meanwhile
        if error:
            self._refuse(error)
            return
        self._candidate = PortraitCandidate(request, path, data, image)
        self._check_candidate()

    def _check_candidate(self) -> None:
        candidate = self._candidate
        if candidate is None:
            return
        if not self.link.is_connected:
            self.portrait_verdict.emit("checking", "the engine checks it once it runs")
        else:
            self.portrait_verdict.emit("checking", "the engine checks the portrait…")
            self.link.check_portrait(candidate.data, candidate.request)
        self._update()

    def _on_portrait_checked(self, answer) -> None:
        candidate = self._candidate
        if candidate is None or answer.request != candidate.request:
            return
        self._candidate = None
        if not answer.ok:
            self._refuse(answer.message)
            self._update()
            return
        self.portrait_problem = ""
        self.portrait_path, self.portrait_bytes = candidate.path, candidate.data
        self.set_recent([candidate.path] + [p for p in self.recent if p != candidate.path])
        self.portrait_changed.emit(candidate.path, candidate.image)
        self.open_session()

    def _refuse(self, message: str) -> None:
        """The portrait chosen last cannot be used: say why; the session, thumbnail and recents stay."""
        self.portrait_problem = message
        self.portrait_verdict.emit("refused", message)
        self._give_up(message)

    def set_recent(self, paths: list[str]) -> None:
        self.recent = list(paths[:MAX_RECENT])
        self.recent_changed.emit(list(self.recent))

    def open_session(self) -> None:
        if not self.portrait_bytes or not self.link.is_connected:
            self._update()
            return
        self._session, self._session_detail = "preparing", ""
        self.portrait_verdict.emit("checking", "the engine prepares the avatar…")
        self.link.open_session(self.portrait_bytes, self.link.options.session_settings(self.mode, self.live))
        self._update()

    def set_live_choice(self, choice: LiveChoice) -> None:
        """A new quality choice or target latency: the open session is opened again with it."""
        if choice == self.live:
            return
        self.live = choice
        if self.link.is_connected:
            self.open_session()

    # -- engine link -----------------------------------------------------------------------------
    def toggle_engine(self, options) -> None:
        """Start/Stop (Ctrl+Return): stop the engine that runs or starts, else start one (again,
        after a failure) with `options`."""
        if self.status.engine_running:
            self.link.stop()
        else:
            self.link.start(options)

    def _on_connected(self, welcome) -> None:
        self._update()
        if self._candidate is not None:
            self._check_candidate()
        else:
            self.open_session()

    def _on_disconnected(self, reason: str) -> None:
        self.playout.detach()
        self._session = "none"
        if self.link.running and self._engine[0] is EngineState.CONNECTED:  # a restart or reconnect follows
            self._engine = (EngineState.RESTARTING, f"lost the engine: {reason}")
        self._update()
        if self.link.running:
            self._give_up(f"lost the engine: {reason}")

    def _on_engine_state(self, state: EngineState, message: str) -> None:
        self._engine = (state, message)
        if state is EngineState.FAILED:  # the engine cannot start: no session will ever open
            self.problems.report(_engine_problem(message, model_missing=bool(self.link.options.problem())))
            self._give_up(message)
        elif state in (EngineState.STARTING, EngineState.CONNECTING, EngineState.STOPPED):
            self.problems.solve("engine")
        self._update()

    def _on_session_opened(self, opened) -> None:
        self.playout.stats.break_lines(time.monotonic())  # no line across the time without a session
        facts = engine_facts(opened)
        latency = None
        if self.mode == "live":
            latency = LiveLatency.for_session(opened, self.live.target_latency_s or None, self.timeline)
        self.playout.begin(opened.sample_rate, latency, facts)
        self.profiles_changed.emit(facts["profiles"])
        self._session, self._starving = "open", False
        self.problems.solve("session")
        face = " (face found)" if opened.face_box else ""
        self.portrait_verdict.emit("ok", f"ready: {opened.width}x{opened.height} "
                                   f"{opened.backend}{face}, prepared in {opened.prepare_ms / 1e3:.1f} s")
        self._update()
        if self.autoplay_file:
            self.autoplay_file = False
            self.sources.play_file()

    def _on_session_refused(self, code: str, message: str) -> None:
        if code == "bad_settings":  # what was asked (quality, target latency...), not the portrait
            self.settings_refused.emit(message)
            if self.quit_when_done:
                self.refused_settings = message
            self._session, self._session_detail = "failed", f"the engine refused the settings: {message}"
            self._update()
            self._give_up(message)
            return
        self._session = "none"
        self._refuse(message)
        self._update()

    def _on_event(self, kind: str, message: str, data: dict | None = None) -> None:
        data = data or {}
        if kind == "session_ended":
            self.playout.end_of_session()
            return
        if kind == "progress":
            if self._session == "preparing":
                self._session_detail = message
                self._update()
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
            self._session, self._session_detail = "failed", f"the session stopped: {message}"
            self.problems.report(Problem("session", f"The avatar session stopped: {message}.",
                                         "Open the portrait again (or Restart the engine) to go on."))
            self._update()
            self._give_up(message)

    # -- sources and playout ---------------------------------------------------------------------
    def _on_file_ended(self) -> None:
        if self.mode == "file" or self.quit_when_done:  # a script's file played live ends its session too
            self.link.end_audio()

    def _on_catching_up(self, starving: bool) -> None:
        self._starving = starving
        self._update()

    def _on_played_to_end(self) -> None:
        self._session = "ended"
        self._update()
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


def _engine_problem(message: str, model_missing: bool) -> Problem:
    """The engine cannot start: its reason, and the command that gets the model when that is what is missing."""
    return Problem("engine", f"The engine cannot start: {message}.",
                   "Get the model with the command below, choose its folder under Model, then press Start."
                   if model_missing else "Change the engine settings, then press Start.",
                   (MODEL_DOWNLOAD,) if model_missing else ())
