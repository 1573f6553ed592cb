"""The main window: problems, the controls bar (Start, Record, Virtual camera, REC / LIVE), the
preview and its summary in the middle; portrait, audio, engine and graphs as dock widgets that
collapse (View menu) and whose layout persists. It only wires widgets to the session's models: it
calls their methods and listens to their signals.

The layout fits a 1280x720 laptop screen: the side docks take the window's full height and the
graphs sit under the preview only."""
from __future__ import annotations

import time
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QSettings, Qt, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from studio.engine_link.options import LiveChoice
from studio.outputs.virtual_camera_settings import load_camera_config
from studio.session.audio_sources_model import SourceStatus
from studio.session.devices_model import DeviceList
from studio.session.outputs_model import recording_path
from studio.session.session_model import SessionModel
from studio.session.studio_state import StudioStatus
from studio.settings_store import StudioSettings, load_settings, save_settings
from studio.stall_monitor import StallMonitor
from studio.widgets.audio_panel import AudioPanel
from studio.widgets.clock_text import clock_text
from studio.widgets.controls_bar import ControlsBar
from studio.widgets.dropped_files import dropped_file
from studio.widgets.engine_panel import EnginePanel
from studio.widgets.help_dialogs import open_about, open_shortcuts
from studio.widgets.latency_graphs import LatencyGraphs
from studio.widgets.live_status import LiveStatusRow
from studio.widgets.portrait_panel import PortraitPanel
from studio.widgets.problems_panel import ProblemsPanel
from studio.widgets.summary_bar import SummaryBar
from studio.widgets.video_view import VideoView

SHORTCUTS = {  # action name -> (what it does, key sequence), shown in the menus and in Help > Keyboard shortcuts
    "session": ("Start/stop the engine", "Ctrl+Return"), "mute": ("Mute the microphone", "Ctrl+M"),
    "record": ("Record", "Ctrl+R"), "virtual_camera": ("Virtual camera", "Ctrl+Shift+V"),
    "open_portrait": ("Open a portrait", "Ctrl+O"), "open_audio": ("Open an audio file", "Ctrl+Shift+O"),
    "quit": ("Quit", "Ctrl+Q"),
}
INITIAL_SIZE = (1280, 720)
INITIAL_GRAPHS_HEIGHT = 300  # px: the preview gets the rest (it can shrink when problems crowd the window)
STATUS_MESSAGE_MS = 8000
TROUBLESHOOTING = Path(__file__).resolve().parents[1] / "docs" / "troubleshooting.md"


class MainWindow(QMainWindow):
    def __init__(self, model: SessionModel, store: QSettings):
        super().__init__()
        self.model = model
        self.store = store
        self.settings: StudioSettings = load_settings(store)
        self.quit_confirmed = False  # the user agreed to stop the recording and quit
        self.setWindowTitle("FlashTalk Studio")
        self.setAcceptDrops(True)  # portraits and audio files, anywhere on the window
        self.setDockOptions(QMainWindow.AnimatedDocks | QMainWindow.AllowTabbedDocks)
        self.problems = ProblemsPanel()
        self.controls = ControlsBar()
        self.video = VideoView()
        self.summary = SummaryBar()
        self.live_status = LiveStatusRow()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        for widget, stretch in ((self.problems, 0), (self.controls, 0), (self.video, 1), (self.summary, 0),
                                (self.live_status, 0)):
            layout.addWidget(widget, stretch)
        self.setCentralWidget(central)
        self.portrait = PortraitPanel()
        self.audio = AudioPanel(model.sources.speech_available)
        self.engine = EnginePanel()
        self.graphs = LatencyGraphs(model.playout.stats)
        for corner in (Qt.TopLeftCorner, Qt.BottomLeftCorner):
            self.setCorner(corner, Qt.LeftDockWidgetArea)
        for corner in (Qt.TopRightCorner, Qt.BottomRightCorner):
            self.setCorner(corner, Qt.RightDockWidgetArea)
        self.docks = {name: self._dock(widget, title, area) for name, widget, title, area in (
            ("portrait", self.portrait, "Portrait", Qt.LeftDockWidgetArea),
            ("audio", self.audio, "Audio source", Qt.LeftDockWidgetArea),
            ("engine", self.engine, "Engine", Qt.RightDockWidgetArea),
            ("graphs", self.graphs, "Latency", Qt.BottomDockWidgetArea))}
        self.stalls = StallMonitor(self)
        model.playout.ui_stall_ms = self.stalls.take_max_stall_ms  # --metrics-json: per second
        self.actions: dict[str, QAction] = {}
        self._menus()
        self._wire_model()
        self._wire_widgets()
        self.resize(*INITIAL_SIZE)
        self._restore()
        self.stalls.start()

    def _dock(self, widget: QWidget, title: str, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    # -- menus -----------------------------------------------------------------------------------
    def _action(self, menu, name: str, text: str, slot, checkable: bool = False) -> QAction:
        action = QAction(text, self, shortcut=QKeySequence(SHORTCUTS[name][1]), checkable=checkable)
        action.triggered.connect(lambda _checked=False, run=slot: run())
        menu.addAction(action)
        self.actions[name] = action
        return action

    def _menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "open_portrait", "Open &portrait…", self.portrait.open_dialog)
        self._action(file_menu, "open_audio", "Open &audio file…", self.audio.open_file_dialog)
        file_menu.addAction("Recordings &folder…", self.choose_recordings_folder)
        file_menu.addSeparator()
        self._action(file_menu, "quit", "&Quit", self.close).setMenuRole(QAction.QuitRole)
        session = bar.addMenu("&Session")
        self._action(session, "session", "Start/stop the &engine", self.toggle_engine)
        self._action(session, "mute", "&Mute microphone", self.model.sources.toggle_mute, checkable=True)
        self._action(session, "record", "&Record", self.toggle_recording, checkable=True)
        self._action(session, "virtual_camera", "&Virtual camera", self.toggle_virtual_camera, checkable=True)
        view = bar.addMenu("&View")
        for dock in self.docks.values():
            view.addAction(dock.toggleViewAction())
        help_menu = bar.addMenu("&Help")
        help_menu.addAction("&Keyboard shortcuts", lambda: open_shortcuts(self, SHORTCUTS))
        guide = help_menu.addAction("&Troubleshooting guide",
                                    lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(TROUBLESHOOTING))))
        guide.setVisible(TROUBLESHOOTING.is_file())  # a source checkout; installed copies have no docs folder
        help_menu.addAction("&About FlashTalk Studio", lambda: open_about(self)).setMenuRole(QAction.AboutRole)

    # -- wiring ----------------------------------------------------------------------------------
    def _wire_model(self) -> None:
        m, sources, outputs = self.model, self.model.sources, self.model.outputs
        m.playout.frame_shown.connect(lambda due: self.video.show_frame(due.index, due.image))
        m.state_changed.connect(self._show_status)
        m.summary_changed.connect(self.summary.show_summary)
        m.portrait_changed.connect(self.portrait.show_portrait)
        m.portrait_verdict.connect(self.portrait.show_verdict)
        m.recent_changed.connect(self.portrait.show_recent)
        m.notice.connect(lambda text: self.statusBar().showMessage(text, STATUS_MESSAGE_MS))
        m.problems.changed.connect(self.problems.show_problems)
        m.devices.listed.connect(self.audio.set_devices)
        m.devices.listing_changed.connect(lambda busy: self.audio.refresh_devices.setEnabled(not busy))
        outputs.recording_changed.connect(self._show_recording)
        outputs.camera_changed.connect(self._show_camera)
        m.playout.output_changed.connect(self.audio.show_output_note)
        m.playout.live_changed.connect(self.live_status.show_status)
        m.profiles_changed.connect(self.live_status.show_profiles)
        m.settings_refused.connect(self.live_status.show_refusal)
        sources.file_changed.connect(self.audio.show_file)
        sources.microphone_changed.connect(self.audio.show_microphone)
        sources.on_air_changed.connect(self.audio.show_on_air)
        sources.speech_ready.connect(self.audio.show_speech_status)
        sources.voices_listed.connect(lambda voices: self.audio.show_voices(voices, sources.voice))
        sources.status.connect(self._show_source_status)
        m.link.state_changed.connect(self.engine.show_engine_message)
        m.link.log_line.connect(self.engine.append_log)
        QApplication.styleHints().colorSchemeChanged.connect(
            lambda _s: self.graphs.set_background(pg.getConfigOption("background")))

    def _wire_widgets(self) -> None:
        m, sources, a, e, c = self.model, self.model.sources, self.audio, self.engine, self.controls
        self.portrait.portrait_chosen.connect(m.set_portrait)
        self.problems.dismissed.connect(m.problems.solve)
        a.microphone_requested.connect(lambda key: sources.start_microphone(m.devices.devices.input(key)))
        a.microphone_stop_requested.connect(sources.stop_microphone)
        a.mute_toggled.connect(sources.set_muted)
        a.file_chosen.connect(sources.load_file)
        a.play_requested.connect(sources.play_file)
        a.pause_requested.connect(sources.pause_file)
        a.seek_requested.connect(sources.seek_file)
        a.loop_toggled.connect(sources.set_loop)
        a.speak_requested.connect(sources.say)
        a.speech_stop_requested.connect(sources.stop_speech)
        a.voice_chosen.connect(sources.set_voice)
        a.output_device_chosen.connect(self._choose_output)
        a.devices_refresh_requested.connect(m.devices.refresh)
        e.start_requested.connect(m.link.start)
        e.restart_requested.connect(m.link.start)
        e.stop_requested.connect(m.link.stop)
        c.engine_toggled.connect(self.toggle_engine)
        c.record_toggled.connect(self.toggle_recording)
        c.camera_toggled.connect(self.toggle_virtual_camera)
        c.folder_requested.connect(self.choose_recordings_folder)
        self.live_status.choice_changed.connect(self.set_live_choice)

    # -- model -> view ---------------------------------------------------------------------------
    def _show_status(self, status: StudioStatus) -> None:
        """One status, the same words everywhere: preview overlay, summary, engine panel, Start button."""
        self.video.set_overlay(status.overlay)
        self.engine.show_status(status)
        self.controls.show_status(status)

    def _show_recording(self, on: bool) -> None:
        outputs = self.model.outputs
        self.actions["record"].setChecked(on)
        self.controls.show_recording(on, outputs.recording_since, outputs.recorder.path if on else None)

    def _show_camera(self, on: bool) -> None:
        camera = self.model.outputs.virtual_camera
        self.actions["virtual_camera"].setChecked(on)
        self.controls.show_camera(on, self.model.outputs.camera_since, camera.device if camera else "")

    def _show_source_status(self, status: SourceStatus) -> None:
        self.audio.show_status(status)
        self.actions["mute"].setChecked(status.muted)

    # -- actions (the decisions are the models') -------------------------------------------------
    def toggle_engine(self) -> None:
        self.model.toggle_engine(self.engine.options())

    def set_live_choice(self, choice: LiveChoice, remember: bool = True) -> None:
        """Quality and target latency for live sessions (the open one is opened again with them);
        `remember`: kept for the next run (the command line's are for this run only)."""
        if remember:
            self.settings.live = choice
        self.live_status.show_choice(choice)
        self.model.set_live_choice(choice)

    def toggle_recording(self) -> None:
        outputs = self.model.outputs
        if outputs.recording:
            outputs.stop_recording()
        else:
            outputs.start_recording(recording_path(self.settings.recordings_folder))

    def toggle_virtual_camera(self) -> None:
        outputs = self.model.outputs
        if outputs.camera_on:
            outputs.stop_virtual_camera()
        else:
            outputs.start_virtual_camera(load_camera_config(self.store))
        self.actions["virtual_camera"].setChecked(outputs.camera_on)

    def choose_recordings_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save recordings in", self.settings.recordings_folder)
        if folder:
            self.set_recordings_folder(folder)

    def set_recordings_folder(self, folder: str) -> None:
        self.settings.recordings_folder = folder
        self.controls.show_folder(folder)
        self.model.problems.solve("recording")

    def _choose_output(self, name: str) -> None:
        """`name`: "" (default), a sound card, or "pulse:<sink>" (e.g. the virtual microphone's sink)."""
        self.settings.output_device = name
        self.model.playout.set_output_device(name or None)

    # -- drops -----------------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if dropped_file(event.mimeData()) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        dropped = dropped_file(event.mimeData())
        if dropped is None:
            return
        event.acceptProposedAction()
        kind, path = dropped
        if kind == "portrait":
            self.model.set_portrait(path)
        else:
            self.model.sources.load_file(path)
            self.audio.tabs.setCurrentIndex(1)  # show the file that is opening

    # -- settings --------------------------------------------------------------------------------
    def _restore(self) -> None:
        s, m = self.settings, self.model
        if not s.window_geometry.isEmpty():
            self.restoreGeometry(s.window_geometry)
        if not s.window_state.isEmpty():
            self.restoreState(s.window_state)
        else:
            self.resizeDocks([self.docks["graphs"]], [INITIAL_GRAPHS_HEIGHT], Qt.Vertical)
        self.engine.set_options(s.engine)
        m.link.set_options(s.engine)
        m.set_recent(s.recent_portraits)
        self.set_live_choice(s.live)
        m.sources.set_voice(s.voice)
        self.controls.show_folder(s.recordings_folder)
        self.controls.show_status(m.status)
        self.engine.show_status(m.status)
        self.video.set_overlay(m.status.overlay)
        self.summary.show_summary(m.status.text)
        self.audio.show_output_note(m.playout.output_note)
        self.audio.set_devices(DeviceList())  # the defaults until the listing thread has the names
        if s.input_device:
            m.devices.listed.connect(lambda _d: self.audio.select_input(s.input_device), Qt.SingleShotConnection)
        if s.output_device:
            m.devices.listed.connect(lambda _d: self.audio.select_output(s.output_device), Qt.SingleShotConnection)
        m.devices.refresh()
        if m.sources.speech_available:
            m.sources.list_voices()

    def save(self) -> None:
        s, m = self.settings, self.model
        s.last_portrait = m.portrait_path or s.last_portrait
        s.recent_portraits = list(m.recent)
        s.last_audio_file = str(m.sources.file_path or s.last_audio_file)
        s.input_device = self.audio.input_device.currentData() or ""
        s.voice = m.sources.voice
        s.engine = m.link.options
        s.window_geometry = self.saveGeometry()
        s.window_state = self.saveState()
        save_settings(self.store, s)

    def closeEvent(self, event) -> None:
        outputs = self.model.outputs
        if outputs.recording and not self.quit_confirmed:  # ask first; the file is finished either way
            event.ignore()
            asked = self.findChild(QMessageBox, "confirm-quit")
            if asked is None or not asked.isVisible():  # asked once at a time
                self._confirm_quit_while_recording()
            return
        self.save()
        self.model.shutdown()
        super().closeEvent(event)

    def _confirm_quit_while_recording(self) -> QMessageBox:
        """A window-modal question that does not block the studio: the recording goes on meanwhile."""
        outputs = self.model.outputs
        elapsed = clock_text(time.monotonic() - outputs.recording_since)
        box = QMessageBox(QMessageBox.Question, "Quit while recording?",
                          f"A recording is running ({elapsed} so far, to {outputs.recorder.path}).\n\n"
                          "Quitting stops it; the file is finished and kept.", parent=self)
        quit_button = box.addButton("Stop recording and quit", QMessageBox.AcceptRole)
        box.addButton("Keep recording", QMessageBox.RejectRole)
        box.setDefaultButton(quit_button)
        box.setObjectName("confirm-quit")
        box.setAttribute(Qt.WA_DeleteOnClose)

        def answered(button) -> None:
            if button is quit_button:
                self.quit_confirmed = True
                self.close()
        box.buttonClicked.connect(answered)
        box.open()
        return box
