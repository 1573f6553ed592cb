"""The always-visible one-line summary ("28 fps · 1.9 s behind live · 0 drops"), or the status
while no session plays. One line always: a long failure reason is cut with "…" (the whole of it
is in the tooltip, the preview and the engine panel) rather than widen the window."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSizePolicy


class SummaryBar(QLabel):
    def __init__(self, parent=None):
        super().__init__(parent)
        font = self.font()
        font.setPointSize(font.pointSize() + 2)
        font.setBold(True)
        self.setFont(font)
        self.setContentsMargins(8, 4, 8, 4)
        self.setObjectName("summary")
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        self.full_text = ""
        self.show_summary("stopped")

    def show_summary(self, text: str) -> None:
        self.full_text = text
        self.setToolTip(text)
        self._fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        room = self.contentsRect().width()
        self.setText(self.fontMetrics().elidedText(self.full_text, Qt.ElideRight, room) if room > 0 else self.full_text)
