"""The live latency contract with the puppet, through a real engine process: what a session
reports at open, zero skips when the engine keeps up, and refused settings that start nothing."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from avkit.audio_decode import load_audio
from avkit.mp4_writer import probe_mp4
from avkit.timeline import Timeline
from engine.cli.live_pace import stream_live
from engine.protocol import EngineClient, EngineError, SessionSettings
from engine.protocol.messages import TARGET_LATENCY_MARGIN_S
from tests.conftest import ASSETS, ROOT

TIMELINE = Timeline()


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """One puppet engine for this module: every test here ends its sessions (or drops its client,
    which ends them at once), so each finds it idle."""
    from tests.conftest import EngineProcess
    proc = EngineProcess(f"ipc://{tmp_path_factory.mktemp('engine')}/run/engine.sock", "--client-timeout", "2")
    yield proc
    proc.stop()


def test_session_opened_says_quality_profile_rate_and_target(engine, portrait_bytes):
    with EngineClient(engine.address) as client:
        opened = client.open_session(portrait_bytes, SessionSettings(width=128, height=128))
        client.close_session()
        fixed = client.open_session(portrait_bytes, SessionSettings(width=128, height=128, mode="file",
                                                                    target_latency_s=3.0))
        client.close_session()
    chunk_s = opened.chunk_frames / TIMELINE.fps
    assert opened.quality == "auto" and opened.profiles == ["128x128"] and opened.profile == "128x128"
    assert opened.predicted_rtf > 1.0  # measured at open: the puppet is far faster than real time
    assert opened.target_latency_s == pytest.approx(chunk_s + TARGET_LATENCY_MARGIN_S)
    assert fixed.quality == "fixed" and fixed.target_latency_s == 3.0


def test_a_puppet_session_at_microphone_pace_never_skips(engine, portrait_bytes, speech):
    audio = speech[: 3 * TIMELINE.sample_rate]
    frames = []
    with EngineClient(engine.address) as client:
        opened = client.open_session(portrait_bytes, SessionSettings(width=256, height=256))
        log = stream_live(client, opened, audio, TIMELINE, frames.append)
    final = log.metrics[-1][1]
    assert final["skipped_frames"] == 0 and final["skips"] == 0 and final["dropped_frames"] == 0
    assert sum(f.count for f in frames) == TIMELINE.frames_covering(audio.size)
    assert final["profile"] == "256x256" and final["rtf"] > 1.0
    assert 0 < final["latency_s"] <= opened.target_latency_s  # heard -> sent, the engine's own clock
    report = log.report()
    assert report["latency_s"]["p95"] <= opened.target_latency_s  # capture -> received, this clock
    assert [s["t_s"] for s in report["per_second"]] == list(range(len(report["per_second"])))
    assert not [e for e in log.events if e["kind"] in ("skip", "profile")]


@pytest.mark.parametrize("settings, words", [
    (SessionSettings(quality="ultra"), "unknown quality 'ultra'"),
    (SessionSettings(target_latency_s=0.05), "below one chunk of audio"),
    (SessionSettings(width=3, height=64), "output size"),
])
def test_refused_settings_are_one_line_and_start_nothing(engine, portrait_bytes, settings, words):
    with EngineClient(engine.address) as client:
        with pytest.raises(EngineError) as info:
            client.open_session(portrait_bytes, settings, timeout=10)
        assert info.value.code == "bad_settings" and words in str(info.value) and "\n" not in str(info.value)
        client.open_session(portrait_bytes, SessionSettings(width=64, height=64), timeout=10)  # not busy
        client.close_session()


def test_render_at_realtime_pace_writes_every_frame_and_the_per_second_series(tmp_path):
    clip = tmp_path / "clip.wav"
    subprocess.run(["sox", str(ASSETS / "speech.wav"), str(clip), "trim", "0", "2.5"], check=True)
    out, metrics = tmp_path / "live.mp4", tmp_path / "live.json"
    result = subprocess.run([sys.executable, "-m", "engine", "render", "--pace", "realtime", "--size", "128x128",
                             "--audio", str(clip), "--out", str(out), "--metrics-json", str(metrics)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "live pace: started at 128x128" in result.stderr and "skipped 0.0 s in 0 skips" in result.stderr
    live = json.loads(metrics.read_text())["live"]
    frames = TIMELINE.frames_covering(load_audio(clip).size)
    assert probe_mp4(out).video_frames == frames  # the puppet keeps up: nothing skipped
    assert live["skipped_s"] == 0 and live["profiles_used"] == ["128x128"] and live["quality"] == "auto"
    assert set(live["latency_s"]) == {"p50", "p95", "max", "chunks"}
    assert live["latency_s"]["p50"] <= live["latency_s"]["p95"] <= live["latency_s"]["max"]
    seconds = live["per_second"]
    assert 2 <= len(seconds) <= 5 and all(s["profile"] == "128x128" for s in seconds if s["profile"])
    latencies = [s["latency_s"] for s in seconds if s["latency_s"] is not None]
    assert latencies and max(latencies) == pytest.approx(live["latency_s"]["max"])


def test_live_audio_that_waited_too_long_is_skipped_at_a_chunk_boundary(engine, portrait_bytes):
    """Three seconds sent in one block count as three seconds just spoken: the engine starts at the
    newest whole chunk instead of working through old audio, and says so."""
    audio = np.random.default_rng(3).normal(0, 0.1, 3 * TIMELINE.sample_rate).astype(np.float32)
    with EngineClient(engine.address) as client:
        opened = client.open_session(portrait_bytes, SessionSettings(width=64, height=64, chunk_frames=5))
        client.send_audio(audio, TIMELINE.sample_rate)
        client.end_audio()
        speech, skips = [], []
        while True:
            msg = client.recv(10)
            assert msg is not None
            if msg.TYPE == "frames" and not msg.idle:
                speech.append((msg.first_frame, msg.count))
            elif msg.TYPE == "event" and msg.kind == "skip":
                skips.append(msg.data)
            elif msg.TYPE == "event" and msg.kind == "session_ended":
                break
    allowed_s = opened.target_latency_s  # the most audio that may wait, whatever the chunk costs
    assert len(skips) == 1 and skips[0]["skipped_s"] >= 3.0 - allowed_s - 0.1
    assert speech[0][0] == skips[0]["first_frame"]  # the chunk after the skip starts where it said
    assert sum(count for _, count in speech) <= (allowed_s + 0.1) * TIMELINE.fps + opened.chunk_frames
