"""Portrait: open (dialog or drag-and-drop), thumbnail, the engine's verdict inline, recent files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QStringListModel, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QFileDialog, QLabel, QListView, QPushButton, QVBoxLayout, QWidget

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
THUMB = 160


class PortraitPanel(QWidget):
    portrait_chosen = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.thumbnail = QLabel("drop a portrait here\n(PNG, JPEG, WebP)")
        self.thumbnail.setAlignment(Qt.AlignCenter)
        self.thumbnail.setFixedSize(THUMB, THUMB)
        self.thumbnail.setStyleSheet("border: 1px dashed palette(mid);")
        self.open_button = QPushButton("Open portrait…")
        self.open_button.clicked.connect(self._open_dialog)
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        self.recent_model = QStringListModel()
        self.recent_view = QListView()
        self.recent_view.setModel(self.recent_model)
        self.recent_view.setMaximumHeight(110)
        self.recent_view.setToolTip("recent portraits: double-click to use one again")
        self.recent_view.doubleClicked.connect(lambda index: self.portrait_chosen.emit(
            self.recent_model.data(index, Qt.DisplayRole)))
        layout = QVBoxLayout(self)
        for widget in (self.thumbnail, self.open_button, self.verdict, QLabel("Recent:"), self.recent_view):
            layout.addWidget(widget)
        layout.addStretch(1)

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open portrait", "",
                                              "Images (*.png *.jpg *.jpeg *.webp)")
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

    def show_verdict(self, ok: bool, message: str) -> None:
        self.verdict.setText(("✓ " if ok else "✗ ") + message)
        self.verdict.setStyleSheet("color: #3a9d5d;" if ok else "color: #d9534f; font-weight: bold;")

    def show_recent(self, paths: list[str]) -> None:
        self.recent_model.setStringList(paths)

    # -- drag and drop ---------------------------------------------------------------------------
    @staticmethod
    def _dropped_image(mime) -> str | None:
        for url in mime.urls() if mime.hasUrls() else []:
            path = url.toLocalFile()
            if Path(path).suffix.lower() in IMAGE_SUFFIXES:
                return path
        return None

    def dragEnterEvent(self, event) -> None:
        if self._dropped_image(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        path = self._dropped_image(event.mimeData())
        if path:
            event.acceptProposedAction()
            self.portrait_chosen.emit(path)
