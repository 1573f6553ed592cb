"""A disk that fills up while `flashtalk render` writes: one clear line, exit 2, nothing left behind.

No root or mounts needed. EFBIG: the render runs under RLIMIT_FSIZE (SIGXFSZ ignored, as Python
does anyway), so its writes fail once the output reaches the limit, mid-file, exactly as on a full
disk. ENOSPC: the writer's partial file is a symlink to /dev/full, where every write fails with
"No space left on device". Both must read the same to the user.
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT

LIMIT = 96 * 1024  # bytes a render may write per file: a few seconds of 128x128 video


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _render(tmp_path: Path, argv_prefix: list[str], out: Path, *extra: str,
            preexec=None) -> subprocess.CompletedProcess:
    private_tmp = tmp_path / "tmp"  # render's engine socket folder goes here: it must be gone after
    private_tmp.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(private_tmp)}
    return subprocess.run([*argv_prefix, "render", "--quiet", "--size", "128x128", "--out", str(out), *extra],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=180,
                          preexec_fn=preexec, check=False)


def _assert_clean_failure(result: subprocess.CompletedProcess, tmp_path: Path, out: Path, errno_text: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    line = lines[0]
    assert line.startswith("flashtalk render: the disk is full: cannot write ") and str(out) in line
    assert errno_text in line and "free some disk space or choose another folder for --out" in line
    assert "Traceback" not in result.stderr
    assert [p.name for p in out.parent.iterdir()] == [], "partial or temporary file left behind"
    assert list((tmp_path / "tmp").iterdir()) == [], "engine socket folder left behind"
    leftovers = [p.info["pid"] for p in psutil.process_iter(["pid", "cmdline"])
                 if str(out) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == [], "a render or engine process is still running"


def test_render_that_fills_the_disk_mid_file_exits_2_with_one_line_and_no_file(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "avatar.mp4"
    result = _render(tmp_path, [sys.executable, "-m", "engine"], out, preexec=_limit_file_size(LIMIT))
    _assert_clean_failure(result, tmp_path, out, "File too large")


def test_render_onto_a_device_with_no_space_exits_2_with_the_same_line(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "avatar.mp4"
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system: the EFBIG test covers the same path")
    # The writer encodes into <stem>.partial-<pid>.mp4; point that name at /dev/full (ENOSPC).
    launcher = ("import os, sys\n"
                f"os.symlink('/dev/full', {str(out_dir)!r} + f'/avatar.partial-{{os.getpid()}}.mp4')\n"
                "from engine.cli import main\n"
                "sys.exit(main(sys.argv[1:]))\n")
    result = _render(tmp_path, [sys.executable, "-c", launcher], out)
    _assert_clean_failure(result, tmp_path, out, "No space left on device")


def test_metrics_json_on_a_full_disk_is_the_same_clear_error_and_leaves_no_truncated_json(tmp_path):
    """The video fits, the metrics file does not (it is a name for /dev/full): one line, no JSON."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out, metrics = out_dir / "avatar.mp4", out_dir / "metrics.json"
    metrics.symlink_to("/dev/full")
    result = _render(tmp_path, [sys.executable, "-m", "engine"], out, "--metrics-json", str(metrics))
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the disk is full" in lines[0] and str(metrics) in lines[0], result.stderr
    assert "No space left on device" in lines[0] and lines[0].endswith("for --metrics-json")
    assert not metrics.is_symlink() and not metrics.exists()
    assert [p.name for p in out_dir.iterdir()] == ["avatar.mp4"]  # the video itself was finished
