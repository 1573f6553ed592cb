"""The live latency contract, studio side, with a real puppet engine process (offscreen Qt, silent
timer clock): a stalled engine (SIGSTOP, then SIGCONT: its backlog comes as a burst) is skipped,
audio and frames together, instead of being added to the latency for good; idle sessions stay
live; file sessions keep every frame. Bounds are the contract's, relative to the target the studio
computes, plus what the studio's own UI thread measurably lost to the OS (StallMonitor)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from avkit.mp4_writer import probe_mp4
from studio.live_latency import LiveLatency
from tests.conftest import engine_children, wait_for

from .conftest import ASSETS, ROOT, write_wav
from .test_cli import ENV
from .test_studio_session import start_live

CONTRACT_S = 0.5  # presented latency never above target + this once the session runs


def freeze(qtbot, pid: int, seconds: float) -> float:
    """The engine process gets no CPU at all for `seconds` (a stall far beyond any load) while the
    studio runs on; returns when it was let go (monotonic)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        qtbot.wait(int(seconds * 1000))
    finally:
        os.kill(pid, signal.SIGCONT)
    return time.monotonic()


class ShownLatencies:
    """The latency of every frame the playout presents, as it presents it."""

    def __init__(self, playout):
        self.playout = playout
        self.values: list[tuple[float, float, bool]] = []  # (when, capture -> presented, idle)
        playout.frame_shown.connect(self._on_shown)

    def _on_shown(self, due) -> None:
        self.values.append((time.monotonic(), self.playout.stats.latency_s, due.idle))

    def since(self, t: float) -> list[float]:
        return [latency for when, latency, _ in self.values if when >= t]


def test_a_stalled_engine_is_skipped_to_live_audio_and_frames_together(studio, qtbot, speech, tmp_path):
    model = start_live(studio, qtbot)
    playout = model.playout
    latency: LiveLatency = playout.latency
    assert latency is not None and latency.target_s > 0  # a live session keeps the contract
    notices: list[str] = []
    model.notice.connect(notices.append)
    shown = ShownLatencies(playout)
    model.sources.load_file_now(write_wav(tmp_path / "speech.wav", speech))
    model.sources.set_loop(True)
    model.sources.play_file()
    qtbot.waitUntil(lambda: playout.schedule.shown >= 50, timeout=30_000)
    settled = playout.stats.latency_s
    studio.stalls.reset()
    resumed = freeze(qtbot, model.link.supervisor.pid, 1.5)
    clock = playout.clock
    qtbot.waitUntil(lambda: clock.skips >= 1 and not clock.skip_pending, timeout=20_000)
    landed = playout.schedule.shown
    qtbot.waitUntil(lambda: playout.schedule.shown >= landed + 50, timeout=20_000)  # 2 s of video after it
    # Nothing presented after the stall was later than the contract allows: the burst of chunks the
    # engine owed was jumped over, not played (beyond what the OS itself kept the UI thread from).
    after = shown.since(resumed)
    allowance = studio.stalls.max_stall_ms / 1e3
    assert after and max(after) <= latency.target_s + CONTRACT_S + allowance, (max(after), allowance)
    assert playout.stats.latency_s <= latency.skip_over_s + allowance  # and it stayed live
    assert playout.stats.latency_s < settled + 1.0  # the stall was not added for good
    # Audio and frames jumped together: the frame shown is the one whose audio is heard.
    heard_frame = playout.clock.position() // playout.timeline.samples_per_frame
    assert abs(playout.schedule.shown - heard_frame) <= 1
    # Counted and said: the summary, a notice, the live row and its warning.
    assert playout.stats.skipped_s > 0 and playout.schedule.skipped > 0
    assert "skipped" in studio.summary.text()
    assert any("to stay live" in n for n in notices)
    qtbot.waitUntil(lambda: "skipped 0.0 s" not in studio.live_status.numbers.full_text, timeout=5_000)
    assert studio.live_status.warning.isVisible() and "skipped" in studio.live_status.warning.text()
    assert playout.schedule.waiting() <= (latency.skip_over_s + latency.keep_s) * 25  # memory stays flat


def test_an_idle_session_stays_live_through_engine_stalls(studio, qtbot):
    """No audio at all (the idle avatar): stalls must not accumulate into the latency."""
    model = start_live(studio, qtbot)
    playout = model.playout
    shown = ShownLatencies(playout)
    qtbot.waitUntil(lambda: playout.schedule.shown >= 25, timeout=30_000)
    for _ in range(2):
        studio.stalls.reset()
        resumed = freeze(qtbot, model.link.supervisor.pid, 1.0)
        start = playout.schedule.shown
        qtbot.waitUntil(lambda start=start: playout.schedule.shown >= start + 25, timeout=20_000)
        after = shown.since(resumed)
        allowance = studio.stalls.max_stall_ms / 1e3
        assert after and max(after) <= playout.latency.target_s + CONTRACT_S + allowance, (max(after), allowance)
    assert all(idle for _, _, idle in shown.values)


def test_a_file_session_keeps_every_frame_through_a_stall(studio, qtbot, short_speech):
    """File mode (--quit-when-done without --pace realtime) never skips, whatever it costs."""
    model = studio.model
    model.mode = "file"
    model = start_live(studio, qtbot)
    playout = model.playout
    assert playout.latency is None
    model.sources.load_file_now(short_speech)
    model.sources.play_file()
    qtbot.waitUntil(lambda: playout.schedule.shown >= 10, timeout=30_000)
    freeze(qtbot, model.link.supervisor.pid, 1.5)
    qtbot.waitUntil(lambda: model.state == "ended", timeout=30_000)
    assert playout.clock.skips == 0 and playout.clock.skipped_samples == 0 and playout.schedule.skipped == 0
    assert playout.schedule.shown + 1 == playout.schedule.end_frame == 63  # ceil(2.5 s * 25 fps)


# -- flashtalk-studio --pace realtime --metrics-json, under a CPU hog --------------------------------

@pytest.fixture
def cpu_hog():
    """A busy process that keeps one of the machine's cores saturated."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield hog
    hog.kill()
    hog.wait(10)


def _engine_child(studio: subprocess.Popen) -> psutil.Process:
    def find():
        kids = engine_children(studio.pid)
        return kids[0] if kids else None
    return wait_for(find, timeout=60)


def _partial_size(folder) -> int:
    sizes = []
    for path in folder.glob("out.partial-*"):
        try:
            sizes.append(path.stat().st_size)
        except OSError:  # renamed between listing and reading
            pass
    return max(sizes, default=0)


def _realtime_session_under_load(tmp_path, speech, seconds: float, stalls: int) -> dict:
    """Play a `seconds` file live through the real studio while a core is saturated, stall its engine
    `stalls` times (1.5 s each, 5 s apart) once the session runs; the studio's metrics file."""
    repeats = int(seconds * 16000 // len(speech)) + 1
    clip = write_wav(tmp_path / "speech.wav", np.tile(speech, repeats)[: int(seconds * 16000)])
    metrics, out = tmp_path / "metrics.json", tmp_path / "out.mp4"
    studio = subprocess.Popen([sys.executable, "-m", "studio", "--settings", str(tmp_path / "s.ini"),
                               "--portrait", str(ASSETS / "portrait.png"), "--audio-file", str(clip),
                               "--record", str(out), "--quit-when-done", "--pace", "realtime",
                               "--metrics-json", str(metrics)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)
    try:
        engine = _engine_child(studio)
        # a second of video is on disk: the session runs (or the studio gave up: say why)
        wait_for(lambda: _partial_size(tmp_path) > 20_000 or studio.poll() is not None, timeout=90)
        if studio.poll() is not None:
            pytest.fail(f"the studio exited {studio.returncode} early: {studio.stderr.read()[-2000:]}")
        time.sleep(2.0)
        for _ in range(stalls):
            engine.send_signal(signal.SIGSTOP)
            time.sleep(1.5)
            engine.send_signal(signal.SIGCONT)
            time.sleep(5.0)
        _, stderr = studio.communicate(timeout=seconds + 120)
    finally:
        if studio.poll() is None:
            studio.kill()
    assert studio.returncode == 0, stderr[-2000:]
    assert probe_mp4(out).video_frames > 0
    return json.loads(metrics.read_text())


def _check_contract(report: dict) -> None:
    target = report["target_latency_s"]
    print(f"target {target} s; after warm-up {report['latency_after_warmup_s']}; skipped {report['skipped_s']} s "
          f"(playout {report['playout_skipped_s']}, engine {report['engine_skipped_s']}); "
          f"UI thread {report['ui_thread_cpu_per_s']} s CPU per s")
    assert report["live"] is True and report["pace"] == "realtime" and target > 0
    rows = [r for r in report["per_second"] if r["t_s"] > report["warmup_s"]]
    print(f"{len(rows)} seconds after the warm-up of a {report['seconds']} s session")
    assert len(rows) >= 10
    # Every second after the warm-up: nothing presented later than target + 0.5 s, beyond what the OS
    # measurably took from the studio's UI thread in that second or the one before (a frame cannot
    # be shown while the studio is not running).
    stall = {r["t_s"]: r["ui_stall_max_s"] or 0.0 for r in report["per_second"]}
    times = sorted(stall)
    for row in rows:
        if row["latency_max_s"] is None:
            continue
        before = times[max(0, times.index(row["t_s"]) - 1)]
        allowance = max(stall[row["t_s"]], stall[before])
        assert row["latency_max_s"] <= target + CONTRACT_S + allowance, (row, allowance)
    assert report["latency_after_warmup_s"]["p95"] <= target + CONTRACT_S
    assert report["latency_after_warmup_s"]["max"] is not None
    assert report["skipped_s"] > 0  # the stalls were skipped, counted, not kept as latency
    assert 0 < rows[-1]["skipped_s"] <= report["skipped_s"]  # the per-second series counts them too
    assert report["ui_thread_cpu_per_s"] > 0


def test_realtime_pace_keeps_the_contract_under_a_cpu_hog_and_engine_stalls(tmp_path, speech, cpu_hog):
    # 18 s: both stalls are over by ~12 s into the session, and 12 seconds follow the 5 s warm-up
    _check_contract(_realtime_session_under_load(tmp_path, speech, seconds=18.0, stalls=2))


@pytest.mark.slow
def test_a_minute_played_live_under_a_cpu_hog_keeps_the_contract(tmp_path, speech, cpu_hog):
    _check_contract(_realtime_session_under_load(tmp_path, speech, seconds=60.0, stalls=6))
