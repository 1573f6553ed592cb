"""Portrait: open (dialog; the window takes dropped images), thumbnail, the engine's verdict
inline, recent files. The thumbnail and the recents show only portraits the engine accepted."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QStringListModel, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QFileDialog, QLabel, QListView, QPushButton, QVBoxLayout, QWidget

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
THUMB = 128
VERDICT_MARKS = {"checking": ("… ", "color: palette(text);"), "ok": ("✓ ", "color: #3a9d5d;"),
                 "refused": ("✗ ", "color: #d9534f; font-weight: bold;")}


class PortraitPanel(QWidget):
    portrait_chosen = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.thumbnail = QLabel("drop a portrait\non the window\n(PNG, JPEG, WebP)")
        self.thumbnail.setAlignment(Qt.AlignCenter)
        self.thumbnail.setFixedSize(THUMB, THUMB)
        self.thumbnail.setStyleSheet("border: 1px dashed palette(mid);")
        self.open_button = QPushButton("Open portrait…")
        self.open_button.clicked.connect(self.open_dialog)
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        self.verdict.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.recent_model = QStringListModel()
        self.recent_view = QListView()
        self.recent_view.setModel(self.recent_model)
        self.recent_view.setMaximumHeight(80)
        self.recent_view.setToolTip("recent portraits: double-click to use one again")
        self.recent_view.doubleClicked.connect(lambda index: self.portrait_chosen.emit(
            self.recent_model.data(index, Qt.DisplayRole)))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        for widget in (self.thumbnail, self.open_button, self.verdict, QLabel("Recent:"), self.recent_view):
            layout.addWidget(widget)
        layout.addStretch(1)

    def open_dialog(self) -> None:
        patterns = " ".join(f"*{suffix}" for suffix in IMAGE_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(self, "Open portrait", "", f"Images ({patterns})")
        if path:
            self.portrait_chosen.emit(path)

    # -- model -> view ---------------------------------------------------------------------------
    def show_portrait(self, path: str, image: np.ndarray) -> None:
        pixels = np.ascontiguousarray(image)
        h, w = pixels.shape[:2]
        qimage = QImage(pixels.data, w, h, 3 * w, QImage.Format_RGB888).copy()
        self.thumbnail.setPixmap(QPixmap.fromImage(qimage).scaled(
            THUMB, THUMB, Qt.KeepAspectRatio, Qt.SmoothTransformation))
        self.thumbnail.setToolTip(path)

    def show_verdict(self, kind: str, message: str) -> None:
        """`kind`: "checking", "ok" or "refused" (studio.session.session_model.VERDICTS)."""
        mark, style = VERDICT_MARKS[kind]
        self.verdict.setText(mark + message)
        self.verdict.setStyleSheet(style)

    def show_recent(self, paths: list[str]) -> None:
        self.recent_model.setStringList(paths)
