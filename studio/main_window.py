"""The main window: video view and summary in the middle; portrait, audio, engine and graphs as
dock widgets whose layout persists. It only wires widgets to the session model."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QSettings, QStandardPaths, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QMainWindow,
    QVBoxLayout,
    QWidget,
)

from studio.audio.devices import find_device, input_devices, output_devices
from studio.audio.pulse import pulse_sinks
from studio.engine_options import EngineOptions
from studio.outputs.virtual_camera_settings import load_camera_config
from studio.session_model import SessionModel
from studio.settings_store import StudioSettings, load_settings, save_settings
from studio.stall_monitor import StallMonitor
from studio.widgets.audio_panel import AudioPanel
from studio.widgets.engine_panel import EnginePanel
from studio.widgets.latency_graphs import LatencyGraphs
from studio.widgets.portrait_panel import PortraitPanel
from studio.widgets.summary_bar import SummaryBar
from studio.widgets.video_view import VideoView

POLL_MS = 50  # file position and microphone level
SHORTCUTS = {  # action name -> key sequence, shown in the Session menu
    "session": "Ctrl+Return", "mute": "Ctrl+M", "record": "Ctrl+R", "virtual_camera": "Ctrl+Shift+V",
}


class MainWindow(QMainWindow):
    _devices_listed = Signal(object)  # (inputs, outputs, sinks), from the listing thread

    def __init__(self, model: SessionModel, store: QSettings):
        super().__init__()
        self.model = model
        self.store = store
        self.settings: StudioSettings = load_settings(store)
        self.engine_running = False
        self.setWindowTitle("FlashTalk Studio")
        self.setDockOptions(QMainWindow.AnimatedDocks | QMainWindow.AllowTabbedDocks)
        self.video = VideoView()
        self.summary = SummaryBar()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.video, 1)
        layout.addWidget(self.summary)
        self.setCentralWidget(central)
        self.portrait = PortraitPanel()
        self.audio = AudioPanel(model.speech.available())
        self.engine = EnginePanel()
        self.graphs = LatencyGraphs(model.stats)
        self._dock(self.portrait, "Portrait", Qt.LeftDockWidgetArea)
        self._dock(self.audio, "Audio source", Qt.LeftDockWidgetArea)
        self._dock(self.engine, "Engine", Qt.RightDockWidgetArea)
        self._dock(self.graphs, "Latency", Qt.BottomDockWidgetArea)
        self.stalls = StallMonitor(self)
        self.actions = self._session_menu()
        self._wire_model()
        self._wire_widgets()
        self._poll = QTimer(self)
        self._poll.timeout.connect(self._poll_sources)
        self._poll.start(POLL_MS)
        self.resize(1280, 860)
        self._restore()
        self.stalls.start()

    def _dock(self, widget: QWidget, title: str, area) -> None:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)

    def _session_menu(self) -> dict[str, QAction]:
        menu = self.menuBar().addMenu("&Session")
        made = {}
        for name, text, slot in (("session", "Start/stop &session", self.toggle_session),
                                 ("mute", "&Mute microphone", self.model.toggle_mute),
                                 ("record", "&Record", self.toggle_recording),
                                 ("virtual_camera", "&Virtual camera", self.toggle_virtual_camera)):
            action = QAction(text, self, shortcut=QKeySequence(SHORTCUTS[name]), checkable=name != "session")
            action.triggered.connect(lambda _checked=False, run=slot: run())
            menu.addAction(action)
            made[name] = action
        return made

    # -- wiring ----------------------------------------------------------------------------------
    def _wire_model(self) -> None:
        m = self.model
        m.frame_shown.connect(lambda due: self.video.show_frame(due.index, due.image))
        m.state_changed.connect(self.video.set_state)
        m.summary_changed.connect(self.summary.setText)
        m.portrait_changed.connect(self.portrait.show_portrait)
        m.portrait_verdict.connect(self.portrait.show_verdict)
        m.recent_changed.connect(self.portrait.show_recent)
        m.notice.connect(lambda text: self.statusBar().showMessage(text, 8000))
        m.recording_changed.connect(self.actions["record"].setChecked)
        m.audio_file_loaded.connect(lambda path, error: self.audio.show_file(
            path, error, m.file_player.duration_s))
        m.speech_ready.connect(self.audio.show_speech_status)
        m.source_changed.connect(self.audio.show_source)
        m.link.state_changed.connect(self.engine.show_state)
        m.link.log_line.connect(self.engine.append_log)
        QApplication.styleHints().colorSchemeChanged.connect(
            lambda _s: self.graphs.set_background(pg.getConfigOption("background")))

    def _wire_widgets(self) -> None:
        m, a, e = self.model, self.audio, self.engine
        self.portrait.portrait_chosen.connect(m.set_portrait)
        a.source_selected.connect(m.select_source)
        a.microphone_requested.connect(lambda device: a.show_mic_error(m.start_microphone(device)))
        a.microphone_stop_requested.connect(m.stop_microphone)
        a.mute_toggled.connect(lambda on: setattr(m.microphone, "muted", on) if m.microphone else None)
        a.file_chosen.connect(m.load_audio_file)
        a.play_requested.connect(lambda: (m.select_source("file"), m.file_player.play()))
        a.pause_requested.connect(m.file_player.pause)
        a.seek_requested.connect(m.file_player.seek)
        a.loop_toggled.connect(lambda on: setattr(m.file_player, "loop", on))
        a.speak_requested.connect(m.say)
        a.output_device_chosen.connect(self._choose_output)
        a.devices_refresh_requested.connect(self._list_devices)
        self._devices_listed.connect(lambda devices: (a.set_devices(*devices), a.refresh_devices.setEnabled(True)))
        e.start_requested.connect(self.start_engine)
        e.restart_requested.connect(self.start_engine)
        e.stop_requested.connect(self.stop_engine)

    def start_engine(self, options: EngineOptions) -> None:
        self.model.engine_options = options
        self.model.link.start(options)
        self.engine_running = True

    def stop_engine(self) -> None:
        self.model.link.stop()
        self.engine_running = False

    # -- session menu actions (logic lives in the model and the outputs) -------------------------
    def toggle_session(self) -> None:
        if self.engine_running:
            self.stop_engine()
        else:
            self.start_engine(self.engine.options())

    def toggle_recording(self) -> None:
        if self.model.recorder is not None:
            self.model.stop_recording()
        else:
            folder = Path(QStandardPaths.writableLocation(QStandardPaths.MoviesLocation) or Path.home()) / "FlashTalk"
            self.model.start_recording(folder / time.strftime("flashtalk-%Y%m%d-%H%M%S.mp4"))

    def toggle_virtual_camera(self) -> None:
        if self.model.virtual_camera is not None:
            self.model.stop_virtual_camera()
        else:
            self.model.start_virtual_camera(load_camera_config(self.store))
        self.actions["virtual_camera"].setChecked(self.model.virtual_camera is not None)

    def _choose_output(self, name: str) -> None:
        """`name`: "" (default), a sound card, or "pulse:<sink>" (e.g. the virtual microphone's sink)."""
        self.settings.output_device = name
        self.model.set_output_device(name or None)
        self.audio.output_note.setText(self.model.output_note)

    def _list_devices(self) -> None:
        """`pactl` may take up to its timeout: list off the UI thread, render when done."""
        self.audio.refresh_devices.setEnabled(False)
        threading.Thread(target=self._list_devices_off_ui, name="list-devices", daemon=True).start()

    def _list_devices_off_ui(self) -> None:
        devices = (input_devices(), output_devices(), pulse_sinks())
        try:
            self._devices_listed.emit(devices)
        except RuntimeError:  # the window was closed meanwhile
            pass

    def _poll_sources(self) -> None:
        m = self.model
        self.audio.show_position(m.file_player.position_s, m.file_player.playing)
        self.audio.show_level(m.microphone.level if m.microphone else 0.0)
        muted = bool(m.microphone and m.microphone.muted)
        self.actions["mute"].setChecked(muted)
        if self.audio.mute.isChecked() != muted and m.microphone is not None:
            self.audio.mute.setChecked(muted)

    # -- settings --------------------------------------------------------------------------------
    def _restore(self) -> None:
        s = self.settings
        if not s.window_geometry.isEmpty():
            self.restoreGeometry(s.window_geometry)
        if not s.window_state.isEmpty():
            self.restoreState(s.window_state)
        self.engine.set_options(s.engine)
        self.model.engine_options = s.engine
        self.model.recent = list(s.recent_portraits)
        self.portrait.show_recent(self.model.recent)
        inputs = input_devices()
        self.audio.set_devices(inputs, output_devices(), pulse_sinks())
        self.audio.output_note.setText(self.model.output_note)
        mic = find_device(s.input_device, inputs)
        if mic is not None:
            self.audio.input_device.setCurrentIndex(self.audio.input_device.findData(mic.index))
        if s.output_device:
            self.audio.select_output(s.output_device)

    def save(self) -> None:
        s, m = self.settings, self.model
        s.last_portrait = m.portrait_path or s.last_portrait
        s.recent_portraits = list(m.recent)
        s.last_audio_file = str(m.file_player.path or s.last_audio_file)
        s.audio_source = m.source
        s.input_device = "" if self.audio.input_device.currentData() is None else self.audio.input_device.currentText()
        s.engine = m.engine_options
        s.window_geometry = self.saveGeometry()
        s.window_state = self.saveState()
        save_settings(self.store, s)

    def closeEvent(self, event) -> None:
        self.save()
        self.model.shutdown()
        super().closeEvent(event)
