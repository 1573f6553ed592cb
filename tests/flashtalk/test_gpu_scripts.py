"""The GPU measurement scripts run their whole procedure on the CPU (tiny sizes, uncompiled), so a
change elsewhere that breaks one shows here and not on the GPU machine, where time is scarce."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from engine.flashtalk.model.fp8_linear import BLOCK_LINEARS  # noqa: E402
from tests.conftest import ROOT  # noqa: E402


def _run(script: str, *args: str) -> None:
    result = subprocess.run([sys.executable, f"scripts/gpu/{script}", "--tiny", "--device", "cpu", "--eager",
                             "--repeats", "1", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_fp8_check_compares_bf16_and_fp8_step_by_step(tmp_path):
    _run("fp8_check.py", "--out", str(tmp_path))
    report = json.loads((tmp_path / "fp8_check.json").read_text())
    assert report["compiled"] is False and report["fp8_linears"] > 0
    assert report["bf16"]["final_latents_rel_err"] == 0 and report["bf16_eager"]["final_latents_rel_err"] == 0
    fp8 = report["fp8"]
    assert len(fp8["step_velocity_rel_err"]) == report["steps"]
    assert all(0 < err < 0.2 for err in fp8["step_velocity_rel_err"])  # quantised, and close
    assert 0 < fp8["final_latents_rel_err"] < 0.2
    assert fp8["dit_weights_gb"] < report["bf16"]["dit_weights_gb"]


def test_block_check_times_and_compares_the_four_block_variants(tmp_path):
    out = tmp_path / "block_check.json"
    _run("block_check.py", "--out", str(out))
    report = json.loads(out.read_text())
    variants = report["variants"]
    assert list(variants) == ["bf16", "fp8_dynamic", "fp8_shared", "fp8_static"]
    assert report["static_layers"] == len(BLOCK_LINEARS)  # every tiny block linear fits the FP8 kernel
    assert variants["bf16"]["rel_err_vs_bf16"] == 0
    for name in ("fp8_dynamic", "fp8_shared", "fp8_static"):
        assert 0 < variants[name]["rel_err_vs_bf16"] < 0.1, name
    # The shared q/k/v quantisation computes what three separate ones do.
    shared, dynamic = variants["fp8_shared"]["rel_err_vs_bf16"], variants["fp8_dynamic"]["rel_err_vs_bf16"]
    assert shared == pytest.approx(dynamic, rel=0.05)
    assert all(v["block_ms"] > 0 for v in variants.values())
