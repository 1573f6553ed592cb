"""The live avatar view: paints the frame due now, scaled to fit, with the studio's status written
over it whenever frames are not playing (StudioStatus.overlay)."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

OVERLAY_MARGIN = 12
MIN_SIZE = (256, 144)  # px: on a 720-pixel screen with a problem showing, the graphs keep their room too


class VideoView(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumSize(*MIN_SIZE)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setAttribute(Qt.WA_OpaquePaintEvent)
        self._image: QImage | None = None
        self._pixels: np.ndarray | None = None  # keeps the QImage's memory alive
        self.frame_index = -1
        self.frames_painted = 0
        self.overlay = ""

    def show_frame(self, index: int, rgb: np.ndarray) -> None:
        """rgb: uint8 [H, W, 3]; shown at the next paint."""
        pixels = np.ascontiguousarray(rgb)
        h, w = pixels.shape[:2]
        self._pixels = pixels
        self._image = QImage(pixels.data, w, h, 3 * w, QImage.Format_RGB888)
        self.frame_index = index
        self.update()

    def set_overlay(self, text: str) -> None:
        self.overlay = text
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(16, 16, 16))
        if self._image is not None:
            img_w, img_h = self._image.width(), self._image.height()
            scale = min(self.width() / img_w, self.height() / img_h)
            w, h = img_w * scale, img_h * scale
            target = QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)
            painter.setRenderHint(QPainter.SmoothPixmapTransform)
            painter.drawImage(target, self._image)
            self.frames_painted += 1
        if self.overlay:
            painter.setPen(QColor(255, 210, 80))
            font = painter.font()
            font.setPointSize(max(10, min(18, self.height() // 30)))
            painter.setFont(font)
            area = self.rect().adjusted(OVERLAY_MARGIN, 0, -OVERLAY_MARGIN, -OVERLAY_MARGIN)
            flags = Qt.AlignHCenter | Qt.AlignBottom | Qt.TextWordWrap
            band = painter.boundingRect(area, flags, self.overlay).adjusted(-8, -4, 8, 4)
            painter.fillRect(band, QColor(0, 0, 0, 170))  # readable over any picture
            painter.drawText(area, flags, self.overlay)
        painter.end()
