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


# -- skipping to live (studio.live_latency, the clock and the schedule together) --------------------

def test_clock_jump_fades_out_drops_and_fades_in_on_the_boundary():
    clock = PlayoutClock(start_margin_s=0.0)
    clock.push(np.arange(16000, dtype=np.float32))
    block = np.zeros(320, np.float32)
    t = clock._start_at
    clock.fill(block, t)
    clock.request_skip(6400)
    assert clock.skip_pending
    clock.fill(block, t + 0.02)
    fade = len(clock._fade_out)  # 4 ms at 16 kHz
    assert fade == 64
    assert np.allclose(block[:fade], np.arange(320, 320 + fade) * clock._fade_out)  # what came next, fading out
    assert np.allclose(block[fade:2 * fade], np.arange(6400, 6400 + fade) * clock._fade_in)  # the new audio fading in
    assert np.array_equal(block[2 * fade:], np.arange(6400 + fade, 6400 + 320 - fade))
    assert not clock.skip_pending and clock.skips == 1
    assert clock.skipped_samples == 6400 - 320 - fade
    assert clock.played == 6400 + 320 - fade
    assert math.isclose(clock.position(t + 0.02 + fade / 16000), 6400)  # heard exactly where the frame starts
    assert clock.underruns == 0


def test_clock_jump_to_audio_not_received_waits_in_silence_then_plays_on():
    clock = PlayoutClock(start_margin_s=0.0)
    clock.push(np.ones(1000, np.float32))
    block = np.zeros(320, np.float32)
    t = clock._start_at
    clock.fill(block, t)
    clock.request_skip(3200, resume_at=3200 + 640)
    clock.fill(block, t + 0.02)
    assert block[:64].all() and not block[64:].any()  # faded out, then silence
    assert clock.skip_pending and clock.played == 1000 and clock.underruns == 0
    clock.push(np.full(2000, 2.0, np.float32))  # up to 3000: the landing point has not come yet
    clock.fill(block, t + 0.04)
    assert not block.any() and clock.played == 3000 and clock.position(t + 1) == 3000
    clock.push(np.full(1000, 3.0, np.float32))  # up to 4000 >= 3200 + 640: land and play on
    clock.fill(block, t + 0.06)
    assert not clock.skip_pending and clock.skipped_samples == 3200 - 320 - 64
    assert np.allclose(block[:64], 3.0 * clock._fade_in) and (block[64:] == 3.0).all()
    assert clock.played == 3200 + 320 and clock.skips == 1 and clock.underruns == 0


def test_clock_jump_past_the_end_of_a_finished_session_lands_at_once():
    clock = PlayoutClock(start_margin_s=0.0)
    clock.push(np.ones(500, np.float32))
    clock.request_skip(3200)
    clock.finished = True
    block = np.zeros(320, np.float32)
    clock.fill(block, clock._start_at)
    assert not clock.skip_pending and clock.played == 500


def test_schedule_skip_counts_received_frames_and_those_still_to_come():
    sched = FrameSchedule()
    sched.add(_chunk(0, 4))
    sched.add(_chunk(6, 4, t0=100.24))  # frames 4 and 5 never came (the engine skipped them)
    assert sched.due(0).index == 0
    assert math.isclose(sched.capture_time(4), 100.16)  # a gap is dated back from the next chunk
    assert sched.capture_time(10) is None
    assert sched.skip_to(8) == 5  # frames 1, 2, 3, 6, 7: the gap is the engine's count, not ours
    assert sched.skipped == 5 and sched.shown == 7
    assert sched.due(640 * 7.5) is None  # nothing before the boundary is shown any more
    assert sched.due(640 * 8).index == 8 and sched.late == 0
    sched.skip_to(14)  # past what was received: 10..13 are skipped as they come
    sched.add(_chunk(10, 4))
    sched.add(_chunk(14, 4))
    assert sched.skipped == 5 + 1 + 4  # 9, then 10..13
    assert sched.due(640 * 14).index == 14


def test_idle_chunks_are_dated_by_their_arrival_not_the_engines_sample_count():
    sched = FrameSchedule()
    stale = ReceivedChunk(0, np.zeros((2, 2, 2, 3), np.uint8), np.zeros(1280, np.float32), capture_t0=50.0,
                          idle=True, timings={}, received_t=100.0, sent_t=100.0)
    sched.add(stale)
    assert math.isclose(sched.capture_time(0), 100.0 - 0.08)
    assert math.isclose(sched.due(0).capture_t, 99.92)


def test_live_latency_skips_by_what_is_late_beyond_live_in_frames():
    from studio.live_latency import MIN_SKIP_S, LiveLatency, default_target_s, usual_lag_s

    live = LiveLatency(target_s=default_target_s(2), chunk_frames=2)
    assert math.isclose(live.target_s, 0.58) and math.isclose(live.skip_over_s, 0.83)
    assert math.isclose(live.keep_s, 0.28)  # start margin + one chunk
    assert live.skip_frame(0.8, position=16000, lag_s=0.05) is None  # within the margin: play on
    frame = live.skip_frame(2.0, position=16000, lag_s=0.05)  # 2 s late, live is 0.33 s
    assert frame == math.floor((16000 + (2.0 - 0.33) * 16000) / 640)
    assert live.skip_frame(1.0, position=16000, lag_s=0.8) is None  # the engine is that late: nothing queued to drop
    assert live.skip_frame(0.6, position=16000, lag_s=0.05, recovering=True) is not None  # chasing live after a stall
    assert live.skip_frame(0.33 + MIN_SKIP_S / 2, position=16000, lag_s=0.05, recovering=True) is None
    assert usual_lag_s([]) == 0.0 and usual_lag_s([0.9, 0.1, 0.12, 0.11, 0.5, 0.13]) == 0.11


def test_live_target_comes_from_the_engine_else_the_choice_else_the_chunk():
    from engine.protocol.messages import SessionOpened
    from studio.live_latency import LiveLatency

    opened = SessionOpened(chunk_frames=28)
    assert math.isclose(LiveLatency.for_session(opened, None).target_s, 28 / 25 + 0.5)
    assert LiveLatency.for_session(opened, 2.5).target_s == 2.5
    opened.target_latency_s = 1.9  # what an engine with the latency contract reports
    assert LiveLatency.for_session(opened, 2.5).target_s == 1.9


def test_stats_warn_while_the_session_cannot_keep_up():
    stats = SessionStats(t0=0.0)
    assert stats.warning(0.0) == ""
    stats.on_playout_skip(10.0)
    stats.playout_skipped_s = 1.5
    assert "skipped 1.5 s to stay live" in stats.warning(12.0) and stats.warning(30.0) == ""
    assert "skipped 1.5 s" in stats.summary(12.0, catching_up=False)
    for i in range(5):  # 2 frames of work take 100 ms: 0.8x real time
        stats.on_chunk(ReceivedChunk(i * 2, np.zeros((2, 2, 2, 3), np.uint8), np.zeros(1280, np.float32), 0.0,
                                     False, {"chunk_total": 100.0}, 40.0 + i, 40.0 + i))
    assert math.isclose(stats.rtf, 0.8)
    assert "cannot keep up: it makes 0.80 s of video per second" in stats.warning(100.0)
    stats.on_engine_values(50.0, {"skipped_s": 2.0, "profile": "256px"})
    assert stats.profile == "256px" and math.isclose(stats.skipped_s, 3.5)
    status = stats.live_status(50.0)
    assert status.profile == "256px" and "at 256px" in status.warning


def test_latency_log_reports_per_second_and_percentiles_after_warmup():
    from studio.latency_log import WARMUP_S, LatencyLog

    stats = SessionStats(t0=0.0)
    log = LatencyLog(t0=0.0, ui_cpu0=0.0, pace="realtime")
    log.on_session({"live": True, "target_latency_s": 0.58, "profile": ""})
    for second in range(8):
        for i in range(25):
            late = 3.0 if second == 1 else 0.3 + i * 0.001
            log.on_frame(second + i / 25, late, idle=False)
        log.on_frame(second + 0.99, 9.0, idle=True)  # made in silence: no capture to be late to
        log.on_second(second + 1.0, stats, ui_cpu=0.05 * (second + 1), ui_stall_ms=12.0)
    report = log.report(8.0, stats, ui_cpu=0.4, schedule_counts={"late_frames": 0})
    assert report["live"] is True and report["profile"] is None and report["target_latency_s"] == 0.58
    assert report["latency_s"]["max"] == 3.0 and report["latency_s"]["frames"] == 200
    after = report["latency_after_warmup_s"]
    assert after["frames"] == 25 * (8 - int(WARMUP_S)) and after["max"] == 0.324 and after["p50"] == 0.312
    rows = report["per_second"]
    assert len(rows) == 8 and rows[1]["latency_max_s"] == 3.0 and rows[0]["idle_frames"] == 1
    assert rows[3]["ui_thread_cpu_s"] == 0.05 and rows[3]["ui_stall_max_s"] == 0.012
    assert report["ui_thread_cpu_per_s"] == 0.05 and report["idle_frames"] == 8
