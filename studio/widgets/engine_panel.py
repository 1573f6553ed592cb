"""Engine panel: backend, model folder, GPUs, resolution, steps (only those the backend uses);
start/stop/restart; attach to a running engine; the studio's status (the same words as the
preview's) with the engine's last message under it; the engine's log tail."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.protocol.backend_names import BackendName
from engine.protocol.engine_options import MIN_GPUS
from engine.protocol.engine_state import EngineState
from studio.engine_link.options import BACKENDS, RESOLUTIONS, EngineOptions
from studio.session.studio_state import StudioState, StudioStatus

LOG_LINES = 400
STATUS_STYLE = {StudioState.FAILED: "color: #d9534f; font-weight: bold;", StudioState.RUNNING: "color: #3a9d5d;"}
MAX_GPUS = 64  # the spin box's range; the engine checks what the machine has


FIRST_RUN_GUIDE = (
    "No FlashTalk model configured: the avatar runs on the CPU puppet backend. For the diffusion "
    "model (GPU): download the weights with `flashtalk models download ~/models`, or choose a "
    "SoulX-FlashTalk-14B folder under Model, or tick \"attach\" to use a GPU server "
    "(docs/quickstart.md explains each path).")

class EnginePanel(QWidget):
    start_requested = Signal(object)  # EngineOptions
    stop_requested = Signal()
    restart_requested = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.backend = QComboBox()
        self.backend.addItems(BACKENDS)
        self.model_dir = QLineEdit()
        self.model_dir.setPlaceholderText("SoulX-FlashTalk-14B folder (flashtalk)")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse_model)
        self._model_row = model_row = QHBoxLayout()
        model_row.addWidget(self.model_dir)
        model_row.addWidget(browse)
        self.gpus = QSpinBox(minimum=MIN_GPUS, maximum=MAX_GPUS)
        self.resolution = QComboBox()
        for w, h in RESOLUTIONS:
            self.resolution.addItem("backend default" if not w else f"{w}x{h}", (w, h))
        self.steps = QSpinBox(minimum=0, maximum=50, specialValueText="backend default")
        self.attach = QCheckBox("attach to an engine running elsewhere")
        self.address = QLineEdit()
        self.address.setPlaceholderText("ipc:///path/engine.sock or tcp://127.0.0.1:47600")
        self.token_file = QLineEdit()
        self.token_file.setPlaceholderText("token file (default: beside the socket)")
        self.attach.toggled.connect(self._sync_enabled)
        self.backend.currentTextChanged.connect(self._sync_enabled)
        self.form = form = QFormLayout()
        form.addRow("Backend", self.backend)
        form.addRow("Model", model_row)
        form.addRow("GPUs", self.gpus)
        form.addRow("Resolution", self.resolution)
        form.addRow("Steps", self.steps)
        form.addRow(self.attach)
        form.addRow("Address", self.address)
        form.addRow("Token", self.token_file)
        buttons = QHBoxLayout()
        self.start_button, self.stop_button, self.restart_button = (
            QPushButton("Start"), QPushButton("Stop"), QPushButton("Restart"))
        self.start_button.clicked.connect(lambda: self.start_requested.emit(self.options()))
        self.stop_button.clicked.connect(self.stop_requested)
        self.restart_button.clicked.connect(lambda: self.restart_requested.emit(self.options()))
        for b in (self.start_button, self.stop_button, self.restart_button):
            buttons.addWidget(b)
        self.guide = QLabel(FIRST_RUN_GUIDE)
        self.guide.setWordWrap(True)
        self.guide.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.model_dir.textChanged.connect(self._sync_enabled)
        self.status = QLabel("stopped")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.engine_message = QLabel("")  # what the engine (or its supervisor) said last
        self.engine_message.setWordWrap(True)
        self.engine_message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.engine_message.setStyleSheet("color: palette(placeholder-text);")
        self.log = QPlainTextEdit(readOnly=True)
        self.log.setMinimumHeight(40)
        self.log.setMaximumBlockCount(LOG_LINES)
        self.log.setPlaceholderText("engine log")
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.guide)
        layout.addWidget(self.status)
        layout.addWidget(self.engine_message)
        layout.addWidget(self.log, 1)
        self._sync_enabled()

    def _browse_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "SoulX-FlashTalk model folder")
        if folder:
            self.model_dir.setText(folder)

    def _sync_enabled(self) -> None:
        attach = self.attach.isChecked()
        for w in (self.backend, self.model_dir, self.gpus):
            w.setEnabled(not attach)
        self.address.setEnabled(attach)
        self.token_file.setEnabled(attach)
        puppet = self.backend.currentText() == BackendName.PUPPET and not attach
        for row in (self._model_row, self.gpus, self.steps):  # the puppet has no model, GPUs or steps
            self.form.setRowVisible(row, not puppet)
        # First run: no model and no remote engine -> explain the three ways to the diffusion model.
        self.guide.setVisible(not attach and not self.model_dir.text().strip())

    # -- options <-> widgets ---------------------------------------------------------------------
    def options(self) -> EngineOptions:
        w, h = self.resolution.currentData()
        return EngineOptions(backend=self.backend.currentText(), model_dir=self.model_dir.text().strip(),
                             gpus=self.gpus.value(), width=w, height=h, steps=self.steps.value(),
                             attach_address=self.address.text().strip() if self.attach.isChecked() else "",
                             token_file=self.token_file.text().strip())

    def set_options(self, options: EngineOptions) -> None:
        self.backend.setCurrentText(options.backend)
        self.model_dir.setText(options.model_dir)
        self.gpus.setValue(options.gpus)
        index = self.resolution.findData((options.width, options.height))
        self.resolution.setCurrentIndex(max(index, 0))
        self.steps.setValue(options.steps)
        self.attach.setChecked(options.attached)
        self.address.setText(options.attach_address)
        self.token_file.setText(options.token_file)

    # -- model -> view ---------------------------------------------------------------------------
    def show_status(self, status: StudioStatus) -> None:
        """The studio's status, worded as everywhere else; Start/Stop/Restart as they apply."""
        self.status.setText(status.text)
        self._hide_repeated_message()
        self.status.setStyleSheet(STATUS_STYLE.get(status.state, ""))
        running = status.engine_running
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.restart_button.setEnabled(running)

    def show_engine_message(self, state: EngineState, message: str) -> None:
        self.engine_message.setText(message)
        self._hide_repeated_message()

    def _hide_repeated_message(self) -> None:
        """The engine's words once: not again under a status that already says them."""
        message = self.engine_message.text()
        self.engine_message.setVisible(bool(message) and message not in self.status.text())

    def append_log(self, line: str) -> None:
        self.log.appendPlainText(line)
