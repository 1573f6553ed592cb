"""`flashtalk-studio` as a script: record a file session to MP4 and quit; one-line usage errors."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from avkit.mp4_writer import probe_mp4
from tests.conftest import engine_children, process_alive, wait_for

from .conftest import ASSETS, ROOT, write_wav

ENV = dict(os.environ, QT_QPA_PLATFORM="offscreen")


def studio_cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=ENV)


def test_record_quit_when_done_writes_a_valid_mp4(tmp_path, short_speech):
    out = tmp_path / "out.mp4"
    done = studio_cli("--settings", str(tmp_path / "s.ini"), "--portrait", str(ASSETS / "portrait.png"),
                      "--audio-file", str(short_speech), "--record", str(out), "--quit-when-done")
    assert done.returncode == 0, done.stderr[-2000:]
    info = probe_mp4(out)
    assert info.video_frames == 63  # ceil(2.5 s * 25 fps): every frame of the file, none lost
    assert info.audio_rate == 16000 and abs(info.audio_samples - 63 * 640) < 1024
    assert info.width > 0 and info.height > 0
    assert not list(tmp_path.glob("*.partial*"))


def test_usage_mistakes_are_one_line(tmp_path):
    done = studio_cli("--portrait", str(tmp_path / "missing.png"))
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "no such file" in done.stderr
    done = studio_cli("--quit-when-done")
    assert done.returncode == 2 and "--audio-file" in done.stderr



def test_quit_when_done_without_a_usable_portrait_is_a_one_line_mistake(tmp_path, short_speech):
    """Nothing would ever play: exit 2 at once rather than wait forever."""
    settings = str(tmp_path / "fresh.ini")  # no last portrait to fall back on
    done = studio_cli("--settings", settings, "--audio-file", str(short_speech), "--quit-when-done", timeout=60)
    assert done.returncode == 2
    assert studio_lines(done.stderr) == ["flashtalk-studio: --quit-when-done needs a portrait: pass --portrait IMG"]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    done = studio_cli("--settings", settings, "--portrait", str(bad), "--audio-file", str(short_speech),
                      "--quit-when-done", timeout=60)
    assert done.returncode == 2
    [line] = studio_lines(done.stderr)
    assert str(bad) in line and "not a PNG, JPEG or WebP image" in line


def studio_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("flashtalk-studio:")]


def test_quit_when_done_exits_1_with_the_engines_reason_when_it_cannot_start(tmp_path, short_speech):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    done = studio_cli("--settings", str(tmp_path / "s.ini"), "--backend", "flashtalk", "--model", str(empty),
                      "--portrait", str(ASSETS / "portrait.png"), "--audio-file", str(short_speech),
                      "--quit-when-done")
    assert done.returncode == 1
    [line] = studio_lines(done.stderr)
    assert "stopped before the end of the audio file: the engine refused its options" in line
    assert "config.json" in line  # the engine's own words, not "see the log"


def test_quit_when_done_keeps_the_recording_and_exits_1_when_the_engine_dies_mid_file(tmp_path, engine, speech):
    clip = write_wav(tmp_path / "speech.wav", speech)
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "studio", "--settings", str(tmp_path / "s.ini"),
                             "--portrait", str(ASSETS / "portrait.png"), "--engine", engine.address,
                             "--audio-file", str(clip), "--record", str(out), "--quit-when-done"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)
    try:
        # the first one-second fragment is on disk: the session is well under way
        wait_for(lambda: any(_size(p) > 20_000 for p in tmp_path.glob("out.partial-*")), timeout=60)
        engine.stop(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    [line] = studio_lines(stderr)
    assert "stopped before the end of the audio file: lost the engine" in line
    info = probe_mp4(out)  # what was made before the engine died is a whole, playable file
    assert 0 < info.video_frames < len(speech) // 640
    assert not list(tmp_path.glob("*.partial*"))


@pytest.mark.skipif(os.name != "posix", reason="the engine watches --parent-pid on POSIX systems")
def test_a_killed_studio_takes_its_engine_with_it(tmp_path):
    """A crashed studio must not leave its engine (a socket; GPUs for flashtalk) running for nobody."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    studio = subprocess.Popen([sys.executable, "-m", "studio", "--settings", str(tmp_path / "s.ini"),
                               "--portrait", str(ASSETS / "portrait.png")], cwd=ROOT,
                              env=dict(ENV, XDG_RUNTIME_DIR=str(runtime)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock = runtime / "flashtalk" / f"studio-{studio.pid}.sock"
    engine = None
    try:
        wait_for(sock.exists, timeout=60)
        [engine] = engine_children(studio.pid)
        studio.kill()
        studio.wait(10)
        wait_for(lambda: not process_alive(engine.pid), timeout=20)
    finally:
        studio.kill()
        if engine is not None and process_alive(engine.pid):  # reparented: only its pid reaches it now
            engine.kill()
    assert not sock.exists()  # it stopped cleanly: socket and token removed
    assert not list(sock.parent.glob("*.token"))



def _size(path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # renamed or removed between listing and reading
        return 0


def test_bad_live_settings_are_one_line_exit_2(tmp_path):
    for args, words in ((["--target-latency", "0"], "--target-latency 0: give a positive number of seconds"),
                        (["--target-latency", "soon"], "--target-latency soon: give a positive number"),
                        (["--target-latency", "nan"], "--target-latency nan"),
                        (["--quality", " "], "--quality: give 'auto', 'fixed' or a profile name"),
                        (["--pace", "realtime"], "--pace needs --quit-when-done"),
                        (["--metrics-json", str(tmp_path / "no" / "m.json")], "no such folder")):
        done = studio_cli("--settings", str(tmp_path / "s.ini"), *args, timeout=30)
        assert done.returncode == 2, (args, done.stderr)
        assert studio_lines(done.stderr) == [line for line in done.stderr.splitlines() if line.strip()]
        [line] = studio_lines(done.stderr)
        assert words in line, line


def test_settings_the_engine_refuses_are_one_line_exit_2_and_nothing_is_made(tmp_path, short_speech):
    """An unknown quality profile, or a target below one chunk of audio (the puppet's is 80 ms): the
    engine refuses the session before any work; the studio says so in one line, and leaves no
    recording and no metrics file behind."""
    settings = tmp_path / "s.ini"
    for args, word in ((["--quality", "no-such-profile"], "quality"), (["--target-latency", "0.01"], "target")):
        out, metrics = tmp_path / "out.mp4", tmp_path / "metrics.json"
        done = studio_cli("--settings", str(settings), "--portrait", str(ASSETS / "portrait.png"),
                          "--audio-file", str(short_speech), "--record", str(out), "--quit-when-done",
                          "--pace", "realtime", "--metrics-json", str(metrics), *args)
        assert done.returncode == 2, done.stderr[-2000:]
        [line] = studio_lines(done.stderr)
        assert line.startswith("flashtalk-studio: the engine refused the session: ") and word in line, line
        assert not out.exists() and not metrics.exists() and not list(tmp_path.glob("*.partial*"))
        assert not list(tmp_path.glob(".metrics.json*"))
    assert "no-such-profile" not in settings.read_text()  # the command line's choice is for that run only
