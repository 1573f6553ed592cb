"""Latency graphs (pyqtgraph), redrawn at REDRAW_HZ from the session's ring buffers, only while shown.

What makes a redraw cheap on a software-rendered 2-core laptop: every axis has a fixed range
between redraws (time runs over the last WINDOW_S, 0 = now; the value axis changes only when the
data outgrows it or shrinks well below it, in 1-2-5 steps), so a redraw repaints the curves and
never re-lays out tick labels; titles and legends are plain labels outside the plots; and nothing
is drawn while the graphs are hidden or nothing new came in. Each plot has one fixed unit.

Titles are not pyqtgraph's: its title item is as wide as its text at least, so in a third of the
space under a laptop's preview it pushed the plot past its view and cut off the newest seconds.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from studio.session_stats import STAGE_GROUPS, SessionStats
from studio.widgets.elided_label import ElidedLabel

REDRAW_HZ = 4
WINDOW_S = 60.0  # the time axis: the last minute
_STAGE_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#b07aa1")


@dataclass(frozen=True)
class Line:
    ring: str  # "frames" (one row per frame shown) or "chunks" (one row per chunk received)
    channel: str
    name: str
    color: str
    dashed: bool = False


@dataclass(frozen=True)
class PlotSpec:
    title: str
    unit: str  # the value axis' label: one unit per plot, never rescaled to another
    lines: tuple[Line, ...]
    floor: float  # the value axis never shows less than [0, floor]


PLOTS = (
    PlotSpec("Live latency (capture → shown)", "s", (
        Line("frames", "latency_s", "latency", "#4e79a7"),
        Line("frames", "target_s", "target", "#999999", dashed=True),
        Line("frames", "buffer_s", "playout buffer", "#f28e2b")), 1.0),
    PlotSpec("Chunk compute vs real-time budget", "ms", (
        Line("chunks", "compute_ms", "compute", "#e15759"),
        Line("chunks", "budget_ms", "budget", "#999999", dashed=True)), 100.0),
    PlotSpec("Per-stage time per chunk", "ms", tuple(
        Line("chunks", group, group, color) for group, color in zip(STAGE_GROUPS, _STAGE_COLORS)), 10.0),
    PlotSpec("Real-time factor (video s per compute s)", "×", (
        Line("chunks", "rtf", "real-time factor", "#59a14f"),), 2.0),
    PlotSpec("Output frame rate", "fps", (Line("frames", "fps", "shown", "#59a14f"),), 30.0),
    PlotSpec("Video skipped or dropped (total)", "s", (
        Line("frames", "skipped_s", "skipped to stay live", "#b07aa1"),
        Line("frames", "dropped_s", "dropped", "#e15759")), 1.0),
)
COLUMNS = 3
PLOT_MIN_HEIGHT = 72  # px: the ticks and a curve stay readable when problems and warnings crowd the window
TIME_LABEL_HEIGHT = 12  # px more for the bottom row, whose plots also carry the time axis label


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is >= value (value > 0)."""
    exp = math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        if step * 10 ** exp >= value * (1 - 1e-9):
            return step * 10 ** exp
    return 10.0 ** (exp + 1)


def next_range(current: float, data_max: float, floor: float) -> float:
    """The value axis' top: grows as soon as the data does, shrinks only once the data fits in well
    under half of it, so it does not flicker between two steps."""
    want = nice_ceiling(max(data_max * 1.15, floor))
    if want > current or data_max < 0.4 * current:
        return want
    return current


class _Legend(QLabel):
    """A word-wrapped legend that keeps the height of all its lines: squeezed, the plot gives way, not it."""

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        needed = self.heightForWidth(self.width())
        if needed > 0 and needed != self.minimumHeight():
            self.setMinimumHeight(needed)


class _Plot:
    def __init__(self, spec: PlotSpec, time_label: bool):
        self.spec = spec
        self.title = ElidedLabel(spec.title)  # cut with "…" where the cell is narrow, whole in the tooltip
        self.title.setAlignment(Qt.AlignHCenter)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.widget = pg.PlotWidget()
        self.widget.setMinimumHeight(PLOT_MIN_HEIGHT + (TIME_LABEL_HEIGHT if time_label else 0))
        item = self.widget.getPlotItem()
        item.setMouseEnabled(x=False, y=False)
        item.hideButtons()
        item.setMenuEnabled(False)
        item.showGrid(x=True, y=True, alpha=0.2)
        for side in ("left", "bottom"):
            item.getAxis(side).enableAutoSIPrefix(False)
        item.setLabel("left", spec.unit)
        if time_label:
            item.setLabel("bottom", "time (s, 0 = now)")
        item.enableAutoRange(x=False, y=False)
        item.setXRange(-WINDOW_S, 0.0, padding=0)
        self.top = spec.floor
        item.setYRange(0.0, self.top, padding=0)
        self.curves = {}
        for line in spec.lines:
            pen = pg.mkPen(line.color, width=2, style=Qt.DashLine if line.dashed else Qt.SolidLine)
            curve = item.plot(pen=pen, connect="finite")
            curve.setDownsampling(auto=True, method="peak")
            self.curves[line] = curve
        self.legend = _Legend("  ".join(
            f'<span style="color:{line.color}">{"┅" if line.dashed else "━"}</span> {line.name}'
            for line in spec.lines))
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.RichText)

    def redraw(self, rings: dict, now: float) -> None:
        data_max = 0.0
        for line, curve in self.curves.items():
            t, y = rings[line.ring].series(line.channel)
            keep = t >= now - WINDOW_S
            t, y = t[keep] - now, y[keep]
            finite = np.isfinite(y)
            if finite.any():
                curve.setData(t, y)
                data_max = max(data_max, float(y[finite].max()))
            else:
                curve.setData([], [])
        top = next_range(self.top, data_max, self.spec.floor)
        if top != self.top:
            self.top = top
            self.widget.getPlotItem().setYRange(0.0, top, padding=0)


class LatencyGraphs(QWidget):
    def __init__(self, stats: SessionStats, parent=None, redraw_hz: int = REDRAW_HZ):
        super().__init__(parent)
        self.stats = stats
        self.redraws = 0  # redraws made (each refreshes every plot)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(2)
        last_row = (len(PLOTS) - 1) // COLUMNS
        self._plots = [_Plot(spec, time_label=i // COLUMNS == last_row) for i, spec in enumerate(PLOTS)]
        for i, plot in enumerate(self._plots):
            cell = QVBoxLayout()
            cell.setSpacing(0)
            cell.addWidget(plot.title)
            cell.addWidget(plot.widget, 1)
            cell.addWidget(plot.legend)
            grid.addLayout(cell, i // COLUMNS, i % COLUMNS)
        self.plots = [plot.widget for plot in self._plots]
        self._seen = (-1, -1)  # ring sizes at the last redraw
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.redraw)
        self._timer.start(int(1000 / min(redraw_hz, REDRAW_HZ)))

    def curve(self, ring: str, channel: str) -> pg.PlotDataItem:
        """The curve drawing `channel` of `ring` (tests read what it shows)."""
        for plot in self._plots:
            for line, curve in plot.curves.items():
                if (line.ring, line.channel) == (ring, channel):
                    return curve
        raise KeyError(f"{ring}.{channel}")

    def shown(self) -> bool:
        """On screen: visible (not a hidden dock or tab) in a window that is not minimized."""
        return self.isVisible() and not self.visibleRegion().isEmpty() and not self.window().isMinimized()

    def redraw(self) -> None:
        """Refresh every plot from the rings, when something new came in and the graphs can be seen."""
        seen = (self.stats.frames.pushed, self.stats.chunks.pushed)
        if seen == self._seen or not self.shown():
            return
        self._seen = seen
        rings, now = {"frames": self.stats.frames, "chunks": self.stats.chunks}, time.monotonic() - self.stats.t0
        for plot in self._plots:
            plot.redraw(rings, now)
        self.redraws += 1

    def set_background(self, color) -> None:
        for widget in self.plots:
            widget.setBackground(color)
