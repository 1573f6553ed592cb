"""One 14B-shaped training step on one GPU with random weights: Stage 1 and Stage 2 (DMD), timed.

Run on the device machine (full width 5120, 40 heads, ffn 13824; fewer layers so that teacher +
critic + generator and two AdamW states fit one card; several layer counts give the per-layer
slope, extrapolated to 40 layers):
    torchrun --standalone --nproc-per-node 1 scripts/gpu/train_step.py --layers 2,4 --out $OUT/train_step.json
CPU check of the same code path (tiny config, 64x64, 13 frames):
    python3 scripts/gpu/train_step.py --tiny --device cpu --layers 1,2 --out /tmp/train_step.json
Needs torch and diffusers (the DiT's base class); nothing else from the flashtalk extra (no av,
pyzmq, pyloudnorm, ftfy). The Stage 2 step is training.dmd_step.dmd_step itself with K = 1 (no
VAE between chunks): 4 generator forwards (one with autograd), the teacher's 3-branch CFG
forward, the critic's forward, the generator's backward, then one critic update.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.flashtalk.model.dit import FlashTalkDiT  # noqa: E402
from engine.flashtalk.pipeline.settings import StreamSettings  # noqa: E402
from engine.flashtalk.training.chunk_batch import RolloutBatch, dit_velocity  # noqa: E402
from engine.flashtalk.training.dmd_step import DMDNetworks, adam, dmd_step  # noqa: E402
from engine.flashtalk.training.flow_matching import flow_matching_loss, sample_sigmas  # noqa: E402
from engine.flashtalk.training.fsdp_setup import PRECISIONS, join_train_world, prepare_dit  # noqa: E402
from engine.flashtalk.training.rollout import GeneratorSchedule  # noqa: E402
from engine.flashtalk.training.train_config import DistillConfig  # noqa: E402

FULL_LAYERS = 40
# generator and critic: fp32 master + fp32 grad + AdamW's two fp32 moments; teacher: bf16 weights
STATE_BYTES_PER_PARAM = 2 * 16 + 2
CLIP_TOKENS, TEXT_LEN, AUDIO_WINDOW = 257, 512, 5
TINY_SETTINGS = StreamSettings(height=64, width=64, frame_num=13, motion_frames=5)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="JSON result path")
    p.add_argument("--layers", default="2,4", help="comma-separated layer counts to measure")
    p.add_argument("--tiny", action="store_true", help="the tiny config at 64x64 (CPU check)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", choices=list(PRECISIONS), help="default: bf16 on CUDA, fp32 on the CPU")
    p.add_argument("--no-activation-checkpointing", action="store_true")
    p.add_argument("--repeats", type=int, default=2, help="timed steps after one warm-up step")
    return p.parse_args()


def random_batch(config: dict, settings: StreamSettings, device: torch.device) -> RolloutBatch:
    """One chunk's worth of random conditions at the given geometry (batch 1, K = 1)."""
    f, (h, w) = settings.latent_frames, settings.latent_hw
    g = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=g).to(device)  # noqa: E731
    audio = rand(1, 1, settings.frame_num, AUDIO_WINDOW, config["audio_layers"], config["audio_dim"])
    return RolloutBatch(
        latents=rand(1, 1, 16, f, h, w), audio=audio, audio_rms=rand(1, 1, settings.frame_num).abs(),
        y=rand(1, 20, f, h, w), ref_latent=rand(1, 16, 1, h, w),
        reference=rand(1, 3, 1, settings.height, settings.width).clamp(-1, 1),
        clip=rand(1, CLIP_TOKENS, config["clip_dim"]), text=rand(1, TEXT_LEN, config["text_dim"]),
        null_text=torch.zeros(1, TEXT_LEN, config["text_dim"], device=device),
        first_chunk=False, motion_frames=settings.motion_frames)


def build(config: dict, world, precision: str, checkpointing: bool, trainable: bool) -> FlashTalkDiT:
    with torch.device(world.device):
        dit = FlashTalkDiT(**config)  # float32, PyTorch's default init
    dit = prepare_dit(dit, world, precision, checkpointing, trainable)
    dit.set_attention_backend(None, compute_dtype=PRECISIONS[precision])
    return dit


def timed(fn, device: torch.device, repeats: int) -> tuple[float, float]:
    """(median seconds of `repeats` calls after one warm-up, peak GB allocated)."""
    fn()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return sorted(times)[len(times) // 2], peak


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(layers: int, args, world, settings: StreamSettings, base: dict, precision: str) -> dict:
    config = {**base, "num_layers": layers}
    checkpointing = not args.no_activation_checkpointing
    teacher = build(config, world, precision, checkpointing, trainable=False)
    generator = build(config, world, precision, checkpointing, trainable=True)
    critic = build(config, world, precision, checkpointing, trainable=True)
    nets = DMDNetworks(teacher, generator, adam(generator.parameters(), 2e-6), critic,
                       adam(critic.parameters(), 4e-7))
    batch = random_batch(config, settings, world.device)
    schedule = GeneratorSchedule.for_settings(settings, world.device)
    distill = DistillConfig(critic_steps=1)
    rng = torch.Generator().manual_seed(1)
    sampler_rng = torch.Generator(device=world.device).manual_seed(2)
    params = sum(p.numel() for p in generator.parameters())

    def stage2() -> None:
        dmd_step(nets, None, batch, [schedule.steps - 1], settings, distill, schedule, rng, sampler_rng)

    def stage1() -> None:
        x0, motion = batch.latents[:, 0], batch.first_motion()
        sigma = sample_sigmas(1, settings.shift, rng).to(world.device)
        loss = flow_matching_loss(generator, x0, motion, batch.conditions(0), sigma, torch.randn_like(x0))
        nets.generator_opt.zero_grad(set_to_none=True)
        loss.backward()
        nets.generator_opt.step()

    @torch.no_grad()
    def forward() -> None:
        dit_velocity(generator, batch.latents[:, 0], schedule.t_steps[0], batch.conditions(0))

    forward_s, forward_gb = timed(forward, world.device, args.repeats)
    stage1_s, stage1_gb = timed(stage1, world.device, args.repeats)
    stage2_s, stage2_gb = timed(stage2, world.device, args.repeats)
    state_gb = params * STATE_BYTES_PER_PARAM / 2**30
    result = {"layers": layers, "params_per_network": params, "attention": {
                  "teacher": teacher.attention_backend, "generator": generator.attention_backend},
              "generator_forward_s": forward_s,
              "stage1_step_s": stage1_s, "stage2_step_s": stage2_s, "peak_gb_forward": forward_gb,
              "peak_gb_stage1": stage1_gb, "peak_gb_stage2": stage2_gb, "state_gb": state_gb,
              "activations_and_buffers_gb_stage2": stage2_gb - state_gb if stage2_gb else None}
    return result


def extrapolate(runs: list[dict], key: str) -> float | None:
    """Linear in the layer count from the first and last run, evaluated at 40 layers."""
    if len(runs) < 2 or runs[0][key] is None:
        return None
    a, b = runs[0], runs[-1]
    slope = (b[key] - a[key]) / (b["layers"] - a["layers"])
    return a[key] + slope * (FULL_LAYERS - a["layers"])


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    world = join_train_world(args.device, precision)
    base = FlashTalkDiT.tiny_config() if args.tiny else FlashTalkDiT.official_config()
    settings = TINY_SETTINGS if args.tiny else StreamSettings()
    runs = []
    for layers in args.layers.split(","):
        runs.append(measure(int(layers), args, world, settings, base, precision))
        gc.collect()  # the last run's networks and optimizer states
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "precision": precision, "fsdp_world": world.world_size,
        "activation_checkpointing": not args.no_activation_checkpointing,
        "geometry": {"height": settings.height, "width": settings.width, "frame_num": settings.frame_num,
                     "tokens": settings.tokens},
        "runs": runs,
        "extrapolated_40_layers": {k: extrapolate(runs, k) for k in
                                   ("params_per_network", "generator_forward_s", "stage1_step_s", "stage2_step_s",
                                    "peak_gb_stage2", "activations_and_buffers_gb_stage2")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
