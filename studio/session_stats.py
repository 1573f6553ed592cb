"""Numbers about a running session for the graphs, the one-line summary and the live status (Qt-free)."""
from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass

from avkit.timeline import FPS
from engine.protocol.stages import Stage, StageGroup, stage_group
from studio.engine_link.received_chunk import ReceivedChunk
from studio.metrics_ring import MetricsRing

FRAME_CHANNELS = ("latency_s", "target_s", "buffer_s", "fps", "skipped_s", "dropped_s")
STAGE_GROUPS = tuple(str(group) for group in StageGroup)  # the per-stage graph's lines, in legend order
CHUNK_CHANNELS = ("compute_ms", "budget_ms", "rtf", *STAGE_GROUPS)
RTF_CHUNKS = 5  # the real-time factor shown is the median over this many recent chunks
WARNING_HOLD_S = 10.0  # a skip or a slow chunk keeps the warning up this long


def stage_breakdown(timings: dict) -> dict[str, float]:
    """Engine stage timings (ms) summed into the graph's groups (engine.protocol.stages)."""
    out: dict[str, float] = {}
    for key, ms in timings.items():
        group = stage_group(key)
        if group is not None:
            out[str(group)] = out.get(str(group), 0.0) + float(ms)
    return out


def compute_ms(timings: dict) -> float:
    """The engine's time for the chunk: the session's own total when it sent one."""
    if Stage.CHUNK_TOTAL in timings:
        return float(timings[Stage.CHUNK_TOTAL])
    return sum(float(v) for v in timings.values())


@dataclass(frozen=True)
class LiveStatus:
    """What the live status row shows; NaN / "" where nothing is known (yet)."""

    latency_s: float  # capture -> presented, of the frame shown last
    target_s: float
    rtf: float  # video seconds made per compute second, recent chunks
    profile: str  # the engine's quality profile in force
    skipped_s: float  # video skipped to stay live, engine and playout, all sessions
    warning: str  # "" while the session keeps up


class SessionStats:
    """Fed by the playout model; read by the graphs (rings), the summary bar (summary()) and the live
    status row (live_status())."""

    def __init__(self, fps: int = FPS, t0: float = 0.0):
        self.fps = fps
        self.t0 = t0
        self.frames = MetricsRing(FRAME_CHANNELS, capacity=60 * fps)
        self.chunks = MetricsRing(CHUNK_CHANNELS, capacity=300)
        self._shown_times: deque[float] = deque(maxlen=4 * fps)
        self._rtfs: deque[float] = deque(maxlen=RTF_CHUNKS)
        self.latency_s = math.nan
        self.target_s = math.nan  # the live target in force (NaN: a file session keeps every frame)
        self.profile = ""  # from the engine (SessionOpened, then its metrics and events)
        self.engine_warning = ""  # the engine's own words when it said it cannot keep up
        self.dropped_before = 0  # drops of earlier engine sessions
        self.dropped_now = 0
        self.underruns_before = 0
        self.underruns_now = 0
        self.skipped_before_s = 0.0  # skips of earlier engine sessions
        self.engine_skipped_s = 0.0  # this session: audio the engine skipped to stay live
        self.playout_skipped_s = 0.0  # this session: video the playout jumped over
        self._engine_skip_t = self._playout_skip_t = self._warned_t = -math.inf  # when each last happened

    @property
    def dropped(self) -> int:
        return self.dropped_before + self.dropped_now

    @property
    def underruns(self) -> int:
        return self.underruns_before + self.underruns_now

    @property
    def skipped_s(self) -> float:
        return self.skipped_before_s + self.engine_skipped_s + self.playout_skipped_s

    @property
    def rtf(self) -> float:
        return statistics.median(self._rtfs) if self._rtfs else math.nan

    def new_session(self, target_s: float = math.nan, profile: str = "") -> None:
        self.dropped_before += self.dropped_now
        self.underruns_before += self.underruns_now
        self.skipped_before_s += self.engine_skipped_s + self.playout_skipped_s
        self.dropped_now = self.underruns_now = 0
        self.engine_skipped_s = self.playout_skipped_s = 0.0
        self.target_s, self.profile, self.engine_warning = target_s, profile, ""
        self._rtfs.clear()

    def break_lines(self, now: float) -> None:
        """A row of NaN at monotonic time `now`: the graphs leave a gap there instead of drawing a
        straight line across the time without a session (the session model calls it as the next
        session opens)."""
        if len(self.frames):
            self.frames.push(now - self.t0)
            self.chunks.push(now - self.t0)
        self._shown_times.clear()

    def output_fps(self, now: float) -> float:
        times = self._shown_times
        while times and now - times[0] > 1.0:
            times.popleft()
        return float(len(times))

    # -- fed by the playout ----------------------------------------------------------------------
    def on_frame_shown(self, now: float, capture_t: float, buffer_s: float) -> None:
        self._shown_times.append(now)
        self.latency_s = now - capture_t
        self.frames.push(now - self.t0, latency_s=self.latency_s, target_s=self.target_s,
                         fps=self.output_fps(now), buffer_s=buffer_s, skipped_s=self.skipped_s,
                         dropped_s=self.dropped / self.fps)

    def on_chunk(self, chunk: ReceivedChunk) -> None:
        groups = stage_breakdown(chunk.timings)
        transport_ms = (chunk.received_t - chunk.sent_t) * 1e3
        if 0.0 <= transport_ms < 10_000:  # clocks agree only when the engine runs on this host
            groups["transport"] = transport_ms
        spent_ms, budget_ms = compute_ms(chunk.timings), len(chunk.frames) * 1000.0 / self.fps
        rtf = budget_ms / spent_ms if spent_ms > 0 else math.nan
        if math.isfinite(rtf):
            self._rtfs.append(rtf)
        self.chunks.push(chunk.received_t - self.t0, compute_ms=spent_ms, budget_ms=budget_ms, rtf=rtf,
                         **{name: groups[name] for name in groups})

    def on_playout_skip(self, now: float) -> None:
        """The playout jumped to live (the seconds it skipped are counted as its frames go by)."""
        self._playout_skip_t = now

    # -- fed by the engine's metrics and events --------------------------------------------------
    def on_engine_values(self, now: float, values: dict) -> None:
        """The engine's metrics; keys an engine does not send are left as they are."""
        skipped = values.get("skipped_s")
        if skipped is None and "skipped_frames" in values:
            skipped = int(values["skipped_frames"]) / self.fps
        if skipped is not None and float(skipped) > self.engine_skipped_s:
            self.engine_skipped_s = float(skipped)
            self._engine_skip_t = now
        if values.get("profile"):
            self.profile = str(values["profile"])

    def on_engine_warning(self, now: float, message: str) -> None:
        self.engine_warning = message
        self._warned_t = now

    # -- read by the widgets ---------------------------------------------------------------------
    def summary(self, now: float, catching_up: bool) -> str:
        fps = self.output_fps(now)
        parts = [f"{fps:.0f} fps"]
        if not math.isnan(self.latency_s):
            parts.append(f"{self.latency_s:.1f} s behind live")
        parts.append(f"{self.dropped} drop" + ("" if self.dropped == 1 else "s"))
        if self.skipped_s > 0:
            parts.append(f"skipped {self.skipped_s:.1f} s")
        if catching_up:
            parts.append(f"catching up ({self.underruns} underrun" + ("" if self.underruns == 1 else "s") + ")")
        elif self.underruns:
            parts.append(f"{self.underruns} underruns")
        return " · ".join(parts)

    def live_status(self, now: float) -> LiveStatus:
        return LiveStatus(self.latency_s, self.target_s, self.rtf, self.profile, self.skipped_s,
                          self.warning(now))

    def warning(self, now: float) -> str:
        """One persistent line while the session cannot keep up: while the recent chunks are slower
        than real time, and for WARNING_HOLD_S after a skip or the engine's own warning; "" otherwise."""
        def recent(t: float) -> bool:
            return now - t <= WARNING_HOLD_S

        rtf, at = self.rtf, f" at {self.profile}" if self.profile else ""
        if rtf < 1.0:
            return (f"The engine cannot keep up: it makes {rtf:.2f} s of video per second{at}; live lag is "
                    f"skipped ({self.skipped_s:.1f} s so far). Choose Keep up (auto), a lower resolution or "
                    f"fewer steps, or a faster engine.")
        if self.engine_warning and (recent(self._warned_t) or math.isnan(rtf)):
            return f"The engine cannot keep up: {self.engine_warning}"
        if recent(self._engine_skip_t):
            return (f"The engine fell behind live audio and skipped {self.engine_skipped_s:.1f} s "
                    f"(is this computer busy?).")
        if recent(self._playout_skip_t):
            return (f"Playback stalled and skipped {self.playout_skipped_s:.1f} s to stay live "
                    f"(is this computer busy?).")
        return ""
