"""Playout: the engine's chunks on one clock, so each frame is shown when its audio is heard.

A chunk's audio goes to the playout clock (played on the chosen audio output, which drives the
clock), its frames to the schedule, its numbers to the stats, and the whole chunk to the outputs
that record it. A precise timer asks the schedule, every TICK_MS or right after the next frame's
first sample is heard, which frame is due: that frame goes to the preview (`frame_shown`) and to
the virtual camera at the same moment.
"""
from __future__ import annotations

import math
import time

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal

from avkit.timeline import Timeline
from studio.audio.audio_output import open_output
from studio.audio.playout_clock import PlayoutClock
from studio.engine_link.received_chunk import ReceivedChunk
from studio.frame_schedule import DueFrame, FrameSchedule
from studio.session.outputs_model import OutputsModel
from studio.session_stats import SessionStats

TICK_MS = 10  # frame presentation check at the latest; well under one frame period (40 ms)
SUMMARY_MS = 250


class PlayoutModel(QObject):
    frame_shown = Signal(object)  # DueFrame
    summary_changed = Signal(str)  # "25 fps · 1.9 s behind live · 0 drops", while a session plays
    catching_up_changed = Signal(bool)  # the clock ran dry / refilled
    played_to_end = Signal()  # the engine ended the session and its last frame has been shown
    output_changed = Signal(str)  # a new audio output; one line about it ("" when nothing to say)

    def __init__(self, outputs: OutputsModel, timeline: Timeline = Timeline(), output_device: str | None = None):
        super().__init__()
        self.outputs = outputs
        self.timeline = timeline
        self.stats = SessionStats(timeline.fps, t0=time.monotonic())  # read by the latency graphs
        self.clock: PlayoutClock | None = None  # one per engine session
        self.schedule = FrameSchedule(timeline)
        self.session_ended = False
        self._catching_up = False
        self._announced_end = False
        self.output, self.output_note = open_output(output_device)
        self.output.start()
        self._tick_timer = QTimer(self)
        self._tick_timer.setTimerType(Qt.PreciseTimer)
        self._tick_timer.timeout.connect(self.tick)
        self._tick_timer.start(TICK_MS)
        self._summary_timer = QTimer(self)
        self._summary_timer.timeout.connect(self._update_summary)
        self._summary_timer.start(SUMMARY_MS)

    @property
    def started(self) -> bool:
        """A session has opened (the summary shows its numbers from now on)."""
        return self.clock is not None

    @property
    def catching_up(self) -> bool:
        return self.clock is not None and self.clock.starving

    # -- engine session --------------------------------------------------------------------------
    def begin(self, sample_rate: int) -> None:
        """A new engine session: a fresh clock and schedule on the same audio output."""
        self.stats.new_session()
        self.clock = PlayoutClock(sample_rate)
        self.schedule = FrameSchedule(self.timeline)
        self.session_ended = self._catching_up = self._announced_end = False
        self.output.attach(self.clock)

    def detach(self) -> None:
        """The engine is gone: the output stops driving the clock (it plays silence)."""
        self.output.attach(None)

    def add_chunk(self, chunk: ReceivedChunk) -> None:
        clock = self.clock
        if clock is None:
            return
        gap = chunk.first_frame - self.schedule.end_frame
        if gap > 0:  # frames the engine dropped: keep the timeline exact with silence
            clock.push(np.zeros(gap * self.timeline.samples_per_frame, np.float32))
        clock.push(chunk.audio)
        self.schedule.add(chunk)
        self.stats.on_chunk(chunk)
        self.outputs.write(chunk.frames, chunk.audio)

    def count_engine_drops(self, values: dict) -> None:
        """The engine's metrics: frames it dropped or skipped, plus the ones the schedule lost."""
        self.stats.dropped_now = int(values.get("dropped_frames", 0)) + int(values.get("skipped_frames", 0)) \
            + self.schedule.late + self.schedule.evicted

    def end_of_session(self) -> None:
        """The engine sent everything it will send for this session."""
        self.session_ended = True
        if self.clock is not None:
            self.clock.finished = True

    def set_output_device(self, name: str | None) -> None:
        """`name`: None (default), a sound card, or "pulse:<sink>"; the clock moves to the new output."""
        old = self.output
        self.output, self.output_note = open_output(name)
        old.close()
        self.output.attach(self.clock)
        self.output.start()
        self.output_changed.emit(self.output_note)

    # -- presentation (UI thread, every TICK_MS or sooner) ---------------------------------------
    def tick(self) -> None:
        clock = self.clock
        if clock is None:
            return
        now = time.monotonic()
        position = clock.position(now)
        due: DueFrame | None = self.schedule.due(position)
        self._tick_timer.setInterval(self._next_tick_ms(position))
        if due is not None:
            self.stats.on_frame_shown(now, due.capture_t, clock.buffered_s())
            self.outputs.show(due.index, due.image)  # the virtual camera: same moment as the preview
            self.frame_shown.emit(due)
        if clock.starving != self._catching_up:
            self._catching_up = clock.starving
            self.catching_up_changed.emit(self._catching_up)
        self.stats.underruns_now = clock.underruns
        if self.session_ended and not self._announced_end and self.schedule.shown + 1 >= self.schedule.end_frame:
            self._announced_end = True
            self.played_to_end.emit()

    def _next_tick_ms(self, position: float) -> int:
        """Wake right after the next frame's first sample is heard rather than up to TICK_MS later,
        so the preview and the virtual camera do not trail the voice by the polling period."""
        boundary = (self.schedule.shown + 1) * self.timeline.samples_per_frame
        ahead_ms = 1e3 * (boundary - position) / self.timeline.sample_rate
        if ahead_ms <= 0 or self.clock is None or self.clock.starving:  # not due yet / no frame: poll
            return TICK_MS
        return max(1, min(TICK_MS, math.ceil(ahead_ms)))

    def _update_summary(self) -> None:
        if self.clock is not None:
            self.summary_changed.emit(self.stats.summary(time.monotonic(), self.catching_up))

    def close(self) -> None:
        self._tick_timer.stop()
        self._summary_timer.stop()
        self.output.close()
