"""The live row under the summary: the quality choice and target latency asked of live sessions,
what the session achieves (latency against its target, real-time factor, profile, skipped
seconds), and a warning that stays up while the engine cannot keep up."""
from __future__ import annotations

import math

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QGridLayout, QLabel, QWidget

from studio.engine_link.options import QUALITY_AUTO, QUALITY_FIXED, QUALITY_LABELS, LiveChoice
from studio.session_stats import LiveStatus
from studio.widgets.elided_label import ElidedLabel

UNKNOWN = "—"
TARGET_MAX_S = 30.0
TARGET_SETTLE_MS = 700  # a target typed or stepped is applied once it stops changing (it re-opens the session)
WARNING_STYLE = "QLabel { background: #7a4b00; color: #fff3d6; padding: 4px 8px; border-radius: 3px; }"


def _seconds(value: float) -> str:
    return UNKNOWN if math.isnan(value) else f"{value:.2f} s"


def status_text(status: LiveStatus) -> str:
    """"latency 0.42 s · target 0.58 s · real-time factor 7.9× · profile — · skipped 0.0 s"."""
    rtf = UNKNOWN if math.isnan(status.rtf) else f"{status.rtf:.1f}×"
    target = _seconds(status.target_s) if not math.isnan(status.target_s) else "every frame (file)"
    return (f"latency {_seconds(status.latency_s)} · target {target} · real-time factor {rtf} · "
            f"profile {status.profile or UNKNOWN} · skipped {status.skipped_s:.1f} s")


class LiveStatusRow(QWidget):
    choice_changed = Signal(object)  # LiveChoice

    def __init__(self, parent=None):
        super().__init__(parent)
        self.quality = QComboBox()
        self.quality.setToolTip("Keep up (auto): the engine lowers quality when it cannot make video in real "
                                "time. Quality first: it never does, and live lag is skipped instead.")
        self._profiles: list[str] = []
        self._fill_quality([])
        self.target = QDoubleSpinBox(minimum=0.0, maximum=TARGET_MAX_S, singleStep=0.1, decimals=2,
                                     suffix=" s", specialValueText="auto")
        self.target.setKeyboardTracking(False)
        self.target.setToolTip("Target live latency, from capturing the voice to showing its frame; auto: one "
                               "chunk of audio + 0.5 s. The playout skips ahead when it falls further behind.")
        self.numbers = ElidedLabel(status_text(LiveStatus(math.nan, math.nan, math.nan, "", 0.0, "")))
        self.numbers.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(WARNING_STYLE)
        self.warning.hide()
        self._refusal = ""
        self._settle = QTimer(self, singleShot=True, interval=TARGET_SETTLE_MS)
        self._settle.timeout.connect(self._emit_choice)
        self.quality.activated.connect(lambda _i: self._emit_choice())
        self.target.valueChanged.connect(lambda _v: self._settle.start())
        grid = QGridLayout(self)
        grid.setContentsMargins(8, 0, 8, 4)
        grid.addWidget(QLabel("Quality"), 0, 0)
        grid.addWidget(self.quality, 0, 1)
        grid.addWidget(QLabel("Target latency"), 0, 2)
        grid.addWidget(self.target, 0, 3)
        grid.addWidget(self.numbers, 0, 4)
        grid.setColumnStretch(4, 1)
        grid.addWidget(self.warning, 1, 0, 1, 5)

    def _fill_quality(self, profiles: list[str]) -> None:
        current = self.quality.currentData() or QUALITY_AUTO
        self.quality.clear()
        for value in (QUALITY_AUTO, QUALITY_FIXED):
            self.quality.addItem(QUALITY_LABELS[value], value)
        for name in profiles:
            self.quality.addItem(f"Fixed: {name}", name)
        self._select(current)

    def _select(self, quality: str) -> None:
        index = self.quality.findData(quality)
        if index < 0:  # a profile of a session not opened yet (the command line, the last run)
            self.quality.addItem(f"Fixed: {quality}", quality)
            index = self.quality.count() - 1
        self.quality.setCurrentIndex(index)

    def choice(self) -> LiveChoice:
        return LiveChoice(quality=self.quality.currentData() or QUALITY_AUTO, target_latency_s=self.target.value())

    def _emit_choice(self) -> None:
        self._settle.stop()
        self.choice_changed.emit(self.choice())

    # -- model -> view ---------------------------------------------------------------------------
    def show_choice(self, choice: LiveChoice) -> None:
        self.target.blockSignals(True)
        self.target.setValue(choice.target_latency_s)
        self.target.blockSignals(False)
        self._select(choice.quality)

    def show_profiles(self, profiles: list[str]) -> None:
        """A session opened: its profiles can be fixed; a refusal before it is over."""
        self._refusal = ""
        if profiles != self._profiles:
            self._profiles = list(profiles)
            self._fill_quality(self._profiles)

    def show_refusal(self, message: str) -> None:
        self._refusal = f"The engine refused the session: {message}"
        self._show_warning(self._refusal)

    def show_status(self, status: LiveStatus) -> None:
        self.numbers.set_full_text(status_text(status))
        self._show_warning(self._refusal or status.warning)

    def _show_warning(self, text: str) -> None:
        if text != self.warning.text():
            self.warning.setText(text)
        self.warning.setVisible(bool(text))
