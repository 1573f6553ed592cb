"""The bar above the preview, as in a streaming studio: Start/Stop, Record (with its folder) and
Virtual camera as buttons, and REC / LIVE lamps with their elapsed time while they are on.

It renders the models' state (the buttons are checked only when the model says so) and emits
what the user asked for; the elapsed times count from the models' own start times.
"""
from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QSize, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QStyle, QToolButton, QWidget

from studio.session.studio_state import StudioStatus
from studio.widgets.clock_text import clock_text

TICK_MS = 500  # the lamps' clocks
BUTTON_HEIGHT = 30
LAMP_ON = "color: white; background: #c9302c; border-radius: 3px; padding: 2px 6px; font-weight: bold;"
LIVE_ON = "color: white; background: #2d7d46; border-radius: 3px; padding: 2px 6px; font-weight: bold;"


class ControlsBar(QWidget):
    engine_toggled = Signal()  # Start / Stop
    record_toggled = Signal()
    camera_toggled = Signal()
    folder_requested = Signal()  # choose where recordings go

    def __init__(self, parent=None):
        super().__init__(parent)
        self.start_button = QPushButton("Start")
        self.start_button.setCheckable(True)
        self.record_button = QPushButton("● Record")
        self.record_button.setCheckable(True)
        self.folder_button = QToolButton()
        self.folder_button.setIcon(self.style().standardIcon(QStyle.SP_DirOpenIcon))
        self.camera_button = QPushButton("Virtual camera")
        self.camera_button.setCheckable(True)
        self.rec_lamp = QLabel()
        self.live_lamp = QLabel()
        for lamp, style in ((self.rec_lamp, LAMP_ON), (self.live_lamp, LIVE_ON)):
            lamp.setStyleSheet(style)
            lamp.setVisible(False)
        for button, signal in ((self.start_button, self.engine_toggled), (self.record_button, self.record_toggled),
                               (self.camera_button, self.camera_toggled)):
            button.setMinimumSize(QSize(button.sizeHint().width() + 12, BUTTON_HEIGHT))
            button.clicked.connect(lambda _checked=False, b=button, s=signal: self._request(b, s))
        self.folder_button.clicked.connect(self.folder_requested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        for widget in (self.start_button, self.record_button, self.folder_button, self.camera_button):
            layout.addWidget(widget)
        layout.addStretch(1)
        layout.addWidget(self.rec_lamp)
        layout.addWidget(self.live_lamp)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Fixed)
        self._recording_since = self._camera_since = 0.0
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)
        self._timer.start(TICK_MS)

    def _request(self, button: QPushButton, signal) -> None:
        """A click asks; the button shows what the model then says (a refused request stays off)."""
        button.setChecked(not button.isChecked())
        signal.emit()

    # -- model -> view ---------------------------------------------------------------------------
    def show_status(self, status: StudioStatus) -> None:
        on = status.engine_running
        self.start_button.setChecked(on)
        self.start_button.setText("Stop" if on else "Start")
        self.start_button.setToolTip(f"{'stop' if on else 'start'} the engine (Ctrl+Return) · {status.text}")

    def show_recording(self, on: bool, since: float = 0.0, path: Path | None = None) -> None:
        """Labels stay put (a wider one would widen the window); the pressed look and the lamp say it is on."""
        self.record_button.setChecked(on)
        self.record_button.setToolTip("stop recording (Ctrl+R)" if on else "record to an MP4 (Ctrl+R)")
        self._recording_since = since if on else 0.0
        self.rec_lamp.setToolTip(f"recording to {path}" if on and path else "")
        self._tick()

    def show_camera(self, on: bool, since: float = 0.0, device: str = "") -> None:
        self.camera_button.setChecked(on)
        self.camera_button.setToolTip("stop sending to the virtual camera (Ctrl+Shift+V)" if on else
                                      "send the avatar to a virtual camera for Zoom, Teams, Meet, OBS (Ctrl+Shift+V)")
        self._camera_since = since if on else 0.0
        self.live_lamp.setToolTip(f"the virtual camera {device} sends the avatar" if on else "")
        self._tick()

    def show_folder(self, folder: str) -> None:
        self.folder_button.setToolTip(f"recordings are saved in {folder}: click to choose another folder")

    def _tick(self) -> None:
        now = time.monotonic()
        for lamp, since, word in ((self.rec_lamp, self._recording_since, "REC"),
                                  (self.live_lamp, self._camera_since, "LIVE")):
            lamp.setVisible(bool(since))
            if since:
                lamp.setText(f"● {word} {clock_text(now - since)}")
