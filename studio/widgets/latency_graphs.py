"""Latency graphs (pyqtgraph), redrawn by a timer at <= 30 Hz from the session's ring buffers."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QVBoxLayout, QWidget

from studio.session_stats import STAGE_GROUPS, SessionStats

REDRAW_HZ = 10
_STAGE_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#b07aa1")


class LatencyGraphs(QWidget):
    def __init__(self, stats: SessionStats, parent=None, redraw_hz: int = REDRAW_HZ):
        super().__init__(parent)
        self.stats = stats
        self.redraws = 0
        self.layout_widget = pg.GraphicsLayoutWidget()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.layout_widget)
        self._curves: dict[str, tuple[str, str, pg.PlotDataItem]] = {}
        self._build()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.redraw)
        self._timer.start(int(1000 / min(redraw_hz, 30)))

    def _plot(self, row: int, col: int, title: str, unit: str) -> pg.PlotItem:
        plot = self.layout_widget.addPlot(row=row, col=col, title=title)
        plot.setLabel("left", units=unit)
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        return plot

    def _curve(self, plot: pg.PlotItem, ring: str, channel: str, color: str, name: str | None = None,
               dashed: bool = False) -> None:
        pen = pg.mkPen(color, width=2, style=pg.QtCore.Qt.DashLine if dashed else pg.QtCore.Qt.SolidLine)
        item = plot.plot(pen=pen, name=name, connect="finite")
        self._curves[f"{ring}.{channel}"] = (ring, channel, item)

    def _build(self) -> None:
        p = self._plot(0, 0, "end-to-end latency (capture → shown)", "s")
        self._curve(p, "frames", "latency_s", "#4e79a7")
        p = self._plot(0, 1, "chunk compute vs real-time budget", "ms")
        p.addLegend(offset=(5, 5))
        self._curve(p, "chunks", "compute_ms", "#e15759", "compute")
        self._curve(p, "chunks", "budget_ms", "#999999", "budget", dashed=True)
        p = self._plot(0, 2, "per-stage time per chunk", "ms")
        p.addLegend(offset=(5, 5))
        for group, color in zip(STAGE_GROUPS, _STAGE_COLORS):
            self._curve(p, "chunks", group, color, group)
        p = self._plot(1, 0, "output fps", "")
        self._curve(p, "frames", "fps", "#59a14f")
        p = self._plot(1, 1, "playout buffer", "s")
        self._curve(p, "frames", "buffer_s", "#f28e2b")
        p = self._plot(1, 2, "dropped frames (total)", "")
        self._curve(p, "frames", "dropped", "#e15759")

    def redraw(self) -> None:
        if not self.isVisible():
            return
        rings = {"frames": self.stats.frames, "chunks": self.stats.chunks}
        for ring_name, channel, item in self._curves.values():
            t, y = rings[ring_name].series(channel)
            if len(t) and np.isfinite(y).any():
                item.setData(t, y)
            else:
                item.setData([], [])
        self.redraws += 1

    def set_stats(self, stats: SessionStats) -> None:
        self.stats = stats
