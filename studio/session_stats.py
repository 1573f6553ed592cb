"""Numbers about a running session for the graphs and the one-line summary (Qt-free)."""
from __future__ import annotations

import math
from collections import deque

from avkit.timeline import FPS
from engine.protocol.stages import Stage, StageGroup, stage_group
from studio.engine_link.received_chunk import ReceivedChunk
from studio.metrics_ring import MetricsRing

FRAME_CHANNELS = ("latency_s", "fps", "buffer_s", "dropped")
STAGE_GROUPS = tuple(str(group) for group in StageGroup)  # the per-stage graph's lines, in legend order
CHUNK_CHANNELS = ("compute_ms", "budget_ms", *STAGE_GROUPS)


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


class SessionStats:
    """Fed by the session model; read by the graphs (rings) and the summary bar (summary())."""

    def __init__(self, fps: int = FPS, t0: float = 0.0):
        self.fps = fps
        self.t0 = t0
        self.frames = MetricsRing(FRAME_CHANNELS, capacity=60 * fps)
        self.chunks = MetricsRing(CHUNK_CHANNELS, capacity=300)
        self._shown_times: deque[float] = deque(maxlen=4 * fps)
        self.latency_s = math.nan
        self.dropped_before = 0  # drops of earlier engine sessions
        self.dropped_now = 0
        self.underruns_before = 0
        self.underruns_now = 0

    @property
    def dropped(self) -> int:
        return self.dropped_before + self.dropped_now

    @property
    def underruns(self) -> int:
        return self.underruns_before + self.underruns_now

    def new_session(self) -> None:
        self.dropped_before += self.dropped_now
        self.underruns_before += self.underruns_now
        self.dropped_now = self.underruns_now = 0

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

    def on_frame_shown(self, now: float, capture_t: float, buffer_s: float) -> None:
        self._shown_times.append(now)
        self.latency_s = now - capture_t
        self.frames.push(now - self.t0, latency_s=self.latency_s, fps=self.output_fps(now),
                         buffer_s=buffer_s, dropped=self.dropped)

    def on_chunk(self, chunk: ReceivedChunk) -> None:
        groups = stage_breakdown(chunk.timings)
        transport_ms = (chunk.received_t - chunk.sent_t) * 1e3
        if 0.0 <= transport_ms < 10_000:  # clocks agree only when the engine runs on this host
            groups["transport"] = transport_ms
        self.chunks.push(chunk.received_t - self.t0, compute_ms=compute_ms(chunk.timings),
                         budget_ms=len(chunk.frames) * 1000.0 / self.fps,
                         **{name: groups[name] for name in groups})

    def summary(self, now: float, catching_up: bool) -> str:
        fps = self.output_fps(now)
        parts = [f"{fps:.0f} fps"]
        if not math.isnan(self.latency_s):
            parts.append(f"{self.latency_s:.1f} s behind live")
        parts.append(f"{self.dropped} drop" + ("" if self.dropped == 1 else "s"))
        if catching_up:
            parts.append(f"catching up ({self.underruns} underrun" + ("" if self.underruns == 1 else "s") + ")")
        elif self.underruns:
            parts.append(f"{self.underruns} underruns")
        return " · ".join(parts)
