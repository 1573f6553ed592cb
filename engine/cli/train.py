"""`flashtalk train`: data | stage1 | distill | toy - training the FlashTalk DiT.

    flashtalk train data --clips DIR|MANIFEST.jsonl --model MODEL_DIR --out DATA
    flashtalk train data --synthetic N --model MODEL_DIR --out DATA      (puppet clips, no download)
    flashtalk train stage1 --data DATA --init MODEL_DIR --out RUN        (flow matching; the teacher)
    flashtalk train distill --data DATA --teacher MODEL_DIR --out RUN --rollout-chunks K
    flashtalk train toy --out DIR                                        (all of it at toy scale, CPU)
Multi-GPU: `torchrun --nproc-per-node 8 -m engine train stage1 ... --precision bf16` (FSDP2).
Checkpoints land in RUN/checkpoints/step-N/SoulX-FlashTalk-14B, loadable by `flashtalk serve --model`.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from avkit.disk_space import DiskFullError, is_disk_full
from engine.cli.common import UserError, parse_size
from engine.flashtalk.weights.checkpoint_layout import MODEL_FOLDER, WAV2VEC_FOLDER

TOY_SIZE = 64  # pixels, square
DATA_DEFAULTS = {"size": f"{TOY_SIZE}x{TOY_SIZE}", "frame_num": 13, "motion_frames": 5}  # the toy geometry
SYNTHETIC_SECONDS = 7.0  # long enough for a 20-chunk evaluation rollout of 8 new frames per chunk


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train the FlashTalk DiT (data, stage1, distill, toy)")
    tsub = p.add_subparsers(dest="train_command", required=True)
    _add_data(tsub)
    _add_stage1(tsub)
    _add_distill(tsub)
    _add_toy(tsub)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wav2vec", type=Path, help=f"{WAV2VEC_FOLDER} folder (default: beside the model)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="a cache made by `flashtalk train data`")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, log.jsonl)")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int, help="per rank")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: FSDP2 mixed precision (float32 master weights), for GPUs")
    p.add_argument("--activation-checkpointing", action="store_true", help="recompute each block in backward")
    p.add_argument("--export-dtype", choices=["bf16", "fp32"], default="bf16", help="dtype of exported shards")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--seed", type=int)
    _add_common(p)


def _add_data(tsub) -> None:
    p = tsub.add_parser("data", help="preprocess clips into cached latents and embeddings")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--clips", type=Path, help="a folder of talking-head .mp4 clips, or a .jsonl manifest")
    source.add_argument("--synthetic", type=int, metavar="N", help="render N puppet clips into OUT/clips first")
    p.add_argument("--model", type=Path, required=True, help=f"{MODEL_FOLDER} folder (its encoders and VAE)")
    p.add_argument("--out", type=Path, required=True, help="cache folder (resumable)")
    p.add_argument("--size", default=DATA_DEFAULTS["size"], help="WIDTHxHEIGHT of the training chunks")
    p.add_argument("--frame-num", type=int, default=DATA_DEFAULTS["frame_num"], help="frames per chunk (4k+1)")
    p.add_argument("--motion-frames", type=int, default=DATA_DEFAULTS["motion_frames"])
    p.add_argument("--seconds", type=float, default=SYNTHETIC_SECONDS, help="length of each synthetic clip")
    _add_common(p)
    p.set_defaults(run=run_data)


def _add_stage1(tsub) -> None:
    p = tsub.add_parser("stage1", help="Stage 1: flow-matching fine-tuning at the chunk geometry")
    p.add_argument("--init", type=Path, required=True, help=f"{MODEL_FOLDER}-layout folder to start from")
    p.add_argument("--lr", type=float)
    _add_run(p)
    p.set_defaults(run=run_stage1)


def _add_distill(tsub) -> None:
    p = tsub.add_parser("distill", help="Stage 2: self-correcting DMD distillation into the 4-step sampler")
    p.add_argument("--teacher", type=Path, required=True, help="the Stage 1 model folder")
    p.add_argument("--rollout-chunks", type=int, help="K: chunks rolled out on the generator's own motion")
    p.add_argument("--generator-lr", type=float)
    p.add_argument("--critic-lr", type=float)
    p.add_argument("--critic-steps", type=int, help="critic updates per generator update")
    p.add_argument("--text-guidance", type=float)
    p.add_argument("--audio-guidance", type=float)
    _add_run(p)
    p.set_defaults(run=run_distill)


def _add_toy(tsub) -> None:
    p = tsub.add_parser("toy", help="data -> teacher -> distillation (K=1, K=3) -> evaluation on the CPU")
    p.add_argument("--out", type=Path, required=True, help="folder for everything; metrics.json at its top")
    p.add_argument("--clips", type=int, default=16, help="synthetic clips (the last quarter is held out)")
    p.add_argument("--stage1-steps", type=int)
    p.add_argument("--distill-steps", type=int)
    p.add_argument("--eval-chunks", type=int, help="chunks per evaluation rollout (default 20)")
    p.add_argument("--reference-steps", type=int, help="steps of the teacher's reference sampler (default 32)")
    p.add_argument("--seconds", type=float, default=SYNTHETIC_SECONDS,
                   help="length of each synthetic clip (the evaluation rollouts need eval-chunks x 0.32 s + 0.2 s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run_toy)


# -- runs ------------------------------------------------------------------------------------------

def _require_training() -> None:
    """A one-line error when the packages training needs (the flashtalk extra) are missing."""
    try:
        import engine.flashtalk.training.latent_cache  # noqa: F401 - imports torch, safetensors, av
    except ImportError as exc:
        raise UserError(f"training needs the flashtalk extra ({exc.name} missing): "
                        "pip install 'flashtalk-studio[flashtalk]'") from None


def _user_errors():
    """The exception types training raises for input a person can fix."""
    from engine.flashtalk.training.clip_source import DatasetError
    from engine.flashtalk.weights.checkpoint_validation import CheckpointError
    return DatasetError, CheckpointError


def _wav2vec(args: argparse.Namespace, model_dir: Path) -> Path:
    from engine.flashtalk.weights.tiny_checkpoint import WAV2VEC_FOLDER
    return args.wav2vec or Path(model_dir).parent / WAV2VEC_FOLDER


def run_data(args: argparse.Namespace) -> int:
    _require_training()
    import torch

    from engine.flashtalk.pipeline.settings import StreamSettings
    from engine.flashtalk.training.clip_source import list_clip_sources, probe_clip
    from engine.flashtalk.training.condition_encoders import ConditionEncoders
    from engine.flashtalk.training.latent_cache import build_cache
    width, height = parse_size(args.size)
    try:
        settings = StreamSettings(height=height, width=width, frame_num=args.frame_num,
                                  motion_frames=args.motion_frames).validate()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    source = args.clips
    if args.synthetic is not None:
        source = _render_synthetic(args.synthetic, args.out / "clips", width, height, args.seconds, args.quiet)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        clips = list_clip_sources(source)
        for clip in clips:  # every clip checked before minutes go into loading and encoding
            probe_clip(clip)
        encoders = ConditionEncoders.from_model_dir(args.model, _wav2vec(args, args.model), device, dtype)
        shards = build_cache(clips, encoders, settings, args.out, progress=not args.quiet)
    except _user_errors() as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {len(shards)} preprocessed clips to {args.out}")
    return 0


def _render_synthetic(count: int, out_dir: Path, width: int | None, height: int | None, seconds: float,
                      quiet: bool) -> Path:
    from engine.cli.synthetic_clips import SyntheticSpec, make_synthetic_clips
    if count < 1:
        raise UserError("--synthetic needs at least 1 clip")
    make_synthetic_clips(out_dir, SyntheticSpec(count, width or TOY_SIZE, height or TOY_SIZE, seconds),
                         progress=not quiet)
    return out_dir


def _run_options(args: argparse.Namespace):
    from engine.flashtalk.training.training_run import RunOptions
    return RunOptions(args.out, device=args.device, precision=args.precision,
                      activation_checkpointing=args.activation_checkpointing, resume=args.resume,
                      export_dtype=args.export_dtype, progress=not args.quiet)


def _overrides(args: argparse.Namespace, names: dict[str, str]) -> dict:
    """Config fields given on the command line (option attribute -> config field)."""
    values = {field: getattr(args, attr) for attr, field in names.items() if getattr(args, attr) is not None}
    for field, value in values.items():
        if isinstance(value, int | float) and value <= 0 and field != "seed":
            raise UserError(f"--{field.replace('_', '-')} must be positive, got {value}")
    return values


def _train(args: argparse.Namespace, model_dir: Path, stage) -> int:
    """Open the cache, join the world, run `stage(cache, clips, world)`; one-line errors."""
    from engine.flashtalk.training.fsdp_setup import join_train_world, leave_train_world
    from engine.flashtalk.training.latent_cache import LatentCache
    if not Path(model_dir).is_dir():
        raise UserError(f"{model_dir}: model folder not found")
    try:
        cache = LatentCache(args.data)
        world = join_train_world(args.device, args.precision)
    except (*_user_errors(), ValueError) as exc:
        raise UserError(str(exc)) from None
    finished = False
    try:
        result = stage(cache, list(range(len(cache))), world)
        finished = True
    except (*_user_errors(), ValueError) as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise UserError(str(DiskFullError(exc.errno, exc.filename or args.out))) from None
    finally:
        leave_train_world(finished)
    if world.is_leader:
        print(f"wrote {result.model_dir} (serve it with `flashtalk serve --backend flashtalk --model "
              f"{result.model_dir}`)")
    return 0


def run_stage1(args: argparse.Namespace) -> int:
    _require_training()
    from engine.flashtalk.training.stage1 import train_stage1
    from engine.flashtalk.training.train_config import Stage1Config
    config = replace(Stage1Config(), **_overrides(args, {"steps": "steps", "batch": "batch", "lr": "lr",
                                                         "seed": "seed"}))
    options = _run_options(args)
    return _train(args, args.init, lambda cache, clips, world: train_stage1(
        cache, clips, args.init, _wav2vec(args, args.init), config, options, world))


def run_distill(args: argparse.Namespace) -> int:
    _require_training()
    from engine.flashtalk.training.distill import distill
    from engine.flashtalk.training.train_config import DistillConfig, Guidance
    config = replace(DistillConfig(), **_overrides(args, {
        "steps": "steps", "batch": "batch", "rollout_chunks": "rollout_chunks", "generator_lr": "generator_lr",
        "critic_lr": "critic_lr", "critic_steps": "critic_steps", "seed": "seed"}))
    guidance = Guidance()
    config = replace(config, guidance=Guidance(args.text_guidance or guidance.text,
                                               args.audio_guidance or guidance.audio))
    options = _run_options(args)
    return _train(args, args.teacher, lambda cache, clips, world: distill(
        cache, clips, args.teacher, _wav2vec(args, args.teacher), config, options, world))


def run_toy(args: argparse.Namespace) -> int:
    _require_training()
    from engine.flashtalk.training.toy_run import ToyPlan, run_toy
    plan = ToyPlan()
    if args.stage1_steps:
        plan = replace(plan, stage1=replace(plan.stage1, steps=args.stage1_steps,
                                            checkpoint_every=min(plan.stage1.checkpoint_every, args.stage1_steps)))
    if args.distill_steps:
        plan = replace(plan, distill=replace(plan.distill, steps=args.distill_steps,
                                             checkpoint_every=min(plan.distill.checkpoint_every, args.distill_steps)))
    if args.eval_chunks:
        plan = replace(plan, evaluation=replace(plan.evaluation, rollout_chunks=args.eval_chunks))
    if args.reference_steps:
        plan = replace(plan, evaluation=replace(plan.evaluation, reference_steps=args.reference_steps))
    clips = _render_synthetic(args.clips, args.out / "clips", TOY_SIZE, TOY_SIZE, args.seconds, args.quiet)
    try:
        metrics = run_toy(clips, args.out, plan, progress=not args.quiet)
    except (*_user_errors(), ValueError) as exc:
        raise UserError(str(exc)) from None
    summary = {k: v for k, v in metrics.items() if isinstance(v, float)}
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out / 'metrics.json'}", file=sys.stderr)
    return 0
