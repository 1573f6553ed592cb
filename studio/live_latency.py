"""The studio's half of the live latency contract: when the playout skips ahead to live, and how far.

One number, the target live latency, runs from the capture of a block of audio to the moment its
frame and voice are presented (ARCHITECTURE.md, "Data flow of one live session", point 7). The
engine keeps its own part (it skips audio it cannot make in time); the playout adds its jitter
margin and whatever a stall left queued.

Where live is: a chunk reaches the studio some `lag` after its last sample was captured (the
engine's compute and the transport; the smallest lag of the recent chunks is the usual one), and a
playout at live plays it with `keep_s` queued ahead, the start margin plus one chunk, the least
that bridges one chunk to the next without running dry. So at live, latency is `lag + keep_s`.

When what is heard now is more than SKIP_OVER_S past the target, the playout jumps by the
difference, to a frame boundary. The audio there may not have come yet: after a stall the chunks
the engine owes arrive as a burst, each less late than the last. The clock then waits in silence
(the preview holds its frame) until the chunk to land on and `keep_s` after it are in, and jumps
once, instead of playing the burst's stale audio and skipping again and again. Where it lands is
live as of the moment it asked, so a long wait lands it a little late: for RECOVER_S after the
playout ran dry it skips whenever it is MIN_SKIP_S or more behind live, not only past the target.
A jump shorter than MIN_SKIP_S is never made: so little is the engine's jitter, not a queue, and
skipping it would only make the voice stutter.

Qt-free: the playout model asks `skip_frame()` on every presentation tick.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from avkit.timeline import Timeline
from studio.audio.playout_clock import START_MARGIN_S
from studio.engine_link.options import TARGET_LATENCY_MARGIN_S

SKIP_OVER_S = 0.25  # the playout may run this far past the target before it skips
MIN_SKIP_S = 0.12  # shorter jumps are not made (three frames)
RECOVER_S = 2.0  # after the playout ran dry: skip whenever MIN_SKIP_S behind live, not only past the target
LAG_QUANTILE = 0.2  # the engine's usual lag: this quantile of the recent chunks' (one early outlier does not count)


def usual_lag_s(lags: list[float]) -> float:
    """The lag of a chunk that did not wait: a low quantile of the recent ones (0 before any)."""
    if not lags:
        return 0.0
    ordered = sorted(lags)
    return ordered[int(LAG_QUANTILE * (len(ordered) - 1))]


def default_target_s(chunk_frames: int, timeline: Timeline = Timeline()) -> float:
    """One chunk's audio + TARGET_LATENCY_MARGIN_S, as the engine computes it."""
    return chunk_frames / timeline.fps + TARGET_LATENCY_MARGIN_S


def engine_facts(opened) -> dict:
    """What the engine said of its side of the contract when the session opened (SessionOpened):
    quality, profile, its ladder, predicted real-time factor; "" / 0.0 / [] where an engine from
    before the contract says nothing."""
    return {"quality": str(getattr(opened, "quality", "") or ""), "profile": str(getattr(opened, "profile", "") or ""),
            "profiles": [str(p) for p in getattr(opened, "profiles", None) or []],
            "predicted_rtf": float(getattr(opened, "predicted_rtf", 0.0) or 0.0)}


@dataclass(frozen=True)
class LiveLatency:
    """A live session's target (seconds, capture -> presented) and chunk length (frames)."""

    target_s: float
    chunk_frames: int
    timeline: Timeline = Timeline()

    @classmethod
    def for_session(cls, opened, asked_s: float | None, timeline: Timeline = Timeline()) -> LiveLatency:
        """The target in force for an opened session (SessionOpened): the engine's when it reports
        one, else the one asked for, else the default for its chunk length."""
        chunk_frames = max(1, int(opened.chunk_frames))
        engine_s = float(getattr(opened, "target_latency_s", 0.0) or 0.0)  # 0: an engine without the contract
        return cls(engine_s or asked_s or default_target_s(chunk_frames, timeline), chunk_frames, timeline)

    @property
    def skip_over_s(self) -> float:
        """Latency beyond which the playout skips."""
        return self.target_s + SKIP_OVER_S

    @property
    def keep_s(self) -> float:
        """Audio left queued after a skip: the start margin plus one chunk (the next one is on its way)."""
        return START_MARGIN_S + self.chunk_frames / self.timeline.fps

    def live_s(self, lag_s: float) -> float:
        """The latency of a playout at live: a chunk's audio reaches the studio `lag_s` after its last
        sample was captured and plays with `keep_s` queued ahead of it."""
        return lag_s + self.keep_s

    def skip_frame(self, latency_s: float, position: float, lag_s: float, recovering: bool = False) -> int | None:
        """The frame to jump to, or None to play on.

        latency_s: capture -> presented of the sample heard now, `position` (clock); lag_s: the
        engine's usual lag (module doc); recovering: within RECOVER_S of the playout running dry.
        The frame may not have been received yet: the playout then waits for it."""
        if not recovering and latency_s <= self.skip_over_s:
            return None
        drop_s = latency_s - self.live_s(lag_s)
        if drop_s < MIN_SKIP_S:
            return None
        spf = self.timeline.samples_per_frame
        frame = math.floor((position + drop_s * self.timeline.sample_rate) / spf)
        return frame if frame * spf > position else None
