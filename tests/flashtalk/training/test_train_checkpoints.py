"""Checkpoints: exact resume, no lost checkpoint on a failed write, one-line errors for the wrong
model, and exported students that the real `flashtalk render` path loads and runs."""
from __future__ import annotations

import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

import torch.distributed.checkpoint as dcp  # noqa: E402

from avkit.mp4_writer import probe_mp4  # noqa: E402
from engine.flashtalk.model.dit import FlashTalkDiT  # noqa: E402
from engine.flashtalk.training.checkpoint_io import STATE_DIR, latest_checkpoint  # noqa: E402
from engine.flashtalk.training.distill import distill  # noqa: E402
from engine.flashtalk.training.fsdp_setup import join_train_world  # noqa: E402
from engine.flashtalk.training.stage1 import train_stage1  # noqa: E402
from engine.flashtalk.training.train_config import DistillConfig, Stage1Config  # noqa: E402
from engine.flashtalk.training.training_run import RunOptions  # noqa: E402
from engine.flashtalk.weights.dit_loader import load_dit  # noqa: E402
from engine.flashtalk.weights.dit_writer import write_dit  # noqa: E402
from engine.flashtalk.weights.tiny_checkpoint import MODEL_FOLDER, WAV2VEC_FOLDER  # noqa: E402
from engine.flashtalk.weights.tiny_encoders import random_state_dict  # noqa: E402
from tests.conftest import ASSETS, ROOT  # noqa: E402
from tests.flashtalk.cli_in_process import flashtalk_in_process  # noqa: E402

STAGE1 = Stage1Config(steps=4, batch=2, lr=1e-3, checkpoint_every=2, log_every=1)
FILE_LIMIT = 1_000_000  # bytes: the tiny DiT's training state (weights + AdamW) is ~3 MB


def _options(run_dir, **kw):
    return RunOptions(run_dir, device="cpu", export_dtype="fp32", progress=False, **kw)


def _weights(model_dir):
    return load_dit(model_dir, "cpu", torch.float32).state_dict()


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, tiny_model, cache):
    world = join_train_world("cpu", "fp32")
    clips = list(range(len(cache)))
    straight = train_stage1(cache, clips, *tiny_model, STAGE1, _options(tmp_path / "a"), world)
    train_stage1(cache, clips, *tiny_model, replace(STAGE1, steps=2), _options(tmp_path / "b"), world)
    resumed = train_stage1(cache, clips, *tiny_model, STAGE1, _options(tmp_path / "b", resume=True), world)
    assert resumed.checkpoint.name == "step-000004" and len(resumed.history["loss"]) == 4
    _assert_same(_weights(straight.model_dir), _weights(resumed.model_dir))
    trained, initial = _weights(straight.model_dir), _weights(tiny_model[0])
    assert not torch.equal(trained["head.head.weight"], initial["head.head.weight"])


def _stage1_args(tiny_model, cache, run_dir, *extra) -> list[str]:
    return ["train", "stage1", "--data", str(cache.root), "--init", str(tiny_model[0]), "--out", str(run_dir),
            "--batch", "2", "--device", "cpu", "--export-dtype", "fp32", "--quiet", *extra]


def _stage1_cli(tiny_model, cache, run_dir, *extra, preexec=None):
    return subprocess.run([sys.executable, "-m", "engine", *_stage1_args(tiny_model, cache, run_dir, *extra)],
                          capture_output=True, text=True, cwd=ROOT, timeout=900, preexec_fn=preexec)


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


def _one_line(result, expected: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    return lines[0]


def test_a_checkpoint_that_cannot_be_written_loses_nothing(tmp_path, tiny_model, cache, capfd):
    """The run that fails is a real process (its file size is capped); the two around it run the
    CLI's own `main` in-process."""
    run = tmp_path / "run"
    assert flashtalk_in_process(capfd, *_stage1_args(tiny_model, cache, run, "--steps", "2")).returncode == 0
    first = latest_checkpoint(run)
    before = _weights(first / MODEL_FOLDER)
    failed = _stage1_cli(tiny_model, cache, run, "--steps", "4", "--resume", preexec=_limit_file_size)
    line = _one_line(failed, "could not write")
    assert "step-000002 is kept" in line
    assert latest_checkpoint(run) == first and not list((run / "checkpoints").glob(".*"))
    _assert_same(before, _weights(first / MODEL_FOLDER))  # still whole and loadable
    resumed = flashtalk_in_process(capfd, *_stage1_args(tiny_model, cache, run, "--steps", "4", "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["step-000002", "step-000004"]


def _other_model(tmp_path, tiny_model, **overrides):
    """The tiny checkpoint's encoders with a DiT of another shape."""
    root = tmp_path / "other"
    shutil.copytree(tiny_model[0], root / MODEL_FOLDER)
    shutil.copytree(tiny_model[1], root / WAV2VEC_FOLDER)
    for shard in (root / MODEL_FOLDER).glob("diffusion_pytorch_model*"):
        shard.unlink()
    config = {**FlashTalkDiT.tiny_config(), **overrides}
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in FlashTalkDiT.from_config(config).state_dict().items()}
    write_dit(root / MODEL_FOLDER, config, random_state_dict(shapes, 0), torch.float32)
    return root / MODEL_FOLDER


def test_the_wrong_model_is_a_one_line_error(tmp_path, tiny_model, cache, capfd):
    """Through the CLI's own `main` in-process (the real process's one-line error is the test above)."""
    run = tmp_path / "run"
    assert flashtalk_in_process(capfd, *_stage1_args(tiny_model, cache, run, "--steps", "2")).returncode == 0
    wider_ffn = _other_model(tmp_path, tiny_model, ffn_dim=96)
    resumed = flashtalk_in_process(capfd, "train", "stage1", "--data", str(cache.root), "--init", str(wider_ffn),
                                   "--out", str(run), "--steps", "4", "--resume", "--device", "cpu", "--quiet")
    _one_line(resumed, "does not fit this run's model")
    shutil.rmtree(tmp_path / "other")
    narrow_text = _other_model(tmp_path, tiny_model, text_dim=32)
    started = flashtalk_in_process(capfd, "train", "stage1", "--data", str(cache.root), "--init", str(narrow_text),
                                   "--out", str(tmp_path / "new"), "--device", "cpu", "--quiet")
    _one_line(started, "text_dim is 32 but the data cache has 64")


def test_a_distilled_student_renders_through_flashtalk_render(tmp_path, tiny_model, cache, capfd):
    world = join_train_world("cpu", "fp32")
    clips = list(range(len(cache)))
    teacher = train_stage1(cache, clips, *tiny_model, replace(STAGE1, steps=2), _options(tmp_path / "t"), world)
    config = DistillConfig(steps=2, batch=1, rollout_chunks=2, generator_lr=1e-3, critic_lr=1e-3, checkpoint_every=2)
    student = distill(cache, clips, teacher.model_dir, tiny_model[1], config, _options(tmp_path / "s"), world)
    assert {"dmd_loss", "critic_loss", "real_fake_gap"} <= student.history.keys()
    exported = _weights(student.model_dir)
    saved = {"generator": {"model": {k: torch.empty_like(v) for k, v in exported.items()}}}
    dcp.load(saved, checkpoint_id=str(student.checkpoint / STATE_DIR), no_dist=True)
    _assert_same(exported, saved["generator"]["model"])  # the export is the trained generator
    assert not torch.equal(exported["head.head.weight"], _weights(teacher.model_dir)["head.head.weight"])
    speech = tmp_path / "speech.wav"
    subprocess.run(["sox", str(ASSETS / "speech.wav"), str(speech), "trim", "0", "1.5"], check=True)
    out = tmp_path / "student.mp4"
    # `flashtalk render`'s own `main`, in-process (tests/flashtalk/test_streaming_pipeline.py runs the real process)
    result = flashtalk_in_process(capfd, "render", "--quiet", "--backend", "flashtalk", "--model",
                                  str(student.model_dir), "--device", "cpu", "--precision", "fp32", "--size", "64x64",
                                  "--audio", str(speech), "--out", str(out))
    assert result.returncode == 0, result.stderr
    info = probe_mp4(out)
    assert (info.width, info.height) == (64, 64) and info.video_frames == 38
