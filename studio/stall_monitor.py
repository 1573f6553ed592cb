"""Measures how long the UI thread was unable to run: a 5 ms timer that notes late firings.

Two numbers per gap: the wall time (what the user sees, but also the OS preempting us on a busy
machine) and the UI thread's own CPU time inside the gap (work we put on the UI thread by mistake).
"""
from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer

PERIOD_MS = 5


class StallMonitor(QObject):
    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.max_stall_ms = 0.0  # longest gap beyond the timer period since reset()
        self.max_busy_ms = 0.0  # most UI-thread CPU time spent inside one such gap
        self.recent_stall_ms = 0.0  # longest in the last second
        self._since_taken = 0.0  # longest since take_max_stall_ms()
        self._last = 0.0
        self._last_cpu = 0.0
        self._window_start = 0.0
        self._window_max = 0.0
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.PreciseTimer)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._last = self._window_start = time.monotonic()
        self._last_cpu = time.thread_time()
        self._timer.start(PERIOD_MS)

    def reset(self) -> None:
        self.max_stall_ms = self.max_busy_ms = self.recent_stall_ms = self._window_max = 0.0
        self._last = time.monotonic()
        self._last_cpu = time.thread_time()

    def take_max_stall_ms(self) -> float:
        """The longest stall since the last call (a caller that samples once a second)."""
        now = time.monotonic()  # a stall still going on (this call ends it) counts too
        longest = max(self._since_taken, (now - self._last) * 1e3 - PERIOD_MS)
        self._since_taken = 0.0
        return max(0.0, longest)

    def _tick(self) -> None:
        now, cpu = time.monotonic(), time.thread_time()
        stall = max(0.0, (now - self._last) * 1e3 - PERIOD_MS)
        if stall > 0.0:
            self.max_busy_ms = max(self.max_busy_ms, min(stall, (cpu - self._last_cpu) * 1e3))
        self._last, self._last_cpu = now, cpu
        self.max_stall_ms = max(self.max_stall_ms, stall)
        self._window_max = max(self._window_max, stall)
        self._since_taken = max(self._since_taken, stall)
        if now - self._window_start >= 1.0:
            self.recent_stall_ms, self._window_max, self._window_start = self._window_max, 0.0, now
