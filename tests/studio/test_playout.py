"""The playout clock, sample ring, frame schedule and stats: the timing core, without Qt or sound."""
from __future__ import annotations

import math

import numpy as np

from studio.audio.playout_clock import PlayoutClock
from studio.audio.sample_ring import SampleRing
from studio.engine_link.received_chunk import ReceivedChunk
from studio.frame_schedule import FrameSchedule
from studio.metrics_ring import MetricsRing
from studio.session_stats import SessionStats, stage_breakdown


def test_sample_ring_wraps_and_never_overfills():
    ring = SampleRing(10)
    assert ring.write(np.arange(7, dtype=np.float32)) == 7
    out = np.zeros(5, np.float32)
    assert ring.read_into(out) == 5 and out.tolist() == [0, 1, 2, 3, 4]
    assert ring.write(np.arange(100, 112, dtype=np.float32)) == 8  # only the free space
    out = np.zeros(20, np.float32)
    assert ring.read_into(out) == 10
    assert out[:10].tolist() == [5, 6, *range(100, 108)]
    assert ring.available() == 0


def test_clock_waits_for_margin_then_follows_what_was_played():
    clock = PlayoutClock(start_margin_s=0.1)
    clock.push(np.ones(16000, np.float32))
    t0 = clock._start_at
    block = np.zeros(320, np.float32)
    clock.fill(block, t0 - 0.05)
    assert clock.played == 0 and not block.any()  # still inside the jitter margin
    clock.fill(block, t0)
    assert clock.played == 320 and block.all()
    assert math.isclose(clock.position(t0 + 0.01), 160)  # 10 ms into the block just handed out
    clock.output_latency_s = 0.005
    assert math.isclose(clock.position(t0 + 0.01), 80)  # the listener hears it 5 ms later


def test_underrun_counts_once_sets_catching_up_and_holds_the_clock():
    clock = PlayoutClock(start_margin_s=0.0)
    clock.push(np.ones(480, np.float32))
    block = np.zeros(320, np.float32)
    t = clock._start_at
    clock.fill(block, t)
    clock.fill(block, t + 0.02)  # only 160 left: the rest is silence
    assert clock.played == 480 and clock.underruns == 1 and clock.starving
    assert not block[160:].any()
    clock.fill(block, t + 0.04)
    clock.fill(block, t + 0.06)
    assert clock.underruns == 1 and clock.position(t + 10) == 480  # frozen at what was heard
    clock.push(np.ones(640, np.float32))
    clock.fill(block, t + 0.08)
    assert not clock.starving and clock.played == 800


def test_no_underrun_after_the_engine_finished():
    clock = PlayoutClock(start_margin_s=0.0)
    clock.push(np.ones(100, np.float32))
    clock.finished = True
    clock.fill(np.zeros(320, np.float32), clock._start_at)
    assert clock.underruns == 0 and not clock.starving


def _chunk(first: int, n: int, t0: float = 100.0) -> ReceivedChunk:
    frames = np.arange(first, first + n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    return ReceivedChunk(first, frames, np.zeros(n * 640, np.float32), t0, False, {}, 0.0, 0.0)


def test_schedule_shows_each_frame_at_its_sample_and_counts_skips():
    sched = FrameSchedule()
    sched.add(_chunk(0, 4))
    sched.add(_chunk(4, 4, t0=100.16))
    assert sched.due(0).index == 0
    assert sched.due(639) is None  # still frame 0
    due = sched.due(640)
    assert due.index == 1 and due.image[0, 0, 0] == 1 and math.isclose(due.capture_t, 100.04)
    due = sched.due(640 * 5 + 1)
    assert due.index == 5 and due.image[0, 0, 0] == 5 and sched.late == 3
    assert sched.waiting() == 2
    due = sched.due(640 * 8)  # all audio heard (a late tick): the last frame is still shown, the one before late
    assert due.index == 7 and sched.late == 4 and sched.shown + 1 == sched.end_frame
    assert sched.due(640 * 8) is None  # nothing received for frame 8 yet


def test_metrics_ring_keeps_the_newest_rows_in_order():
    ring = MetricsRing(("a", "b"), capacity=4)
    for i in range(6):
        ring.push(float(i), a=i * 10.0)
    t, a = ring.series("a")
    assert t.tolist() == [2, 3, 4, 5] and a.tolist() == [20, 30, 40, 50]
    assert np.isnan(ring.series("b")[1]).all()


def test_stage_groups_and_summary_line():
    groups = stage_breakdown({"audio_features": 3, "dit_step_0": 10, "dit_step_3": 12, "vae_decode": 5,
                              "vae_encode": 1, "color_correction": 2, "host_copy": 1, "warp": 7,
                              "mouth_interior": 1, "chunk_total": 40, "text_encoder": 50})
    assert groups == {"audio features": 3, "denoise": 22, "VAE": 6, "post": 3, "render": 8}
    stats = SessionStats(t0=0.0)
    for i in range(25):
        stats.on_frame_shown(10.0 + i * 0.04, capture_t=8.1 + i * 0.04, buffer_s=0.5)
    assert stats.summary(10.97, catching_up=False) == "25 fps · 1.9 s behind live · 0 drops"
    stats.underruns_now = 2
    assert "catching up (2 underruns)" in stats.summary(10.97, catching_up=True)
