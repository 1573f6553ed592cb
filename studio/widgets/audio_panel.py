"""Audio sources: microphone (device, level, mute), audio file (play/pause/seek/loop) and
text-to-speech; plus the output device the voice is heard on."""
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
    QProgressBar,
    QPushButton,
    QSlider,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from studio.audio.audio_file_source import AUDIO_FILE_PATTERNS
from studio.audio.devices import SoundDevice
from studio.audio.pulse import PulseSink
from studio.audio.tts import install_hint
from studio.session.audio_sources_model import SOURCES


class AudioPanel(QWidget):
    source_selected = Signal(str)  # one of SOURCES
    microphone_requested = Signal(object)  # device index or None
    microphone_stop_requested = Signal()
    mute_toggled = Signal(bool)
    file_chosen = Signal(str)
    play_requested = Signal()
    pause_requested = Signal()
    seek_requested = Signal(float)  # seconds
    loop_toggled = Signal(bool)
    speak_requested = Signal(str)
    output_device_chosen = Signal(str)
    devices_refresh_requested = Signal()  # list the sound devices and sinks again (e.g. a new virtual mic)

    def __init__(self, speech_available: bool, parent=None):
        super().__init__(parent)
        self.tabs = QTabWidget()
        self.tabs.addTab(self._microphone_tab(), "Microphone")
        self.tabs.addTab(self._file_tab(), "Audio file")
        self.tabs.addTab(self._speech_tab(speech_available), "Text to speech")
        self.tabs.currentChanged.connect(
            lambda i: self.source_selected.emit(SOURCES[i]))  # the tabs are in SOURCES' order
        self.output_device = QComboBox()
        self.output_device.activated.connect(
            lambda _: self.output_device_chosen.emit(self.output_device.currentData() or ""))
        self.refresh_devices = QPushButton("Refresh")
        self.refresh_devices.setToolTip("List the PulseAudio/PipeWire sinks again "
                                        "(sound cards are listed when the studio starts)")
        self.refresh_devices.clicked.connect(self.devices_refresh_requested)
        self.output_note = QLabel("")
        self.output_note.setWordWrap(True)
        voice_to = QHBoxLayout()
        voice_to.addWidget(self.output_device, 1)
        voice_to.addWidget(self.refresh_devices)
        form = QFormLayout()
        form.addRow("Voice to", voice_to)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addLayout(form)
        layout.addWidget(self.output_note)

    def _microphone_tab(self) -> QWidget:
        tab = QWidget()
        self.input_device = QComboBox()
        self.mic_button = QPushButton("Start microphone")
        self.mic_button.setCheckable(True)
        self.mic_button.toggled.connect(self._on_mic_button)
        self.mute = QCheckBox("mute")
        self.mute.toggled.connect(self.mute_toggled)
        self.level = QProgressBar(maximum=100, textVisible=False)
        self.level.setMaximumHeight(10)
        self.mic_error = QLabel("")
        self.mic_error.setWordWrap(True)
        layout = QVBoxLayout(tab)
        for w in (self.input_device, self.mic_button, self.level, self.mute, self.mic_error):
            layout.addWidget(w)
        layout.addStretch(1)
        return tab

    def _file_tab(self) -> QWidget:
        tab = QWidget()
        self.file_label = QLabel("no file")
        self.file_label.setWordWrap(True)
        open_button = QPushButton("Open audio file…")
        open_button.clicked.connect(self._open_file)
        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(lambda on: (self.play_requested if on else self.pause_requested).emit())
        self.loop = QCheckBox("loop")
        self.loop.toggled.connect(self.loop_toggled)
        self.seek = QSlider(Qt.Horizontal, maximum=1000)
        self.seek.sliderReleased.connect(lambda: self.seek_requested.emit(
            self.seek.value() / 1000 * self._duration))
        self.position = QLabel("0:00 / 0:00")
        row = QHBoxLayout()
        row.addWidget(self.play_button)
        row.addWidget(self.loop)
        row.addWidget(self.position)
        layout = QVBoxLayout(tab)
        layout.addWidget(open_button)
        layout.addWidget(self.file_label)
        layout.addLayout(row)
        layout.addWidget(self.seek)
        layout.addStretch(1)
        self._duration = 0.0
        return tab

    def _speech_tab(self, available: bool) -> QWidget:
        tab = QWidget()
        self.text = QLineEdit()
        self.text.setPlaceholderText("type a sentence and press Enter")
        self.speak_button = QPushButton("Speak")
        self.speech_status = QLabel("" if available else install_hint())
        self.speech_status.setWordWrap(True)
        self.speech_status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        for w in (self.text, self.speak_button):
            w.setEnabled(available)
        self.speak_button.clicked.connect(lambda: self.speak_requested.emit(self.text.text()))
        self.text.returnPressed.connect(lambda: self.speak_requested.emit(self.text.text()))
        layout = QVBoxLayout(tab)
        for w in (self.text, self.speak_button, self.speech_status):
            layout.addWidget(w)
        layout.addStretch(1)
        return tab

    def _open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open audio file", "", f"Audio ({AUDIO_FILE_PATTERNS})")
        if path:
            self.file_chosen.emit(path)

    def _on_mic_button(self, on: bool) -> None:
        self.mic_button.setText("Stop microphone" if on else "Start microphone")
        if on:
            self.microphone_requested.emit(self.input_device.currentData())
        else:
            self.microphone_stop_requested.emit()

    # -- model -> view ---------------------------------------------------------------------------
    def set_devices(self, inputs: list[SoundDevice], outputs: list[SoundDevice],
                    sinks: list[PulseSink] = ()) -> None:
        """Outputs carry the name the model opens them by: "" (default), a sound card, "pulse:<sink>".
        What was selected stays selected when it is still listed."""
        chosen_input, chosen_output = self.input_device.currentData(), self.output_device.currentData()
        self.input_device.clear()
        self.input_device.addItem("default input", None)
        for dev in inputs:
            self.input_device.addItem(dev.name, dev.index)
        self.output_device.clear()
        self.output_device.addItem("default output", "")
        for dev in outputs:
            self.output_device.addItem(dev.name, dev.name)
        for sink in sinks:
            self.output_device.addItem(sink.label, sink.device)
        self.input_device.setCurrentIndex(max(0, self.input_device.findData(chosen_input)))
        if chosen_output:
            self.select_output(chosen_output)

    def select_output(self, name: str) -> None:
        index = self.output_device.findData(name)
        if index >= 0:
            self.output_device.setCurrentIndex(index)

    def show_source(self, name: str) -> None:
        self.tabs.blockSignals(True)
        self.tabs.setCurrentIndex(SOURCES.index(name))
        self.tabs.blockSignals(False)

    def show_file(self, path: str, error: str, duration_s: float) -> None:
        self.file_label.setText(error or path)
        self.file_label.setStyleSheet("color: #d9534f;" if error else "")
        self._duration = duration_s if not error else 0.0

    def show_position(self, position_s: float, playing: bool) -> None:
        if not self.seek.isSliderDown() and self._duration:
            self.seek.setValue(int(1000 * position_s / self._duration))
        self.position.setText(f"{_clock(position_s)} / {_clock(self._duration)}")
        if self.play_button.isChecked() != playing:
            self.play_button.blockSignals(True)
            self.play_button.setChecked(playing)
            self.play_button.blockSignals(False)
        self.play_button.setText("Pause" if playing else "Play")

    def show_level(self, peak: float) -> None:
        self.level.setValue(int(100 * min(1.0, peak)))

    def show_mic_error(self, message: str) -> None:
        self.mic_error.setText(message)
        if message:
            self.mic_button.blockSignals(True)
            self.mic_button.setChecked(False)
            self.mic_button.setText("Start microphone")
            self.mic_button.blockSignals(False)

    def show_speech_status(self, message: str) -> None:
        self.speech_status.setText(message)


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"
