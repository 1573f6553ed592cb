"""The always-visible one-line summary ("28 fps · 1.9 s behind live · 0 drops")."""
from __future__ import annotations

from PySide6.QtWidgets import QLabel


class SummaryBar(QLabel):
    def __init__(self, parent=None):
        super().__init__("no engine", parent)
        font = self.font()
        font.setPointSize(font.pointSize() + 2)
        font.setBold(True)
        self.setFont(font)
        self.setContentsMargins(8, 4, 8, 4)
        self.setObjectName("summary")
