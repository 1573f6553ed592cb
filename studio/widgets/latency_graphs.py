"""Latency graphs (pyqtgraph), redrawn by a timer at <= 30 Hz from the session's ring buffers.

Each graph is its own PlotWidget and the timer redraws one graph per tick (round robin), so one
tick costs one small repaint: a whole-scene repaint of six plots would stall the UI thread for
tens of milliseconds on a software-rendered desktop.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QGridLayout, QWidget

from studio.session_stats import STAGE_GROUPS, SessionStats

REDRAW_HZ = 24  # ticks per second; each plot is refreshed at REDRAW_HZ / 6
_STAGE_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#b07aa1")


class LatencyGraphs(QWidget):
    def __init__(self, stats: SessionStats, parent=None, redraw_hz: int = REDRAW_HZ):
        super().__init__(parent)
        self.stats = stats
        self.redraws = 0
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(2)
        self.plots: list[pg.PlotWidget] = []
        self._curves: dict[str, tuple[str, str, pg.PlotDataItem]] = {}
        self._curves_of: list[list[str]] = []
        self._next = 0
        self._build()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.redraw)
        self._timer.start(int(1000 / min(redraw_hz, 30)))

    def _plot(self, row: int, col: int, title: str, unit: str) -> pg.PlotItem:
        widget = pg.PlotWidget(title=title)
        self._grid.addWidget(widget, row, col)
        self.plots.append(widget)
        self._curves_of.append([])
        plot = widget.getPlotItem()
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
        self._curves_of[-1].append(f"{ring}.{channel}")

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
        """Refresh the next graph in turn from the rings."""
        if not self.isVisible():
            return
        rings = {"frames": self.stats.frames, "chunks": self.stats.chunks}
        for key in self._curves_of[self._next]:
            ring_name, channel, item = self._curves[key]
            t, y = rings[ring_name].series(channel)
            if len(t) and np.isfinite(y).any():
                item.setData(t, y)
            else:
                item.setData([], [])
        self._next = (self._next + 1) % len(self.plots)
        self.redraws += 1

    def set_background(self, color) -> None:
        for widget in self.plots:
            widget.setBackground(color)
