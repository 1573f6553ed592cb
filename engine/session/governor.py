"""The real-time governor: which quality profile a live session runs at, from measured chunk times.

Pure logic, no engine and no clock: the session tells it what a chunk cost at each profile it
measured, and what every chunk costs while running; it answers which profile to measure next (at
session open), which one to start with, and when to step down or back up.

- Start: the best profile predicted at `keep_up_rtf` times real time or faster; the fastest one
  when none is (the session then says that live lag will be skipped).
- Measuring: the ladder is ordered from the most to the least work, so a bisection finds the
  start with a few measurements: the top, the bottom, then midpoints between the best known
  failing and the worst known passing profile (one measurement may teach several profiles: a
  diffusion backend's chunk at one size tells every step count at that size).
- Down: the measured factor (median of the recent chunks) falls below `step_down_rtf` -> the best
  lower profile predicted to keep up under today's load, at least one step.
- Up: the next better profile is predicted at `step_up_rtf` or more under today's load, and
  enough chunks have passed since the last step down; that wait doubles each time a step up had
  to be undone, so a wrong prediction cannot make the session oscillate.
"Today's load" scales every prediction by measured / predicted at the current profile.
"""
from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from avkit.timeline import Timeline
from engine.backends.base import StreamPlan
from engine.protocol.messages import QUALITY_AUTO, QUALITY_FIXED, SessionSettings


@dataclass(frozen=True)
class GovernorBounds:
    keep_up_rtf: float = 1.1  # a profile keeps up when predicted at least this fast
    step_down_rtf: float = 1.0  # measured below this (real time): step down
    step_up_rtf: float = 1.3  # the better profile predicted at least this fast: step up
    window: int = 3  # recent chunks whose median chunk time is "the measured" one
    min_samples: int = 2  # chunks at a profile before it is judged
    up_wait_chunks: int = 8  # chunks after a step down before a step up (doubles after each undone up)


@dataclass(frozen=True)
class Switch:
    """A decision to change profile, with the numbers behind it (reported to the client)."""

    profile: str
    previous: str
    direction: str  # "down" | "up"
    measured_rtf: float  # at `previous`, over the recent chunks
    predicted_rtf: float  # at `profile`, under today's load (0.0: not known)


@dataclass(frozen=True)
class QualityChoice:
    """What a session's settings ask for: the governor decides (auto) or one profile is fixed."""

    auto: bool
    fixed: str | None  # the fixed profile's name when not auto
    wire_name: str  # QUALITY_AUTO or QUALITY_FIXED, as SessionOpened reports it


def resolve_quality(settings: SessionSettings, plan: StreamPlan) -> QualityChoice:
    """Live sessions default to auto, file sessions to fixed; auto in a file session is the top
    profile (a file keeps every frame, so there is nothing to keep up with). ValueError: one line."""
    names = [p.name for p in plan.profiles]
    live = settings.mode == "live"
    asked = settings.quality or (QUALITY_AUTO if live else QUALITY_FIXED)
    if asked not in (QUALITY_AUTO, QUALITY_FIXED) and asked not in names:
        raise ValueError(f"unknown quality {asked!r}: use {QUALITY_AUTO!r}, {QUALITY_FIXED!r} or one of this "
                         f"session's profiles: {', '.join(names)}")
    if asked == QUALITY_AUTO and live:
        return QualityChoice(True, None, QUALITY_AUTO)
    return QualityChoice(False, names[0] if asked in (QUALITY_AUTO, QUALITY_FIXED) else asked, QUALITY_FIXED)


def chunk_audio_seconds(plan: StreamPlan, timeline: Timeline) -> float:
    return plan.chunk_frames / timeline.fps


class Governor:
    def __init__(self, ladder: Sequence[str], chunk_audio_s: float, fixed: str | None = None,
                 bounds: GovernorBounds = GovernorBounds()):
        if not ladder:
            raise ValueError("a governor needs at least one profile")
        self.ladder = list(ladder)
        self.chunk_audio_s = chunk_audio_s
        self.bounds = bounds
        self.auto = fixed is None
        self._index = {name: i for i, name in enumerate(self.ladder)}
        self._fixed = None if fixed is None else self._index[fixed]
        self._predicted: dict[int, float] = {}  # profile index -> seconds per chunk
        self._current: int | None = None
        self._recent: deque[float] = deque(maxlen=bounds.window)
        self._since_down = math.inf  # chunks since the last step down
        self._up_wait = bounds.up_wait_chunks
        self._last_move = ""

    # -- what is known ---------------------------------------------------------------------------
    def learn(self, seconds: Mapping[str, float]) -> None:
        """Chunk times measured for some profiles (names outside the ladder are ignored)."""
        for name, value in seconds.items():
            if name in self._index and value > 0:
                self._predicted[self._index[name]] = float(value)

    def known(self, name: str) -> bool:
        return self._index[name] in self._predicted

    def _keeps_up(self, i: int) -> bool:
        return self.chunk_audio_s / self._predicted[i] >= self.bounds.keep_up_rtf

    def _estimate(self, i: int) -> float | None:
        """A profile's chunk seconds: measured, or interpolated (geometrically) between the nearest
        measured profiles on both sides; None when one side has none."""
        if i in self._predicted:
            return self._predicted[i]
        above = [j for j in self._predicted if j < i]
        below = [j for j in self._predicted if j > i]
        if not above or not below:
            return None
        a, b = max(above), min(below)
        w = (i - a) / (b - a)
        return math.exp((1 - w) * math.log(self._predicted[a]) + w * math.log(self._predicted[b]))

    # -- session open ----------------------------------------------------------------------------
    def next_to_measure(self) -> str | None:
        """The profile to measure next to choose the start, or None when the choice is made."""
        if not self.auto:
            return None if self._fixed in self._predicted else self.ladder[self._fixed]
        top, bottom = 0, len(self.ladder) - 1
        if top not in self._predicted:
            return self.ladder[top]
        failing = [i for i in self._predicted if not self._keeps_up(i)]
        if not failing:
            return None  # the top keeps up
        fail_hi = max(failing)
        passing = [i for i in self._predicted if i > fail_hi]
        if not passing:
            return None if bottom in self._predicted else self.ladder[bottom]
        good_lo = min(passing)
        if good_lo == fail_hi + 1:
            return None
        return self.ladder[(fail_hi + good_lo) // 2]  # unmeasured: fail_hi and good_lo are the nearest known

    def start(self) -> str:
        """The profile to start with (call once measuring is done)."""
        if not self.auto:
            self._current = self._fixed
        elif not self._predicted:
            self._current = 0
        else:
            failing = [i for i in self._predicted if not self._keeps_up(i)]
            passing = [i for i in self._predicted if not failing or i > max(failing)]
            self._current = min(passing) if passing else len(self.ladder) - 1
        return self.ladder[self._current]

    # -- running ---------------------------------------------------------------------------------
    @property
    def profile(self) -> str:
        assert self._current is not None, "start() first"
        return self.ladder[self._current]

    def predicted_rtf(self, name: str | None = None) -> float:
        """Video seconds per compute second predicted for a profile (the current one); 0.0: unknown."""
        i = self._current if name is None else self._index[name]
        seconds = self._predicted.get(i)
        return self.chunk_audio_s / seconds if seconds else 0.0

    @property
    def measured_rtf(self) -> float:
        """Over the recent chunks at the current profile; 0.0 before the first one."""
        return self.chunk_audio_s / statistics.median(self._recent) if self._recent else 0.0

    @property
    def rtf(self) -> float:
        """Measured when there is a measurement, else predicted (0.0 when neither)."""
        return self.measured_rtf or self.predicted_rtf()

    def expected_chunk_s(self) -> float:
        """What the next chunk should take: the recent median, else the prediction, else 0."""
        if self._recent:
            return statistics.median(self._recent)
        return self._predicted.get(self._current, 0.0)

    def observe(self, seconds: float) -> Switch | None:
        """A chunk at the current profile took `seconds`; a Switch when the profile should change."""
        self._recent.append(seconds)
        self._since_down += 1
        if not self.auto or len(self._recent) < self.bounds.min_samples:
            return None
        cur, last = self._current, len(self.ladder) - 1
        median = statistics.median(self._recent)
        if cur not in self._predicted:  # reached without a measurement: what it costs now is its measure
            self._predicted[cur] = median
        load = median / self._predicted[cur]
        measured = self.chunk_audio_s / median
        if measured < self.bounds.step_down_rtf and cur < last:
            return self._move(self._down_target(load), "down", measured, load)
        if cur > 0 and self._since_down >= self._up_wait:
            better = self._estimate(cur - 1)
            if better is not None and self.chunk_audio_s / (better * load) >= self.bounds.step_up_rtf:
                return self._move(cur - 1, "up", measured, load)
        return None

    def _down_target(self, load: float) -> int:
        """The best lower profile predicted to keep up under `load`; an unknown one is tried one at a
        time; the lowest when none keeps up."""
        for i in range(self._current + 1, len(self.ladder)):
            est = self._estimate(i)
            if est is None or self.chunk_audio_s / (est * load) >= self.bounds.keep_up_rtf:
                return i
        return len(self.ladder) - 1

    def _move(self, target: int, direction: str, measured: float, load: float) -> Switch:
        previous = self.ladder[self._current]
        if direction == "down":
            if self._last_move == "up":  # the last step up did not hold: wait longer next time
                self._up_wait *= 2
            self._since_down = 0
        self._last_move = direction
        self._current = target
        self._recent.clear()
        est = self._estimate(target)
        return Switch(self.ladder[target], previous, direction, measured,
                      self.chunk_audio_s / (est * load) if est else 0.0)
