"""`flashtalk render` end to end: real MP4 files, A/V sync, lip motion, bad input."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from avkit.audio_decode import load_audio
from avkit.mp4_writer import probe_mp4, read_mp4_frames
from tests.conftest import ASSETS, ROOT


def render(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "render", "--quiet", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def default_clip(tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "avatar.mp4"
    metrics = out.with_suffix(".json")
    result = render("--out", str(out), "--metrics-json", str(metrics))
    assert result.returncode == 0, result.stderr
    return out, json.loads(metrics.read_text())


def test_default_render_has_both_streams_in_sync(default_clip):
    out, metrics = default_clip
    info = probe_mp4(out)
    duration = load_audio(ASSETS / "speech.wav").size / 16000
    assert abs(info.video_frames - round(duration * 25)) <= 1
    assert info.audio_rate == 16000 and abs(info.audio_samples / 16000 - duration) < 0.1
    assert (info.width, info.height) == (512, 512)
    assert metrics["frames"] == info.video_frames and "chunk_total" in metrics["stages"]
    assert metrics["engine"]["dropped_frames"] == 0


def test_mouth_follows_speech_and_background_is_still(default_clip):
    from engine.backends.puppet.face_landmarks import detect_landmarks, mouth_opening
    out, _ = default_clip
    frames = read_mp4_frames(out)
    audio = load_audio(ASSETS / "speech.wav")
    openings = []
    for frame in frames:
        marks = detect_landmarks(frame)
        openings.append(mouth_opening(marks) if marks is not None else np.nan)
    openings = np.array(openings)
    assert np.isfinite(openings).mean() > 0.95  # the face stays detectable throughout
    n = min(len(frames), audio.size // 640)
    envelope = np.sqrt((audio[:n * 640].reshape(n, 640) ** 2).mean(axis=1))
    smooth = np.convolve(envelope, np.ones(3) / 3, mode="same")
    ok = np.isfinite(openings[:n])
    r = np.corrcoef(openings[:n][ok], smooth[ok])[0, 1]
    assert r >= 0.5, f"mouth opening vs audio envelope r={r:.2f}"
    silent = smooth < 0.01
    assert silent.any() and np.nanmedian(openings[:n][silent]) < np.nanmedian(openings[:n][~silent])
    corners = np.concatenate([frames[:, :48, :48], frames[:, :48, -48:]], axis=1).astype(np.float32)
    assert corners.std(axis=0).mean() < 2.0  # background pixels do not move


@pytest.mark.parametrize("case", ["missing_portrait", "not_an_image", "bad_audio", "bad_out", "bad_size",
                                  "target_below_a_chunk", "unknown_profile", "target_in_file_pace",
                                  "auto_in_file_pace"])
def test_bad_input_gets_one_line_and_exit_2(tmp_path, case):
    junk = tmp_path / "junk.png"
    junk.write_text("hello")
    out = tmp_path / "o.mp4"
    args = {"missing_portrait": ["--portrait", str(tmp_path / "nope.png")],
            "not_an_image": ["--portrait", str(junk)],
            "bad_audio": ["--audio", str(junk)],
            "bad_out": ["--out", str(tmp_path / "o.avi")],
            "bad_size": ["--size", "big"],
            "target_below_a_chunk": ["--pace", "realtime", "--target-latency", "0.05"],
            "unknown_profile": ["--pace", "realtime", "--quality", "ultra"],
            "target_in_file_pace": ["--target-latency", "2"],
            "auto_in_file_pace": ["--quality", "auto"]}[case]
    if case != "bad_out":
        args += ["--out", str(out)]
    result = render(*args, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flashtalk render: "), result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.glob("o*")) == []


def one_line_exit_2(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flashtalk render: ") and "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("flag, value, says", [
    ("--size", "99999999999999999999x64", "width and height must be 1 to"),
    ("--size", "0x64", "width and height must be 1 to"),
    ("--seed", "18446744073709551616", "--seed 18446744073709551616 is out of range"),
    ("--seed", "-1", "out of range"),
])
def test_numbers_out_of_range_get_one_line(tmp_path, flag, value, says):
    line = one_line_exit_2(render(flag, value, "--out", str(tmp_path / "o.mp4"), timeout=60))
    assert says in line
    assert list(tmp_path.glob("o*")) == []


def test_an_output_that_names_an_input_is_refused_and_the_input_kept(tmp_path):
    from avkit.mp4_writer import Mp4Writer
    clip = tmp_path / "talk.mp4"
    with Mp4Writer(clip, 64, 64) as writer:  # a real MP4 with a voice track, usable as --audio
        writer.write_frames(np.zeros((5, 64, 64, 3), np.uint8))
        writer.write_audio(load_audio(ASSETS / "speech.wav")[:3200])
    before = clip.read_bytes()
    line = one_line_exit_2(render("--audio", str(clip), "--out", str(clip), timeout=60))
    assert "is the --audio file" in line and clip.read_bytes() == before
    line = one_line_exit_2(render("--out", str(tmp_path / "o.mp4"), "--metrics-json", str(tmp_path / "o.mp4"),
                                  timeout=60))
    assert "same file" in line and not (tmp_path / "o.mp4").exists()


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs a folder nobody may write in (sysfs)")
def test_an_unwritable_metrics_folder_fails_before_any_mp4_is_written(tmp_path):
    """sysfs refuses new files even to root: the run fails at once and leaves no MP4 behind."""
    line = one_line_exit_2(render("--out", str(tmp_path / "o.mp4"), "--metrics-json", "/sys/flashtalk.json",
                                  timeout=60))
    assert "--metrics-json" in line and "cannot write" in line
    assert list(tmp_path.glob("o*")) == []
    line = one_line_exit_2(render("--out", "/sys/o.mp4", timeout=60))
    assert line.startswith("flashtalk render: --out /sys/o.mp4: cannot write")


def test_portrait_without_face_is_a_clear_error(tmp_path):
    from PIL import Image
    blank = tmp_path / "wall.png"
    Image.new("RGB", (256, 256), (120, 130, 140)).save(blank)
    result = render("--portrait", str(blank), "--out", str(tmp_path / "o.mp4"), timeout=60)
    assert result.returncode == 2 and "no face" in result.stderr
    assert list(tmp_path.glob("o*")) == []


def test_interrupted_render_leaves_no_file(tmp_path):
    long_audio = tmp_path / "long.wav"
    subprocess.run(["sox", str(ASSETS / "speech.wav"), str(long_audio), "repeat", "20"], check=True)
    out = tmp_path / "o.mp4"
    # A shell's background job (a CI step, `pytest &`) inherits SIGINT ignored: Ctrl+C's default
    # comes back for the render, as in a terminal.
    proc = subprocess.Popen([sys.executable, "-m", "engine", "render", "--quiet", "--audio",
                             str(long_audio), "--out", str(out)], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("o.partial-*")):  # interrupt once it is really writing
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    assert list(tmp_path.glob("o*")) == []
