"""Audio sources: microphone (device by name, level, mute), audio file (play/pause/seek/loop) and
text-to-speech (voice, speak, stop); plus the output the voice is heard on.

The tabs only show a source's controls: a source goes on air when it is started (Start
microphone, Play, Speak), and the line at the top says which one is. Every button shows what the
model reports, never what was last clicked.
"""
from __future__ import annotations

from pathlib import Path

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
    QSizePolicy,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from studio.audio.audio_file_source import AUDIO_FILE_PATTERNS
from studio.audio.tts import Voice, install_hint
from studio.session.audio_sources_model import SOURCE_NAMES, SOURCES, FileState, MicrophoneState, SourceStatus
from studio.session.devices_model import DeviceList
from studio.widgets.clock_text import clock_text
from studio.widgets.seek_slider import SeekSlider

TAB_TITLES = {"microphone": "Microphone", "file": "Audio file", "speech": "Speech"}  # fit a 300 px dock
ON_AIR_MARK = "● "
ERROR_STYLE = "color: #d9534f;"


class AudioPanel(QWidget):
    microphone_requested = Signal(str)  # the input's key (studio.session.devices_model.InputChoice.key)
    microphone_stop_requested = Signal()
    mute_toggled = Signal(bool)
    file_chosen = Signal(str)
    play_requested = Signal()
    pause_requested = Signal()
    seek_requested = Signal(float)  # seconds
    loop_toggled = Signal(bool)
    speak_requested = Signal(str)
    speech_stop_requested = Signal()
    voice_chosen = Signal(str)  # espeak-ng voice code
    output_device_chosen = Signal(str)
    devices_refresh_requested = Signal()  # list the devices again (e.g. a new virtual microphone)

    def __init__(self, speech_available: bool, parent=None):
        super().__init__(parent)
        self.on_air = QLabel()
        self.tabs = QTabWidget()
        self.tabs.addTab(self._microphone_tab(), TAB_TITLES["microphone"])
        self.tabs.addTab(self._file_tab(), TAB_TITLES["file"])
        self.tabs.addTab(self._speech_tab(speech_available), TAB_TITLES["speech"])
        self.output_device = QComboBox()
        self.output_device.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.output_device.setMinimumContentsLength(12)
        self.output_device.activated.connect(
            lambda _: self.output_device_chosen.emit(self.output_device.currentData() or ""))
        self.refresh_devices = QPushButton("Refresh")
        self.refresh_devices.setToolTip("List the microphones, speakers and virtual microphones again")
        self.refresh_devices.clicked.connect(self.devices_refresh_requested)
        self.output_note = QLabel("")
        self.output_note.setWordWrap(True)
        self.output_note.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.output_note.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Minimum)
        voice_to = QHBoxLayout()
        voice_to.addWidget(self.output_device, 1)
        voice_to.addWidget(self.refresh_devices)
        form = QFormLayout()
        form.addRow("Voice to", voice_to)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.on_air)
        layout.addWidget(self.tabs)
        layout.addLayout(form)
        layout.addWidget(self.output_note)
        layout.addStretch(1)
        self._duration = 0.0
        self._file_playing = False
        self._mic_on = False
        self.show_on_air("")

    def _microphone_tab(self) -> QWidget:
        tab = QWidget()
        self.input_device = QComboBox()
        self.input_device.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.input_device.setMinimumContentsLength(12)
        self.mic_button = QPushButton("Start microphone")
        self.mic_button.clicked.connect(self._on_mic_button)
        self.mute = QCheckBox("mute (Ctrl+M)")
        self.mute.toggled.connect(self.mute_toggled)
        self.level = QProgressBar(maximum=100, textVisible=False)
        self.level.setMaximumHeight(10)
        self.mic_note = QLabel("")
        self.mic_note.setWordWrap(True)
        layout = QVBoxLayout(tab)
        for w in (self.input_device, self.mic_button, self.level, self.mute, self.mic_note):
            layout.addWidget(w)
        layout.addStretch(1)
        return tab

    def _file_tab(self) -> QWidget:
        tab = QWidget()
        open_button = QPushButton("Open audio file…")
        open_button.clicked.connect(self.open_file_dialog)
        self.file_label = QLabel("no file")
        self.file_label.setWordWrap(True)
        self.opening = QProgressBar(minimum=0, maximum=0, textVisible=False)  # busy while a file opens
        self.opening.setMaximumHeight(6)
        self.opening.setVisible(False)
        self.play_button = QPushButton("Play")
        self.play_button.setEnabled(False)
        self.play_button.clicked.connect(
            lambda: (self.pause_requested if self._file_playing else self.play_requested).emit())
        self.loop = QCheckBox("loop")
        self.loop.toggled.connect(self.loop_toggled)
        self.seek = SeekSlider()
        self.seek.setEnabled(False)
        self.seek.seek_to.connect(lambda fraction: self.seek_requested.emit(fraction * self._duration))
        self.position = QLabel("0:00 / 0:00")
        row = QHBoxLayout()
        row.addWidget(self.play_button)
        row.addWidget(self.loop)
        row.addWidget(self.position)
        layout = QVBoxLayout(tab)
        layout.addWidget(open_button)
        layout.addWidget(self.file_label)
        layout.addWidget(self.opening)
        layout.addLayout(row)
        layout.addWidget(self.seek)
        layout.addStretch(1)
        return tab

    def _speech_tab(self, available: bool) -> QWidget:
        tab = QWidget()
        self.voice = QComboBox()
        self.voice.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.voice.setMinimumContentsLength(12)
        self.voice.setToolTip("the voices of the installed espeak-ng")
        self.voice.activated.connect(lambda _: self.voice_chosen.emit(self.voice.currentData() or ""))
        self.text = QLineEdit()
        self.text.setPlaceholderText("type a sentence and press Enter")
        self.speak_button = QPushButton("Speak")
        self.speak_button.setToolTip("text to speech: the avatar says the sentence in the chosen voice")
        self.stop_speech_button = QPushButton("Stop")
        self.stop_speech_button.setEnabled(False)
        self.speech_status = QLabel("" if available else install_hint())
        self.speech_status.setWordWrap(True)
        self.speech_status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        for w in (self.voice, self.text, self.speak_button):
            w.setEnabled(available)
        self.speak_button.clicked.connect(lambda: self.speak_requested.emit(self.text.text()))
        self.text.returnPressed.connect(lambda: self.speak_requested.emit(self.text.text()))
        self.stop_speech_button.clicked.connect(self.speech_stop_requested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.speak_button)
        buttons.addWidget(self.stop_speech_button)
        layout = QVBoxLayout(tab)
        layout.addWidget(self.voice)
        layout.addWidget(self.text)
        layout.addLayout(buttons)
        layout.addWidget(self.speech_status)
        layout.addStretch(1)
        return tab

    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open audio file", "", f"Audio ({AUDIO_FILE_PATTERNS})")
        if path:
            self.file_chosen.emit(path)

    def _on_mic_button(self) -> None:
        if self._mic_on:
            self.microphone_stop_requested.emit()
        else:
            self.microphone_requested.emit(self.input_device.currentData() or "")

    # -- model -> view ---------------------------------------------------------------------------
    def set_devices(self, devices: DeviceList) -> None:
        """Inputs and outputs by name; what was selected stays selected when it is still listed."""
        chosen_input, chosen_output = self.input_device.currentData(), self.output_device.currentData()
        for combo, choices in ((self.input_device, devices.inputs), (self.output_device, devices.outputs)):
            combo.clear()
            for choice in choices:
                combo.addItem(choice.label, choice.key)
        if chosen_input:
            self.select_input(chosen_input)
        if chosen_output:
            self.select_output(chosen_output)

    def select_input(self, key: str) -> None:
        index = self.input_device.findData(key)
        if index >= 0:
            self.input_device.setCurrentIndex(index)

    def select_output(self, key: str) -> None:
        index = self.output_device.findData(key)
        if index >= 0:
            self.output_device.setCurrentIndex(index)

    def show_on_air(self, name: str) -> None:
        """The source on air ("" : none yet): named at the top, marked on its tab, and its tab shown."""
        self.on_air.setText(f"On air: <b>{SOURCE_NAMES[name]}</b>")
        for i, source in enumerate(SOURCES):  # the tabs are in SOURCES' order
            self.tabs.setTabText(i, (ON_AIR_MARK if source == name else "") + TAB_TITLES[source])
        if name:
            self.tabs.setCurrentIndex(SOURCES.index(name))

    def show_microphone(self, state: MicrophoneState) -> None:
        self._mic_on = state.on
        self.mic_button.setText("Stop microphone" if state.on else "Start microphone")
        self.input_device.setEnabled(not state.on)
        self.mic_note.setText(f"recording {state.name}" if state.on else state.note)
        self.mic_note.setStyleSheet("" if state.on or state.note.startswith("stopped") else ERROR_STYLE)
        if not state.on:
            self.level.setValue(0)

    def show_file(self, state: FileState) -> None:
        name = Path(state.path).name
        self.opening.setVisible(state.phase == "opening")
        self._duration = state.duration_s if state.phase == "ready" else 0.0
        ready = state.phase == "ready"
        self.play_button.setEnabled(ready)
        self.seek.setEnabled(ready and self._duration > 0)
        self.seek.show_fraction(0.0)
        self.file_label.setToolTip(state.error or state.path)
        self.file_label.setStyleSheet(ERROR_STYLE if state.phase == "failed" else "")
        self.file_label.setText({"none": "no file", "opening": f"opening {name}…", "ready": name,
                                 "failed": f"✗ {name} cannot be played"}
                                [state.phase])
        self.position.setText(f"0:00 / {clock_text(self._duration) if ready else '0:00'}")

    def show_status(self, status: SourceStatus) -> None:
        if self._duration:
            self.seek.show_fraction(status.file_position_s / self._duration)
            self.position.setText(f"{clock_text(status.file_position_s)} / {clock_text(self._duration)}")
        self._file_playing = status.file_playing
        self.play_button.setText("Pause" if status.file_playing else "Play")
        self.level.setValue(int(100 * min(1.0, status.level)))
        if self.mute.isChecked() != status.muted:
            self.mute.blockSignals(True)
            self.mute.setChecked(status.muted)
            self.mute.blockSignals(False)
        self.stop_speech_button.setEnabled(status.speaking)

    def show_voices(self, voices: list[Voice], current: str) -> None:
        self.voice.clear()
        for voice in voices:
            self.voice.addItem(voice.label, voice.code)
        index = self.voice.findData(current)
        self.voice.setCurrentIndex(max(index, 0))

    def show_speech_status(self, message: str) -> None:
        self.speech_status.setText(message)

    def show_output_note(self, note: str) -> None:
        self.output_note.setText(note)
        self.output_note.setVisible(bool(note))
