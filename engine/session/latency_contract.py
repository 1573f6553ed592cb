"""The latency contract of a live session: one target, and the skip rule that holds the engine to it.

The target live latency runs from the capture of a block of audio to the moment its frame and
voice are presented (default: one chunk's audio + TARGET_LATENCY_MARGIN_S). The engine's part of
it: a chunk's first frame leaves the engine `age + chunk time` after its first sample was heard,
where `age` is how long that sample has been waiting when the chunk starts (at least one chunk's
audio: the chunk must be complete). Before each live chunk the engine therefore checks the age;
when it is more than the target allows, it jumps to the newest whole chunk, on a frame boundary,
and counts the audio it skipped. Live latency then stays within

    max(target, chunk audio + SKIP_SLACK_S + chunk time) + (chunk time - expected chunk time)

however long the session runs, instead of growing until memory runs out.

Ages are in the engine's clock (client clocks may be another machine's): a sample is taken as
heard when its block arrived, less the block's audio after it (AudioRing.heard_time).
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.protocol.messages import TARGET_LATENCY_MARGIN_S, SessionSettings

SKIP_SLACK_S = 0.25  # audio may wait this long beyond one chunk before it is skipped: a few blocks of jitter


@dataclass(frozen=True)
class LatencyContract:
    chunk_audio_s: float
    target_latency_s: float

    @classmethod
    def for_session(cls, settings: SessionSettings, chunk_audio_s: float) -> LatencyContract:
        """ValueError (one line) for a target no engine can meet: below one chunk of audio."""
        target = settings.target_latency_s
        if target is None:
            target = chunk_audio_s + TARGET_LATENCY_MARGIN_S
        elif target < chunk_audio_s - 1e-9:
            raise ValueError(f"target latency {target:g} s is below one chunk of audio ({chunk_audio_s:.2f} s "
                             f"in this session): ask for {chunk_audio_s:.2f} s or more, or for fewer chunk_frames")
        return cls(chunk_audio_s, float(target))

    def allowed_age_s(self, expected_chunk_s: float) -> float:
        """How long a chunk's first sample may have waited when the chunk starts."""
        return max(self.target_latency_s - expected_chunk_s, self.chunk_audio_s + SKIP_SLACK_S)

    def chunk_start(self, next_frame: int, newest_start: int, age_s: float, expected_chunk_s: float) -> int:
        """First frame of the next live chunk: `next_frame`, or `newest_start` (the first frame of the
        newest whole chunk received) when the audio at `next_frame` has waited too long."""
        if newest_start > next_frame and age_s > self.allowed_age_s(expected_chunk_s):
            return newest_start
        return next_frame
