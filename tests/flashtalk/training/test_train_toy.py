"""`flashtalk train toy` end to end (a minimal smoke run; the documented run is `slow`), and the GPU
training-step script on the CPU with the tiny config."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from tests.conftest import ROOT  # noqa: E402
from tests.flashtalk.cli_in_process import flashtalk_in_process  # noqa: E402

METRIC_KEYS = {"teacher_loss_first", "teacher_loss_last", "fd_teacher_4step", "fd_student_4step", "fd_data",
               "drift_k1", "drift_k3", "drift_teacher_4step", "lipsync_data", "lipsync_k1", "lipsync_k3",
               "lipsync_teacher_4step"}


def _toy(out, *extra, timeout=900):
    return subprocess.run([sys.executable, "-m", "engine", "train", "toy", "--out", str(out), "--quiet", *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


SMOKE = ("--clips", "4", "--seconds", "1.2", "--stage1-steps", "4", "--distill-steps", "1", "--eval-chunks", "2",
         "--reference-steps", "2")


def _check_metrics(out) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= metrics.keys()
    assert all(math.isfinite(metrics[k]) for k in METRIC_KEYS)
    for k in ("k1", "k3", "teacher_4step"):
        assert len(metrics[f"drift_{k}_per_chunk"]) == metrics["plan"]["evaluation"]["rollout_chunks"]
    for name, folder in metrics["checkpoints"].items():
        assert (Path(folder) / "config.json").is_file(), name
    return metrics


def test_toy_pipeline_smoke(tmp_path, capfd):
    out = tmp_path / "toy"
    result = _toy(out, *SMOKE)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = _check_metrics(out)
    assert metrics["clips"] == {"train": 3, "eval": 1}
    # every stage is done: it re-evaluates only (the CLI's own `main` in-process: no second torch import)
    again = flashtalk_in_process(capfd, "train", "toy", "--out", str(out), "--quiet", *SMOKE)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["teacher_loss_first"] == metrics["teacher_loss_first"]


@pytest.mark.slow
def test_the_documented_toy_run(tmp_path):
    """The run docs/training.md reports: what it measures, not whether the expectations held."""
    out = tmp_path / "toy"
    result = _toy(out, timeout=3600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = _check_metrics(out)
    assert metrics["teacher_loss_last"] < metrics["teacher_loss_first"]


def test_the_gpu_training_step_script_runs_on_the_cpu(tmp_path):
    out = tmp_path / "step.json"
    result = subprocess.run([sys.executable, "scripts/gpu/train_step.py", "--tiny", "--device", "cpu", "--layers",
                             "1,2", "--repeats", "1", "--out", str(out)], capture_output=True, text=True, cwd=ROOT,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [r["layers"] for r in report["runs"]] == [1, 2]
    for run in report["runs"]:
        assert run["stage2_step_s"] > 0 and run["generator_forward_s"] > 0  # not compared: load reorders them
    extrapolated = report["extrapolated_40_layers"]
    assert extrapolated["params_per_network"] > report["runs"][-1]["params_per_network"]
