"""The GPU memory plan of one FlashTalk engine: where each network lives, and the peak that follows.

Offload levels, each offloading what the one before it does, and more:
- none: every network stays on the GPU except umT5 (11 GB), which waits on the CPU and visits the
  GPU whole for a prompt it has not seen (prompt embeddings are cached per engine).
- encoders: umT5 and CLIP wait on the CPU; umT5 visits one layer at a time, CLIP whole, and only
  while a session is prepared. Nothing moves while chunks stream.
- blocks: DiT blocks also stream from pinned host memory through two device slots (the next one
  is copied while the current one computes). With a budget only as many stream as it needs,
  spread evenly over the blocks; without one, all of them.
- all: every DiT block streams, and the VAE and wav2vec2 also visit the GPU per call. The DiT's
  embeddings and head (0.6 GB, used by every step) stay.
`auto` takes the first level that fits the budget.

The predicted peak (what torch.cuda.max_memory_allocated reports) is the largest, over the phases
of a session, of: the resident weights, what visits the GPU in that phase, and that phase's working
memory (activations, kernel workspaces). Weights are counted from the modules themselves
(module_sizes.py). Working memory per phase was measured on one H200 (docs/perf-notes.md,
2026-12-01) and is kept here per token (DiT) or per pixel (VAE) and channel, so it scales with the
session size, the model width and the number of GPUs the tokens and frame bands are split over.

This module does not import torch (the doctor plans on machines where torch may be missing).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from engine.flashtalk.pipeline.settings import StreamSettings
from engine.protocol.engine_options import AUTO_OFFLOAD as AUTO  # the levels are defined with the flag
from engine.protocol.engine_options import OFFLOAD_CHOICES as OFFLOAD_CHOICES
from engine.protocol.engine_options import OFFLOAD_LEVELS as LEVELS

GIB = 2 ** 30
STREAM_SLOTS = 2  # device buffers the streamed DiT blocks rotate through
ALLOCATOR_RESERVE = 0.08  # share of a budget left for the caching allocator's split blocks (reserved > allocated)
PHASES = ("prompt", "portrait", "condition", "audio", "denoise", "decode", "motion")

# Working memory above the weights, measured on one H200 (eager, 2026-12-01, scripts/gpu/memory_check.py:
# max_memory_allocated during the phase minus the weights resident or visiting then), in bytes per unit:
# DiT step per local token per DiT channel, by precision; VAE passes per local pixel per VAE base
# channel (bf16; fp32 doubles it); umT5 per text token per channel; CLIP per image token per channel;
# wav2vec2 per window sample per feature channel.
DENOISE_BYTES = {"bf16": 37.4, "fp8": 35.7, "fp32": 74.8}  # fp32 not measured: twice bf16
CONDITION_BYTES = 98.7  # prepare: VAE encode of the portrait + 32 zero frames
DECODE_BYTES = 124.9  # VAE decode of a chunk
MOTION_BYTES = 88.5  # VAE encode of the last motion frames
PROMPT_BYTES = 199.0
PORTRAIT_BYTES = 532.0
AUDIO_BYTES = 3.46
VAE_FP32_FACTOR = 2.0  # not measured: float32 activations are twice bf16's

# Speed of streaming, measured on one H200 (PCIe 5.0 x16, 2026-12-01): pinned host-to-device
# copies, and the compute time of one DiT block per denoising step at 12,096 tokens on one GPU
# (eager: this measurement; compiled: the 2026-12-01 engine bench, DiT time / 4 steps / 40 blocks).
HOST_TO_DEVICE_BYTES_PER_S = 55e9
BLOCK_STEP_S = {("bf16", False): 0.0313, ("bf16", True): 0.0207, ("fp8", False): 0.0376, ("fp8", True): 0.0157,
                ("fp32", False): 0.0626, ("fp32", True): 0.0414}  # fp32: not measured, twice bf16
BLOCK_STEP_TOKENS = 12_096


class MemoryPlanError(ValueError):
    """A budget the chosen setup cannot keep; str() is one line that says what to change."""


@dataclass(frozen=True)
class ModuleSizes:
    """Bytes of every network as the engine holds it, and the widths working memory scales with."""

    precision: str  # the DiT's: bf16, fp8 (block linears in e4m3) or fp32
    dit_blocks: tuple[int, ...]
    dit_other: int  # patch/time/text/image/audio embeddings and the head
    text_stages: tuple[int, ...]  # umT5: token embedding, each layer, final norm
    clip: int
    vae: int
    audio: int
    dit_dim: int
    text_dim: int
    text_len: int
    clip_dim: int
    clip_tokens: int
    vae_base_dim: int
    audio_dim: int

    @property
    def total(self) -> int:
        return sum(self.dit_blocks) + self.dit_other + sum(self.text_stages) + self.clip + self.vae + self.audio


@dataclass(frozen=True)
class Workload:
    """What one GPU works on per chunk: its share of the DiT tokens and of the frame's pixels."""

    tokens: int
    pixels: int
    window_samples: int
    gpus: int = 1
    steps: int = 4

    @classmethod
    def of(cls, settings: StreamSettings = StreamSettings(), gpus: int = 1) -> Workload:
        return cls(tokens=settings.tokens, pixels=settings.height * settings.width,
                   window_samples=settings.window_samples, gpus=gpus, steps=settings.steps)

    @property
    def local_tokens(self) -> int:
        return -(-self.tokens // self.gpus)

    @property
    def local_pixels(self) -> int:
        return -(-self.pixels // self.gpus)


def working_memory(sizes: ModuleSizes, work: Workload) -> dict[str, float]:
    """Phase -> bytes of activations and workspaces above the weights, on one GPU."""
    vae_scale = work.local_pixels * sizes.vae_base_dim * (VAE_FP32_FACTOR if sizes.precision == "fp32" else 1.0)
    return {
        "prompt": PROMPT_BYTES * sizes.text_len * sizes.text_dim,
        "portrait": PORTRAIT_BYTES * sizes.clip_tokens * sizes.clip_dim,
        "condition": CONDITION_BYTES * vae_scale,
        "audio": AUDIO_BYTES * work.window_samples * sizes.audio_dim,
        "denoise": DENOISE_BYTES[sizes.precision] * work.local_tokens * sizes.dit_dim,
        "decode": DECODE_BYTES * vae_scale,
        "motion": MOTION_BYTES * vae_scale,
    }


def spread(count: int, total: int) -> tuple[int, ...]:
    """`count` of `total` block indices, evenly spaced (each streamed block is followed by resident
    ones whose compute hides the next copy)."""
    return tuple(sorted({int((i + 0.5) * total / count) for i in range(count)})) if count else ()


@dataclass(frozen=True)
class MemoryPlan:
    level: str
    streamed: tuple[int, ...]  # indices of the DiT blocks that stream from host memory
    phases: dict[str, int]  # phase -> predicted peak bytes on one GPU
    sizes: ModuleSizes
    workload: Workload
    budget: int | None = None  # bytes the engine may use per GPU (--gpu-memory), None: no limit
    requested: str | None = None  # what was asked (auto or the level itself)

    @property
    def peak(self) -> int:
        return max(self.phases.values())

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=self.phases.get)

    @property
    def text_encoder_by_layers(self) -> bool:
        """umT5 visits one layer at a time (else whole, at level none)."""
        return self.level != "none"

    @property
    def clip_on_host(self) -> bool:
        return self.level != "none"

    @property
    def vae_and_audio_on_host(self) -> bool:
        return self.level == "all"

    @property
    def stream_bytes_per_step(self) -> int:
        return sum(self.sizes.dit_blocks[i] for i in self.streamed)

    def fits(self) -> bool:
        return self.budget is None or self.peak <= usable(self.budget)

    def chunk_cost_s(self, bytes_per_s: float = HOST_TO_DEVICE_BYTES_PER_S, compiled: bool = False) -> float:
        """Predicted seconds a chunk loses to copies the compute cannot hide.

        A streamed block's copy starts when the streamed block before it starts computing, so it
        hides behind the compute of the blocks in between; visits (level all) hide behind nothing.
        """
        block_s = BLOCK_STEP_S[(self.sizes.precision, compiled)] * self.workload.local_tokens / BLOCK_STEP_TOKENS
        stall = 0.0
        if self.streamed:
            gap = len(self.sizes.dit_blocks) / len(self.streamed)
            copy_s = max(self.sizes.dit_blocks[i] for i in self.streamed) / bytes_per_s
            stall = self.workload.steps * len(self.streamed) * max(0.0, copy_s - gap * block_s)
        visits = (2 * self.sizes.vae + self.sizes.audio) / bytes_per_s if self.vae_and_audio_on_host else 0.0
        return stall + visits

    def describe(self, bytes_per_s: float = HOST_TO_DEVICE_BYTES_PER_S, compiled: bool = False,
                 on_cpu: bool = False) -> str:
        """One line for the engine's start: what waits where, the predicted peak, the speed cost."""
        asked = " (chosen by --offload auto)" if self.requested == AUTO else ""
        parts = [f"memory plan: --offload {self.level}{asked}"]
        if self.level == "none":
            parts.append("every network in the CPU's memory" if on_cpu else
                         "every network on the GPU (umT5 visits it for a new prompt)")
        else:
            parts.append("umT5 and CLIP wait on the CPU")
        if self.streamed:
            parts.append(f"{len(self.streamed)} of {len(self.sizes.dit_blocks)} DiT blocks stream from host memory "
                         f"({self.stream_bytes_per_step / GIB:.1f} GiB per step)")
        if self.vae_and_audio_on_host:
            parts.append("VAE and wav2vec2 visit per call")
        budget = f" of {self.budget / GIB:.1f} GiB allowed" if self.budget is not None else ""
        parts.append(f"predicted peak {self.peak / GIB:.1f} GiB {'in all' if on_cpu else 'per GPU'} "
                     f"({self.peak_phase}){budget}")
        cost = self.chunk_cost_s(bytes_per_s, compiled)
        if self.streamed or self.vae_and_audio_on_host:
            parts.append(f"speed: about +{cost * 1e3:.0f} ms per chunk (copies at {bytes_per_s / 1e9:.0f} GB/s "
                         "host-to-GPU, overlapped with compute where they can be)")
        else:
            parts.append("speed: nothing moves while chunks stream")
        return "; ".join(parts)

    def as_dict(self) -> dict:
        return {"level": self.level, "requested": self.requested, "streamed_blocks": list(self.streamed),
                "budget_gib": None if self.budget is None else self.budget / GIB,
                "predicted_peak_gib": self.peak / GIB, "peak_phase": self.peak_phase,
                "phases_gib": {k: v / GIB for k, v in self.phases.items()},
                "stream_gib_per_step": self.stream_bytes_per_step / GIB,
                "sizes_gib": {k: (sum(v) if isinstance(v, tuple) else v) / GIB for k, v in asdict(self.sizes).items()
                              if k in ("dit_blocks", "dit_other", "text_stages", "clip", "vae", "audio")},
                "workload": asdict(self.workload)}


def usable(budget: int) -> int:
    """Bytes of a budget the plan may fill (the rest absorbs the allocator's fragmentation)."""
    return int(budget * (1 - ALLOCATOR_RESERVE))


def phase_peaks(sizes: ModuleSizes, level: str, streamed: tuple[int, ...], work: Workload) -> dict[str, int]:
    """Phase -> resident weights + what visits in that phase + that phase's working memory."""
    streaming = set(streamed)
    slots = STREAM_SLOTS * max((sizes.dit_blocks[i] for i in streaming), default=0)
    resident = sizes.dit_other + slots + sum(b for i, b in enumerate(sizes.dit_blocks) if i not in streaming)
    resident += 0 if level != "none" else sizes.clip
    visiting_vae = sizes.vae if level == "all" else 0
    visiting_audio = sizes.audio if level == "all" else 0
    resident += sizes.vae + sizes.audio - visiting_vae - visiting_audio
    text = sum(sizes.text_stages) if level == "none" else max(sizes.text_stages)
    work_bytes = working_memory(sizes, work)
    visits = {"prompt": text, "portrait": sizes.clip if level != "none" else 0, "condition": visiting_vae,
              "audio": visiting_audio, "denoise": 0, "decode": visiting_vae, "motion": visiting_vae}
    return {p: int(resident + visits[p] + work_bytes[p]) for p in PHASES}


def plan_level(sizes: ModuleSizes, level: str, work: Workload, budget: int | None = None,
               streamed: tuple[int, ...] | None = None) -> MemoryPlan:
    """The plan of one level; at `blocks` with a budget, the fewest streamed blocks that fit."""
    if level not in LEVELS:
        raise MemoryPlanError(f"unknown offload level {level!r}: use one of {', '.join(OFFLOAD_CHOICES)}")
    total = len(sizes.dit_blocks)
    if streamed is None:
        streamed = tuple(range(total)) if level in ("blocks", "all") else ()
        if level == "blocks" and budget is not None:
            for count in range(total + 1):
                plan = plan_level(sizes, level, work, budget, spread(count, total))
                if plan.fits():
                    return plan
    return MemoryPlan(level, streamed, phase_peaks(sizes, level, streamed, work), sizes, work, budget, level)


def minimum_budget(sizes: ModuleSizes, work: Workload) -> int:
    """The smallest --gpu-memory any level fits in (level all), in bytes."""
    return math.ceil(plan_level(sizes, "all", work).peak / (1 - ALLOCATOR_RESERVE))


def choose_plan(sizes: ModuleSizes, requested: str, work: Workload, budget: int | None = None) -> MemoryPlan:
    """The plan for `--offload requested` under `budget` bytes per GPU (None: unlimited).

    Raises MemoryPlanError (one line) when the budget is below what even level `all` needs, or
    below what the requested level needs.
    """
    if requested not in OFFLOAD_CHOICES:
        raise MemoryPlanError(f"unknown --offload {requested!r}: use one of {', '.join(OFFLOAD_CHOICES)}")
    where = _setup_words(sizes, work)
    if budget is not None:
        least = minimum_budget(sizes, work)
        if budget < least:
            raise MemoryPlanError(f"--gpu-memory {budget / GIB:.1f} GiB is below the {least / GIB:.1f} GiB that "
                                  f"FlashTalk needs per GPU even with --offload all ({where}): give it at least "
                                  f"{least / GIB:.1f}, use --precision fp8, or more GPUs")
    if requested == AUTO:
        for level in LEVELS:
            plan = plan_level(sizes, level, work, budget)
            if plan.fits():
                return MemoryPlan(plan.level, plan.streamed, plan.phases, sizes, work, budget, AUTO)
    plan = plan_level(sizes, requested, work, budget)
    if not plan.fits():
        fitting = choose_plan(sizes, AUTO, work, budget)
        raise MemoryPlanError(f"--offload {requested} needs about {plan.peak / GIB:.1f} GiB per GPU ({where}), "
                              f"more than --gpu-memory {budget / GIB:.1f} allows: use --offload {fitting.level} "
                              "(or auto)")
    return plan


def _setup_words(sizes: ModuleSizes, work: Workload) -> str:
    gpus = f", {work.gpus} GPUs" if work.gpus > 1 else ""
    return f"{sizes.precision}, {work.tokens} tokens per chunk{gpus}"


def plan_engine_memory(model_dir, wav2vec_dir, precision: str, offload: str, gpu_memory_gb: float | None,
                       device, gpus: int = 1) -> MemoryPlan:
    """The plan an engine starts with: sizes from the checkpoint's configs (model_dir None: the
    official 14B, as --random-weights builds it), the budget from --gpu-memory, or for --offload
    auto without one, the memory free on the device now.

    Raises MemoryPlanError (budget) or CheckpointError (a damaged folder), both one line.
    """
    import torch

    from engine.flashtalk.runtime.module_sizes import checkpoint_sizes

    sizes = checkpoint_sizes(model_dir, wav2vec_dir, precision, device)
    budget = None if gpu_memory_gb is None else int(gpu_memory_gb * GIB)
    if budget is None and offload == AUTO and device.type == "cuda":
        budget = torch.cuda.mem_get_info(device.index if device.index is not None else torch.cuda.current_device())[0]
    return choose_plan(sizes, offload, Workload.of(StreamSettings(), gpus), budget)
