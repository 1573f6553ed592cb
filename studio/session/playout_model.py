"""Playout: the engine's chunks on one clock, so each frame is shown when its audio is heard.

A chunk's audio goes to the playout clock (played on the chosen audio output, which drives the
clock), its frames to the schedule, its numbers to the stats, and the whole chunk to the outputs
that record it. A precise timer asks the schedule, every TICK_MS or right after the next frame's
first sample is heard, which frame is due: that frame goes to the preview (`frame_shown`) and to
the virtual camera at the same moment.

A live session keeps the studio's half of the latency contract (studio.live_latency): when what
is heard runs more than its margin past the target, the clock and the schedule jump together to the
same frame boundary, and the skip is counted and announced (`skipped`). A file session (no
`latency`) keeps every frame.
"""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal

from avkit.timeline import Timeline
from studio.audio.audio_output import open_output
from studio.audio.playout_clock import PlayoutClock
from studio.engine_link.received_chunk import ReceivedChunk
from studio.frame_schedule import DueFrame, FrameSchedule
from studio.latency_log import LatencyLog
from studio.live_latency import RECOVER_S, LiveLatency, usual_lag_s
from studio.session.outputs_model import OutputsModel
from studio.session_stats import SessionStats

TICK_MS = 10  # frame presentation check at the latest; well under one frame period (40 ms)
SUMMARY_MS = 250  # the summary line and the live status row
LOG_SECOND_MS = 1000
LAG_WINDOW_S = 10.0  # the engine's usual lag is judged over the chunks of speech received this long


class PlayoutModel(QObject):
    frame_shown = Signal(object)  # DueFrame
    summary_changed = Signal(str)  # "25 fps · 1.9 s behind live · 0 drops", while a session plays
    catching_up_changed = Signal(bool)  # the clock ran dry / refilled
    played_to_end = Signal()  # the engine ended the session and its last frame has been shown
    output_changed = Signal(str)  # a new audio output; one line about it ("" when nothing to say)
    skipped = Signal(float, float)  # a skip to live: seconds of video skipped now, in all
    live_changed = Signal(object)  # LiveStatus, every SUMMARY_MS while a session plays

    def __init__(self, outputs: OutputsModel, timeline: Timeline = Timeline(), output_device: str | None = None):
        super().__init__()
        self.outputs = outputs
        self.timeline = timeline
        self.stats = SessionStats(timeline.fps, t0=time.monotonic())  # read by the latency graphs
        self.clock: PlayoutClock | None = None  # one per engine session
        self.schedule = FrameSchedule(timeline)
        self.latency: LiveLatency | None = None  # the live contract of the session; None: keep every frame
        self._recover_until = -math.inf  # the clock ran dry: chase live closely until then
        self._lags: deque[tuple[float, float]] = deque()  # (arrival, lag) of recent chunks of speech
        self._usual_lag_s = 0.0  # of those (live_latency.usual_lag_s)
        self.ui_stall_ms: Callable[[], float] | None = None  # the UI thread's longest stall since last asked
        self.log: LatencyLog | None = None  # --metrics-json: every frame's latency, a row per second
        self.log_pace = ""  # non-empty: keep a log from the first session on ("file" or "realtime")
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
        self._log_timer = QTimer(self)
        self._log_timer.timeout.connect(self._log_second)

    @property
    def started(self) -> bool:
        """A session has opened (the summary shows its numbers from now on)."""
        return self.clock is not None

    @property
    def catching_up(self) -> bool:
        """The clock ran dry, or waits for the audio a skip to live lands on."""
        return self.clock is not None and (self.clock.starving or self.clock.skip_pending)

    # -- engine session --------------------------------------------------------------------------
    def begin(self, sample_rate: int, latency: LiveLatency | None = None, facts: dict | None = None) -> None:
        """A new engine session: a fresh clock and schedule on the same audio output. `latency`: the
        live session's contract (None: a file session, every frame kept); `facts`: the engine's
        (live_latency.engine_facts)."""
        facts = facts or {}
        self.latency = latency
        self._lags.clear()
        self._usual_lag_s = 0.0
        self.stats.new_session(latency.target_s if latency else math.nan, facts.get("profile", ""))
        if self.log_pace and self.log is None:
            self.log = LatencyLog(time.monotonic(), time.thread_time(), self.log_pace)
            self._log_timer.start(LOG_SECOND_MS)
        if self.log is not None:
            contract = {"target_latency_s": latency.target_s, "skip_over_s": latency.skip_over_s} if latency else {}
            self.log.on_session({"live": latency is not None, **contract, **facts})
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
        if not chunk.idle:
            self._note_lag(chunk)
        self.stats.on_chunk(chunk)
        self.outputs.write(chunk.frames, chunk.audio)

    def on_engine_metrics(self, values: dict) -> None:
        """The engine's metrics: frames it dropped (plus the ones the schedule lost), audio it skipped,
        its quality profile."""
        self.stats.dropped_now = int(values.get("dropped_frames", 0)) + self.schedule.late + self.schedule.evicted
        self.stats.on_engine_values(time.monotonic(), values)

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
        if self.latency is not None and not clock.skip_pending:
            self._skip_to_live(clock, now, position)
        due: DueFrame | None = self.schedule.due(position)
        self._tick_timer.setInterval(self._next_tick_ms(position))
        if due is not None:
            self.stats.on_frame_shown(now, due.capture_t, clock.buffered_s())
            if self.log is not None:
                self.log.on_frame(now, self.stats.latency_s, due.idle)
            self.outputs.show(due.index, due.image)  # the virtual camera: same moment as the preview
            self.frame_shown.emit(due)
        if self.catching_up != self._catching_up:
            self._catching_up = self.catching_up
            self.catching_up_changed.emit(self._catching_up)
        self.stats.underruns_now = clock.underruns
        self.stats.playout_skipped_s = self.schedule.skipped / self.timeline.fps
        if self.session_ended and not self._announced_end and self.schedule.shown + 1 >= self.schedule.end_frame:
            self._announced_end = True
            self.played_to_end.emit()

    def _skip_to_live(self, clock: PlayoutClock, now: float, position: float) -> None:
        """Jump clock and schedule to live when the sample heard now is too late (studio.live_latency).
        The schedule jumps at once (nothing before the boundary is shown any more), the clock at
        its next audio block."""
        spf, rate = self.timeline.samples_per_frame, self.timeline.sample_rate
        if clock.starving:
            self._recover_until = now + RECOVER_S
        k = int(position // spf)
        capture_t = self.schedule.capture_time(k)
        if capture_t is None:
            return
        latency_s = now - capture_t - (position - k * spf) / rate
        frame = self.latency.skip_frame(latency_s, position, self._usual_lag_s, now < self._recover_until)
        if frame is None:
            return
        self.schedule.skip_to(frame)
        clock.request_skip(frame * spf, frame * spf + int(self.latency.keep_s * rate))
        self.stats.on_playout_skip(now)
        self.skipped.emit((frame * spf - position) / rate, self.stats.skipped_s)

    def _note_lag(self, chunk: ReceivedChunk) -> None:
        """How long after its last sample was captured a chunk of speech arrived (studio clock)."""
        lag = chunk.received_t - chunk.capture_t0 - len(chunk.frames) / self.timeline.fps
        self._lags.append((chunk.received_t, lag))
        while self._lags and self._lags[0][0] < chunk.received_t - LAG_WINDOW_S:
            self._lags.popleft()
        self._usual_lag_s = usual_lag_s([lag for _, lag in self._lags])

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
            now = time.monotonic()
            self.summary_changed.emit(self.stats.summary(now, self.catching_up))
            self.live_changed.emit(self.stats.live_status(now))

    # -- measuring (--metrics-json) --------------------------------------------------------------
    def _log_second(self) -> None:
        stall_ms = self.ui_stall_ms() if self.ui_stall_ms is not None else math.nan
        self.log.on_second(time.monotonic(), self.stats, time.thread_time(), stall_ms)

    def log_report(self) -> dict:
        counts = {"late_frames": self.schedule.late, "playout_skips": self.clock.skips if self.clock else 0}
        return self.log.report(time.monotonic(), self.stats, time.thread_time(), counts)

    def close(self) -> None:
        self._tick_timer.stop()
        self._summary_timer.stop()
        self._log_timer.stop()
        self.output.close()
