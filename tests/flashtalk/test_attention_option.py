"""`--attention`: an unknown kernel, or one that cannot run here, is one line and exit 2 for serve,
render and bench (it was a traceback), and the choices offered are the kernels the DiT has."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from engine.protocol.engine_options import ATTENTION_KERNELS  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from tests.flashtalk.cli_in_process import flashtalk_in_process  # noqa: E402

COMMANDS = ("serve", "render", "bench")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from engine.flashtalk.weights.tiny_checkpoint import make_tiny
    return make_tiny(tmp_path_factory.mktemp("tiny"), seed=0)[0]


def flashtalk(command: str, tiny_model: Path, kernel: str, tmp_path: Path, capfd=None) -> subprocess.CompletedProcess:
    """A real `python -m engine` process; with `capfd`, the CLI's own `main` in this process."""
    own = {"serve": ["--socket", f"ipc://{tmp_path}/engine.sock"],
           "render": ["--quiet", "--out", str(tmp_path / "never.mp4")],
           "bench": ["--chunks", "1", "--json", str(tmp_path / "never.json")]}[command]
    argv = [command, *own, "--backend", "flashtalk", "--model", str(tiny_model), "--device", "cpu",
            "--attention", kernel]
    if capfd is not None:
        return flashtalk_in_process(capfd, *argv)
    return subprocess.run([sys.executable, "-m", "engine", *argv], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def assert_one_line(result: subprocess.CompletedProcess, command: str, *words: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"flashtalk {command}: "), result.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_kernel_is_one_line(command, tiny_model, tmp_path):
    result = flashtalk(command, tiny_model, "bogus", tmp_path)
    assert_one_line(result, command, "--attention", "'bogus'", "cudnn")
    assert not list(tmp_path.glob("never*"))


@pytest.mark.parametrize("command", COMMANDS)
def test_a_kernel_that_does_not_run_here_is_one_line(command, tiny_model, tmp_path, capfd):
    # serve through a real process; render and bench through the same `main` in-process (each new
    # process would spend seconds importing torch to reach the same check)
    result = flashtalk(command, tiny_model, "cudnn", tmp_path, capfd=None if command == "serve" else capfd)
    assert_one_line(result, command, "--attention", "cudnn", "does not run on cpu", "math")
    assert not list(tmp_path.glob("never*"))


def test_the_choices_are_the_kernels_the_dit_can_pin():
    from engine.flashtalk.model.attention import BACKENDS
    assert set(ATTENTION_KERNELS) == set(BACKENDS)
