"""The main window: video view and summary in the middle; portrait, audio, engine and graphs as
dock widgets whose layout persists. It only wires widgets to the session's models: it calls their
methods and listens to their signals."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QSettings, QStandardPaths, Qt, Signal
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
from studio.engine_link.options import LiveChoice
from studio.outputs.virtual_camera_settings import load_camera_config
from studio.session.audio_sources_model import SourceStatus
from studio.session.session_model import SessionModel
from studio.settings_store import StudioSettings, load_settings, save_settings
from studio.stall_monitor import StallMonitor
from studio.widgets.audio_panel import AudioPanel
from studio.widgets.engine_panel import EnginePanel
from studio.widgets.latency_graphs import LatencyGraphs
from studio.widgets.live_status import LiveStatusRow
from studio.widgets.portrait_panel import PortraitPanel
from studio.widgets.summary_bar import SummaryBar
from studio.widgets.video_view import VideoView

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
        self.setWindowTitle("FlashTalk Studio")
        self.setDockOptions(QMainWindow.AnimatedDocks | QMainWindow.AllowTabbedDocks)
        self.video = VideoView()
        self.summary = SummaryBar()
        self.live_status = LiveStatusRow()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.video, 1)
        layout.addWidget(self.summary)
        layout.addWidget(self.live_status)
        self.setCentralWidget(central)
        self.portrait = PortraitPanel()
        self.audio = AudioPanel(model.sources.speech_available)
        self.engine = EnginePanel()
        self.graphs = LatencyGraphs(model.playout.stats)
        self._dock(self.portrait, "Portrait", Qt.LeftDockWidgetArea)
        self._dock(self.audio, "Audio source", Qt.LeftDockWidgetArea)
        self._dock(self.engine, "Engine", Qt.RightDockWidgetArea)
        self._dock(self.graphs, "Latency", Qt.BottomDockWidgetArea)
        self.stalls = StallMonitor(self)
        model.playout.ui_stall_ms = self.stalls.take_max_stall_ms  # --metrics-json: per second
        self.actions = self._session_menu()
        self._wire_model()
        self._wire_widgets()
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
                                 ("mute", "&Mute microphone", self.model.sources.toggle_mute),
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
        m.playout.frame_shown.connect(lambda due: self.video.show_frame(due.index, due.image))
        m.state_changed.connect(self.video.set_state)
        m.summary_changed.connect(self.summary.setText)
        m.portrait_changed.connect(self.portrait.show_portrait)
        m.portrait_verdict.connect(self.portrait.show_verdict)
        m.recent_changed.connect(self.portrait.show_recent)
        m.notice.connect(lambda text: self.statusBar().showMessage(text, 8000))
        m.outputs.recording_changed.connect(self.actions["record"].setChecked)
        m.playout.output_changed.connect(self.audio.output_note.setText)
        m.playout.live_changed.connect(self.live_status.show_status)
        m.profiles_changed.connect(self.live_status.show_profiles)
        m.settings_refused.connect(self.live_status.show_refusal)
        m.sources.file_loaded.connect(self.audio.show_file)
        m.sources.speech_ready.connect(self.audio.show_speech_status)
        m.sources.source_changed.connect(self.audio.show_source)
        m.sources.status.connect(self._show_source_status)
        m.link.state_changed.connect(self.engine.show_state)
        m.link.log_line.connect(self.engine.append_log)
        QApplication.styleHints().colorSchemeChanged.connect(
            lambda _s: self.graphs.set_background(pg.getConfigOption("background")))

    def _wire_widgets(self) -> None:
        sources, a, e = self.model.sources, self.audio, self.engine
        self.portrait.portrait_chosen.connect(self.model.set_portrait)
        a.source_selected.connect(sources.select)
        a.microphone_requested.connect(lambda device: a.show_mic_error(sources.start_microphone(device)))
        a.microphone_stop_requested.connect(sources.stop_microphone)
        a.mute_toggled.connect(sources.set_muted)
        a.file_chosen.connect(sources.load_file)
        a.play_requested.connect(sources.play_file)
        a.pause_requested.connect(sources.pause_file)
        a.seek_requested.connect(sources.seek_file)
        a.loop_toggled.connect(sources.set_loop)
        a.speak_requested.connect(sources.say)
        a.output_device_chosen.connect(self._choose_output)
        a.devices_refresh_requested.connect(self._list_devices)
        self._devices_listed.connect(lambda devices: (a.set_devices(*devices), a.refresh_devices.setEnabled(True)))
        e.start_requested.connect(self.model.link.start)
        e.restart_requested.connect(self.model.link.start)
        e.stop_requested.connect(self.model.link.stop)
        self.live_status.choice_changed.connect(self.set_live_choice)

    # -- session menu actions (logic lives in the models) ----------------------------------------
    def toggle_session(self) -> None:
        self.model.link.toggle(self.engine.options())

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
            folder = Path(QStandardPaths.writableLocation(QStandardPaths.MoviesLocation) or Path.home()) / "FlashTalk"
            outputs.start_recording(folder / time.strftime("flashtalk-%Y%m%d-%H%M%S.mp4"))

    def toggle_virtual_camera(self) -> None:
        outputs = self.model.outputs
        if outputs.camera_on:
            outputs.stop_virtual_camera()
        else:
            outputs.start_virtual_camera(load_camera_config(self.store))
        self.actions["virtual_camera"].setChecked(outputs.camera_on)

    def _choose_output(self, name: str) -> None:
        """`name`: "" (default), a sound card, or "pulse:<sink>" (e.g. the virtual microphone's sink)."""
        self.settings.output_device = name
        self.model.playout.set_output_device(name or None)

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

    def _show_source_status(self, status: SourceStatus) -> None:
        self.audio.show_position(status.file_position_s, status.file_playing)
        self.audio.show_level(status.level)
        self.actions["mute"].setChecked(status.muted)
        if self.audio.mute.isChecked() != status.muted and status.microphone_on:
            self.audio.mute.setChecked(status.muted)

    # -- settings --------------------------------------------------------------------------------
    def _restore(self) -> None:
        s = self.settings
        if not s.window_geometry.isEmpty():
            self.restoreGeometry(s.window_geometry)
        if not s.window_state.isEmpty():
            self.restoreState(s.window_state)
        self.engine.set_options(s.engine)
        self.model.link.set_options(s.engine)
        self.model.set_recent(s.recent_portraits)
        self.set_live_choice(s.live)
        inputs = input_devices()
        self.audio.set_devices(inputs, output_devices(), pulse_sinks())
        self.audio.output_note.setText(self.model.playout.output_note)
        mic = find_device(s.input_device, inputs)
        if mic is not None:
            self.audio.input_device.setCurrentIndex(self.audio.input_device.findData(mic.index))
        if s.output_device:
            self.audio.select_output(s.output_device)

    def save(self) -> None:
        s, m = self.settings, self.model
        s.last_portrait = m.portrait_path or s.last_portrait
        s.recent_portraits = list(m.recent)
        s.last_audio_file = str(m.sources.file_path or s.last_audio_file)
        s.audio_source = m.sources.source
        s.input_device = "" if self.audio.input_device.currentData() is None else self.audio.input_device.currentText()
        s.engine = m.link.options
        s.window_geometry = self.saveGeometry()
        s.window_state = self.saveState()
        save_settings(self.store, s)

    def closeEvent(self, event) -> None:
        self.save()
        self.model.shutdown()
        super().closeEvent(event)
