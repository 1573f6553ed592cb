"""The engine's start-up options, each defined once: its flag, default, choices and help.

`BackendOptions` is what one engine process starts with (not per session). The command lines of
`serve`, `render` and `bench`, the planning options of `doctor` and the studio's engine panel are
built from its fields, so a default or a choice has one home. Plain data (no torch, no numpy):
this is the one module of engine options the studio may import.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path


class Precision(StrEnum):
    """Weights and compute of the flashtalk DiT and VAE."""

    BF16 = "bf16"  # the reference's precision
    FP8 = "fp8"  # FP8 linear layers (tensor cores of compute capability 8.9+)
    FP32 = "fp32"  # reference checks: several ranks compared with one, exactly


# The attention kernels the flashtalk DiT can pin (engine.flashtalk.model.attention.BACKENDS).
ATTENTION_KERNELS = ("cudnn", "flash", "efficient", "math", "flash_attn")
RANDOM_WEIGHT_MODELS = ("14b",)  # benchmarks: this model's shapes with random weights
DEFAULT_GPUS = 1  # GPUs for one session (flashtalk); more run the engine under torchrun
MIN_GPUS = 1
DEFAULT_RANK_TIMEOUT_S = 120.0  # long enough for a first-chunk compile
# flashtalk live sessions: new frames of the first chunk (4 + 5 motion frames = 9 generated, 3 latent
# frames), so the first frames come after a third of a chunk's work and 0.16 s of audio; 0: full length.
DEFAULT_FIRST_CHUNK_FRAMES = 4
FIRST_CHUNK_STEP = 4  # the VAE's temporal stride: a chunk's frames are 4k+1 with its 4k+1 motion frames
# --offload: what waits in host memory (engine.flashtalk.runtime.memory_plan plans each level).
OFFLOAD_LEVELS = ("none", "encoders", "blocks", "all")
NO_OFFLOAD = "none"
AUTO_OFFLOAD = "auto"  # the least offload that fits --gpu-memory
OFFLOAD_CHOICES = (*OFFLOAD_LEVELS, AUTO_OFFLOAD)

ENGINE_COMMANDS = ("serve", "render", "bench")  # the commands that start an engine
PLANNED = (*ENGINE_COMMANDS, "doctor")  # options `doctor` also takes, to check that setup


def default_precision(device_type: str) -> Precision:
    """bf16 on a GPU; fp32 on a CPU, where bf16 kernels run ~13x slower on processors without
    AVX512-BF16 (0.3 vs 3.9 fps for the tiny model at 128x128)."""
    return Precision.FP32 if device_type == "cpu" else Precision.BF16


def option(default, flag: str, help: str, *, type=str, choices: tuple[str, ...] | None = None,
           metavar: str | None = None, const: str | None = None, commands: tuple[str, ...] = ENGINE_COMMANDS):
    """A BackendOptions field, with how a command line offers it (`type=bool`: a switch; `const`: the
    value of the flag given bare)."""
    return field(default=default, metadata={"flag": flag, "help": help, "type": type, "choices": choices,
                                            "metavar": metavar, "const": const, "commands": commands})


@dataclass
class BackendOptions:
    """Engine-wide options fixed when the engine starts (not per session)."""

    model_dir: Path | None = option(None, "--model", "the SoulX-FlashTalk model folder (flashtalk backend)",
                                    type=Path, metavar="DIR", commands=PLANNED)
    wav2vec_dir: Path | None = option(None, "--wav2vec", "wav2vec2 folder (default: the one beside --model)",
                                      type=Path, metavar="DIR", commands=PLANNED)
    device: str | None = option(None, "--device", "torch device for flashtalk, e.g. cuda:0 or cpu "
                                "(default: cuda when there is one)", commands=PLANNED)
    gpus: int = option(DEFAULT_GPUS, "--gpus", "GPUs for one session (flashtalk)", type=int, metavar="N",
                       commands=PLANNED)
    precision: str | None = option(None, "--precision", "flashtalk weights and compute (default: bf16 on a "
                                   "GPU, fp32 on a CPU)", choices=tuple(Precision), commands=PLANNED)
    offload: str = option(NO_OFFLOAD, "--offload", "flashtalk: what waits in host memory: none, encoders (umT5, "
                          "CLIP), blocks (+ DiT blocks stream), all (+ VAE, wav2vec2); auto (a bare --offload): "
                          "the least that fits --gpu-memory", choices=OFFLOAD_CHOICES, const=AUTO_OFFLOAD,
                          commands=PLANNED)
    gpu_memory_gb: float | None = option(None, "--gpu-memory", "flashtalk: GiB the engine may allocate per GPU "
                                         "(caps torch's allocator; default: no cap)", type=float, metavar="GB",
                                         commands=PLANNED)
    compile: bool = option(False, "--compile", "torch.compile the DiT and VAE", type=bool)
    attention: str | None = option(None, "--attention", "flashtalk attention kernel (default: the fastest "
                                   "that runs here)", choices=ATTENTION_KERNELS)
    random_weights: str | None = option(None, "--random-weights", "flashtalk: build this model with random "
                                        "weights on the device (--model then only needs the tokenizer, e.g. a "
                                        "`models make-tiny` folder)", choices=RANDOM_WEIGHT_MODELS,
                                        commands=("bench",))
    first_chunk_frames: int = option(DEFAULT_FIRST_CHUNK_FRAMES, "--first-chunk-frames", "flashtalk: new frames "
                                     "of a live session's first chunk, a multiple of 4 (fewer than the others: "
                                     "the first frames come sooner); 0: full length. File sessions (renders, "
                                     "reference checks) always make full chunks", type=int, metavar="N")
    rank_timeout_s: float = option(DEFAULT_RANK_TIMEOUT_S, "--rank-timeout", "with --gpus N: end the engine "
                                   "when a rank hangs this many seconds", type=float, metavar="S")

    def check(self) -> BackendOptions:
        """Raise ValueError (one line, naming the flag) for values no backend can start with."""
        if self.gpus < MIN_GPUS:
            raise ValueError(f"{flag_of('gpus')} must be at least {MIN_GPUS}")
        if not self.rank_timeout_s > 0:
            raise ValueError(f"{flag_of('rank_timeout_s')} must be a positive number of seconds")
        if self.first_chunk_frames < 0 or self.first_chunk_frames % FIRST_CHUNK_STEP:
            raise ValueError(f"{flag_of('first_chunk_frames')} must be 0 (full length) or a multiple of "
                             f"{FIRST_CHUNK_STEP} (e.g. {DEFAULT_FIRST_CHUNK_FRAMES}), not {self.first_chunk_frames}")
        if self.gpu_memory_gb is not None and not 0 < self.gpu_memory_gb < math.inf:
            raise ValueError(f"{flag_of('gpu_memory_gb')} must be a positive number of GiB, e.g. 22")
        return self


def flag_of(name: str) -> str:
    """The command-line flag of the BackendOptions field `name`, e.g. 'gpus' -> '--gpus'."""
    return next(f.metadata["flag"] for f in fields(BackendOptions) if f.name == name)
