"""The engine's start-up options have one definition (BackendOptions): every command line that offers
an option gives it the same default, choices and help, and usage mistakes are one line."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import pytest

from engine.cli import build_parser
from engine.cli.common import backend_options
from engine.cli.doctor_checks import DoctorSetup, required_gpu_gib
from engine.protocol.engine_options import BackendOptions
from tests.conftest import ROOT

PLANNED = ("model_dir", "wav2vec_dir", "device", "gpus", "precision", "offload")  # what doctor checks


def parsed(*argv: str):
    return build_parser().parse_args(list(argv))


def option_actions(command: str) -> dict[str, object]:
    """flag -> argparse action of the `command` sub-parser."""
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    return {flag: action for action in sub._actions for flag in action.option_strings}


@pytest.mark.parametrize("command", ["serve", "render", "bench", "doctor"])
def test_every_command_offers_an_option_as_its_definition_says(command):
    actions = option_actions(command)
    offered = [f for f in fields(BackendOptions) if command in f.metadata["commands"]]
    assert offered, command
    for option in offered:
        action = actions[option.metadata["flag"]]
        assert action.default == option.default, option.name
        assert action.help == option.metadata["help"], option.name
        choices = option.metadata["choices"]
        assert action.choices == ([str(c) for c in choices] if choices else None), option.name


def test_doctor_plans_for_what_serve_would_start():
    """The doctor's defaults were its own (bf16 where serve picks per device): they are serve's now."""
    serve, doctor = backend_options(parsed("serve")), backend_options(parsed("doctor"))
    for name in PLANNED:
        assert getattr(doctor, name) == getattr(serve, name) == getattr(BackendOptions(), name), name


def test_the_doctor_plans_the_precision_the_engine_would_pick():
    gpu = DoctorSetup.of("flashtalk", backend_options(parsed("doctor", "--backend", "flashtalk")))
    assert gpu.precision is None and gpu.planned_precision == "bf16"
    cpu = DoctorSetup.of("flashtalk", backend_options(parsed("doctor", "--device", "cpu")))
    assert cpu.planned_precision == "fp32"
    assert required_gpu_gib(gpu) == required_gpu_gib(DoctorSetup(backend="flashtalk", precision="bf16"))


@pytest.mark.parametrize("argv, flag", [(["serve", "--precision", "fp16"], "--precision"),
                                        (["render", "--gpus", "two"], "--gpus"),
                                        (["doctor", "--rank-timeout", "5"], "--rank-timeout")])
def test_a_usage_mistake_is_one_line_and_exit_2(argv, flag):
    result = subprocess.run([sys.executable, "-m", "engine", *argv], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flashtalk") and flag in lines[0], result.stderr


@pytest.mark.parametrize("argv, message", [(["serve", "--gpus", "0"], "--gpus must be at least 1"),
                                           (["bench", "--rank-timeout", "-1"], "--rank-timeout must be a positive")])
def test_values_no_backend_can_start_with_are_user_errors(argv, message, capsys):
    from engine.cli import main
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_the_doctor_reads_the_checkpoint_layout_without_torch():
    """The layout's names are torch-free, so the doctor can explain a bare install instead of crashing."""
    code = "import sys, engine.cli.doctor_checks; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
