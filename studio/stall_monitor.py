"""Measures how long the UI thread was unable to run: a 5 ms timer that notes late firings."""
from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer

PERIOD_MS = 5


class StallMonitor(QObject):
    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.max_stall_ms = 0.0  # longest gap beyond the timer period since reset()
        self.recent_stall_ms = 0.0  # longest in the last second
        self._last = 0.0
        self._window_start = 0.0
        self._window_max = 0.0
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.PreciseTimer)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._last = self._window_start = time.monotonic()
        self._timer.start(PERIOD_MS)

    def reset(self) -> None:
        self.max_stall_ms = self.recent_stall_ms = self._window_max = 0.0
        self._last = time.monotonic()

    def _tick(self) -> None:
        now = time.monotonic()
        stall = max(0.0, (now - self._last) * 1e3 - PERIOD_MS)
        self._last = now
        self.max_stall_ms = max(self.max_stall_ms, stall)
        self._window_max = max(self._window_max, stall)
        if now - self._window_start >= 1.0:
            self.recent_stall_ms, self._window_max, self._window_start = self._window_max, 0.0, now
