"""`flashtalk doctor` on this machine, for real: the verdicts, exit codes, fix lines and JSON.

The desktop's checks (microphone, virtual camera and microphone, speech, display) are the studio's:
tests/studio/test_desktop_checks.py."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.cli.doctor_checks import DoctorSetup, required_gpu_gib
from engine.flashtalk.weights.checkpoint_layout import MODEL_FOLDER

ROOT = Path(__file__).resolve().parents[1]
HAS_NVIDIA = shutil.which("nvidia-smi") is not None


def doctor_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["doctor", "--json", *argv])
    report = json.loads(capsys.readouterr().out)
    return code, report


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_every_check_has_a_known_status_and_problems_carry_a_fix(capsys):
    _, report = doctor_json(capsys, "--backend", "flashtalk")
    names = [c["name"] for c in report["checks"]]
    assert names == ["python", "os", "packages", "gpu", "torch", "gpu memory", "models"]
    assert report["desktop_checks"] == "flashtalk-studio --doctor"
    for check in report["checks"]:
        assert check["status"] in ("ok", "warning", "problem")
        if check["status"] != "ok":
            assert check["fix"], check


def test_puppet_can_run_here_with_warnings_only(capsys):
    code, report = doctor_json(capsys)
    problems = [c for c in report["checks"] if c["status"] == "problem"]
    assert problems == [] and report["can_run"] is True and code == 0
    if not HAS_NVIDIA:
        assert "not needed by the puppet backend" in by_name(report)["gpu"]["detail"]


def test_flashtalk_without_model_cannot_run_and_says_how_to_get_one(capsys):
    code = main(["doctor", "--backend", "flashtalk"])
    out = capsys.readouterr().out
    assert code == 1
    assert "problem  models" in out
    assert "fix: flashtalk models download ~/models" in out
    assert out.rstrip().splitlines()[-1].startswith("no: ")


def test_flashtalk_without_gpu_is_a_problem_with_the_remote_fix(capsys):
    if HAS_NVIDIA:
        pytest.skip("this machine has an NVIDIA GPU")
    code, report = doctor_json(capsys, "--backend", "flashtalk")
    gpu = by_name(report)["gpu"]
    assert code == 1 and gpu["status"] == "problem"
    assert "GPU server" in gpu["fix"]


def test_bad_gpu_count_is_a_user_error(capsys):
    assert main(["doctor", "--gpus", "0"]) == 2
    assert "--gpus must be at least 1" in capsys.readouterr().err


def test_the_cli_entry_point_returns_the_verdict_as_exit_code():
    proc = subprocess.run([sys.executable, "-m", "engine", "doctor", "--backend", "flashtalk"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "flashtalk doctor: can the flashtalk backend run here?" in proc.stdout


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs the flashtalk extra")
def test_model_folder_is_validated(capsys, tmp_path):
    tiny = pytest.importorskip("engine.flashtalk.weights.tiny_checkpoint")
    empty = tmp_path / MODEL_FOLDER
    empty.mkdir()
    _, report = doctor_json(capsys, "--backend", "flashtalk", "--model", str(empty), "--device", "cpu")
    assert by_name(report)["models"]["status"] == "problem"
    model_dir, wav2vec_dir = tiny.make_tiny(tmp_path / "tiny", seed=0)
    code, report = doctor_json(capsys, "--backend", "flashtalk", "--model", str(model_dir),
                               "--wav2vec", str(wav2vec_dir), "--device", "cpu")
    checks = by_name(report)
    assert checks["models"]["status"] == "ok", checks["models"]
    assert checks["gpu"]["status"] == "ok" and "--device cpu" in checks["gpu"]["detail"]
    assert code == 0, [c for c in report["checks"] if c["status"] == "problem"]
    tiny_need = required_gpu_gib(DoctorSetup(backend="flashtalk", model_dir=model_dir,
                                             wav2vec_dir=wav2vec_dir))
    assert tiny_need < 2.0  # a tiny checkpoint's estimate comes from its files, not the 14B


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs the flashtalk extra")
def test_memory_plan_for_the_official_checkpoint(capsys):
    """The doctor prints the engine's own plan (runtime.memory_plan), measured within 2% on an H200."""
    full = required_gpu_gib(DoctorSetup(backend="flashtalk"))
    encoders = required_gpu_gib(DoctorSetup(backend="flashtalk", offload="encoders"))
    fp8_24gb = required_gpu_gib(DoctorSetup(backend="flashtalk", precision="fp8", offload="auto", gpu_memory_gb=22))
    assert 45 < full < 50 and 37 < encoders < 42 and fp8_24gb <= 22  # measured: 47.9, 39.6, 20.1 GiB
    # weights replicate on every card, tokens and frame bands split: the decode peak shrinks, umT5's visit not
    assert required_gpu_gib(DoctorSetup(backend="flashtalk", offload="encoders", gpus=8)) < encoders
    assert required_gpu_gib(DoctorSetup(backend="flashtalk", gpus=8)) == full
    _, report = doctor_json(capsys, "--backend", "flashtalk", "--precision", "fp8", "--offload", "auto",
                            "--gpu-memory", "22")
    detail = by_name(report)["gpu memory"]["detail"]
    assert f"predicted peak {fp8_24gb:.1f} GiB per card (fp8, --offload blocks" in detail
    _, report = doctor_json(capsys, "--backend", "flashtalk", "--gpu-memory", "3")
    check = by_name(report)["gpu memory"]
    assert check["status"] == "problem" and "below the" in check["detail"] and "--offload all" in check["detail"]


def test_the_report_points_at_the_studio_for_the_desktop_parts(capsys):
    assert main(["doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  microphone, virtual camera and microphone, text to speech, display: flashtalk-studio --doctor" in lines
