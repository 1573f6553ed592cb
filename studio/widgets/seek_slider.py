"""A position slider that jumps to where it is clicked (a media player's), not a page towards it."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QProxyStyle, QSlider, QStyle

RANGE = 1000  # slider steps over the whole file


class _JumpStyle(QProxyStyle):
    """The platform's style, except that a left click sets the value absolutely (Qt's own hint)."""

    def styleHint(self, hint, option=None, widget=None, data=None):
        if hint == QStyle.SH_Slider_AbsoluteSetButtons:
            return Qt.LeftButton.value
        return super().styleHint(hint, option, widget, data)


class SeekSlider(QSlider):
    seek_to = Signal(float)  # 0..1 of the way through: on release of a click or a drag

    def __init__(self, parent=None):
        super().__init__(Qt.Horizontal, parent)
        self.setRange(0, RANGE)
        self._style = _JumpStyle(self.style().name())  # kept: the widget does not own its style
        self.setStyle(self._style)
        self.sliderReleased.connect(lambda: self.seek_to.emit(self.value() / RANGE))

    def show_fraction(self, fraction: float) -> None:
        """Follow playback, except while the user holds the handle."""
        if not self.isSliderDown():
            self.setValue(round(max(0.0, min(1.0, fraction)) * RANGE))
