"""The whole method at toy scale on a CPU: data -> teacher -> distillation (K = 1, K = 3) -> evaluation.

Model: the tiny FlashTalk config (2 layers, width 64, tiny random encoders and VAE) in the
official layout; chunks of 13 frames at 64x64 (4 latent frames of 8x8: 2 motion + 2 new), 4
steps at shift 5 as in serving. Stage 1 trains the teacher from random weights; Stage 2 distils
it twice, with K = 1 and with K = 3 rollout chunks; everything is evaluated on held-out clips
and written to metrics.json (docs/training.md explains every number). fp32 throughout: bf16
matmuls are ~13x slower on these CPUs.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from engine.flashtalk.model.vae import WanVAE
from engine.flashtalk.pipeline.settings import StreamSettings
from engine.flashtalk.training.clip_source import list_clip_sources
from engine.flashtalk.training.condition_encoders import ConditionEncoders
from engine.flashtalk.training.distill import distill
from engine.flashtalk.training.evaluation import EvalConfig, Evaluator
from engine.flashtalk.training.fsdp_setup import TrainWorld, join_train_world
from engine.flashtalk.training.latent_cache import LatentCache, build_cache
from engine.flashtalk.training.stage1 import train_stage1
from engine.flashtalk.training.train_config import DistillConfig, Guidance, Stage1Config
from engine.flashtalk.training.training_run import RunOptions
from engine.flashtalk.weights.checkpoint_layout import VAE_CHECKPOINT
from engine.flashtalk.weights.dit_loader import load_dit
from engine.flashtalk.weights.tiny_checkpoint import MODEL_FOLDER, WAV2VEC_FOLDER, make_tiny

TOY_SETTINGS = StreamSettings(height=64, width=64, frame_num=13, motion_frames=5)
METRICS_FILE = "metrics.json"
LOSS_WINDOW_SHARE = 0.05  # teacher_loss_first/last: mean over the first / last 5% of steps


@dataclass(frozen=True)
class ToyPlan:
    """Sizes of the toy run; the defaults are the documented run (docs/training.md)."""

    eval_share: float = 0.25  # the last quarter of the clips is held out for evaluation
    stage1: Stage1Config = field(default_factory=lambda: Stage1Config(
        steps=1200, batch=8, lr=1e-3, first_chunk_share=0.1, checkpoint_every=600, log_every=25))
    distill: DistillConfig = field(default_factory=lambda: DistillConfig(
        steps=100, batch=2, generator_lr=3e-5, critic_lr=1e-4, critic_steps=2, guidance=Guidance(3.0, 4.0),
        checkpoint_every=100, log_every=10))
    rollout_chunks: tuple[int, ...] = (1, 3)
    evaluation: EvalConfig = field(default_factory=lambda: EvalConfig(rollout_draws=1))
    threads: int = 1  # tiny ops gain little from a second thread, and spinning threads collapse on a busy CPU
    seed: int = 0


def split_clips(count: int, eval_share: float) -> tuple[list[int], list[int]]:
    held_out = max(1, round(count * eval_share))
    if held_out >= count:
        raise ValueError(f"{count} clips are too few to hold {held_out} out for evaluation: make more clips")
    return list(range(count - held_out)), list(range(count - held_out, count))


def _write_json_atomically(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(value, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def run_toy(clips_dir: Path, out_dir: Path, plan: ToyPlan = ToyPlan(), progress: bool = True) -> dict:
    """Every stage into out_dir (resumable stage by stage); -> the metrics, also in out_dir/metrics.json."""
    out_dir = Path(out_dir)
    torch.manual_seed(plan.seed)
    torch.set_num_threads(plan.threads)
    world = join_train_world("cpu", "fp32")
    timings: dict[str, dict[str, float]] = {"wall_s": {}, "cpu_s": {}}  # cpu: this process, all threads
    clock = (time.perf_counter(), time.process_time())

    def lap(name: str) -> None:
        nonlocal clock
        now = (time.perf_counter(), time.process_time())
        timings["wall_s"][name] = round(now[0] - clock[0], 1)
        timings["cpu_s"][name] = round(now[1] - clock[1], 1)
        clock = now

    base = out_dir / "base"
    if not (base / MODEL_FOLDER / "config.json").is_file():
        make_tiny(base, seed=plan.seed)
    model_dir, wav2vec_dir = base / MODEL_FOLDER, base / WAV2VEC_FOLDER
    encoders = ConditionEncoders.from_model_dir(model_dir, wav2vec_dir, world.device, torch.float32)
    build_cache(list_clip_sources(clips_dir), encoders, TOY_SETTINGS, out_dir / "data", progress)
    del encoders
    cache = LatentCache(out_dir / "data")
    train_clips, eval_clips = split_clips(len(cache), plan.eval_share)
    lap("data")

    options = lambda name: RunOptions(out_dir / name, device="cpu", export_dtype="fp32",  # noqa: E731
                                      resume=True, progress=progress)
    teacher = train_stage1(cache, train_clips, model_dir, wav2vec_dir, plan.stage1, options("teacher"), world)
    lap("teacher")
    students = {}
    for k in plan.rollout_chunks:
        config = replace(plan.distill, rollout_chunks=k)
        students[k] = distill(cache, train_clips, teacher.model_dir, wav2vec_dir, config, options(f"student_k{k}"),
                              world)
        lap(f"distill_k{k}")
    metrics = evaluate_toy(cache, train_clips, eval_clips, teacher.model_dir,
                           {k: s.model_dir for k, s in students.items()}, plan, world)
    lap("evaluation")
    for kind in timings.values():
        kind["total"] = round(sum(kind.values()), 1)
    metrics.update(_losses(teacher.history, students), timings=timings, plan=asdict(plan),
                   settings={k: getattr(TOY_SETTINGS, k) for k in ("height", "width", "frame_num", "motion_frames",
                                                                   "steps", "shift")},
                   clips={"train": len(train_clips), "eval": len(eval_clips)},
                   checkpoints={"teacher": str(teacher.model_dir),
                                **{f"student_k{k}": str(s.model_dir) for k, s in students.items()}})
    _write_json_atomically(out_dir / METRICS_FILE, metrics)
    return metrics


def _losses(teacher_history: dict, students: dict) -> dict:
    losses = teacher_history.get("loss", [])
    window = max(1, int(len(losses) * LOSS_WINDOW_SHARE))
    out = {}
    if losses:
        out["teacher_loss_first"] = sum(losses[:window]) / window
        out["teacher_loss_last"] = sum(losses[-window:]) / window
    for k, student in students.items():
        gaps = student.history.get("real_fake_gap", [])
        if gaps:
            w = max(1, int(len(gaps) * LOSS_WINDOW_SHARE))
            out[f"student_k{k}_real_fake_gap_first"] = sum(gaps[:w]) / w
            out[f"student_k{k}_real_fake_gap_last"] = sum(gaps[-w:]) / w
    return out


def evaluate_toy(cache: LatentCache, train_clips: list[int], eval_clips: list[int], teacher_dir: Path,
                 student_dirs: dict[int, Path], plan: ToyPlan, world: TrainWorld) -> dict:
    """Load the exported checkpoints through the serving loader and measure them."""
    device = world.device
    teacher = load_dit(teacher_dir, device, torch.float32)
    vae = WanVAE.from_official(teacher_dir / VAE_CHECKPOINT, device=device, dtype=torch.float32)
    guidance = plan.distill.guidance
    evaluator = Evaluator(cache, train_clips, eval_clips, teacher, vae, guidance, plan.evaluation, device)
    metrics = {"fd_feature_space": "VAE latents: each emitted latent frame average-pooled to 2x2 (64 dims)",
               "fd_reference": f"teacher, {plan.evaluation.reference_steps}-step CFG Euler sampler",
               "fd_data": evaluator.fd_to_reference(evaluator.chunks.latents[:, 0]),
               "fd_reference_halves": evaluator.reference_halves_fd(),
               "fd_teacher_4step": evaluator.fd_to_reference(evaluator.teacher_samples(4)),
               "fd_teacher_4step_streaming_sampler": evaluator.fd_to_reference(
                   evaluator.streaming_samples(evaluator.teacher_velocity(), 0)),
               "fd_generator_init": evaluator.fd_to_reference(  # the student before Stage 2: no CFG
                   evaluator.streaming_samples(evaluator.velocity(teacher), 0)),
               "lipsync_data": evaluator.data_lipsync()}
    sessions = {"data": {"drift_per_chunk": evaluator.data_drift(), "lipsync": metrics["lipsync_data"]},
                "teacher_4step": evaluator.session_rollout(evaluator.teacher_velocity(), 1)}
    for k, student_dir in student_dirs.items():
        student = load_dit(student_dir, device, torch.float32)
        velocity = evaluator.velocity(student)
        metrics[f"fd_student_k{k}_4step"] = evaluator.fd_to_reference(evaluator.streaming_samples(velocity, 0))
        sessions[f"k{k}"] = evaluator.session_rollout(velocity, 1)
    last_k = max(student_dirs)
    metrics["fd_student_4step"] = metrics[f"fd_student_k{last_k}_4step"]
    for name, result in sessions.items():
        per_chunk = result["drift_per_chunk"]
        metrics[f"drift_{name}"] = sum(per_chunk) / len(per_chunk)
        metrics[f"drift_{name}_per_chunk"] = per_chunk
        metrics[f"lipsync_{name}"] = result["lipsync"]
    return metrics
