"""What both training stages share: run options, loading a DiT to train, random streams, the log.

A network to train starts from an official-layout folder. Unsharded, it is loaded in float32
straight onto its device. Sharded (FSDP2), every rank builds it on the meta device and shards it
first; the leader alone reads the checkpoint and the weights are scattered from it, so no rank
ever holds more than its shard plus the leader's one host copy (a 14B float32 master is 75 GB).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from tqdm import tqdm

from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.training.checkpoint_io import check_condition_widths
from engine.flashtalk.training.fsdp_setup import PRECISIONS, TrainWorld, prepare_dit
from engine.flashtalk.weights.checkpoint_validation import meta_dit, validate_dit, validate_model_dir
from engine.flashtalk.weights.dit_loader import load_dit
from engine.flashtalk.weights.tiny_checkpoint import MODEL_FOLDER

LOG_FILE = "log.jsonl"


@dataclass
class StageResult:
    checkpoint: Path  # the last step folder
    history: dict[str, list[float]]  # the whole run's per-step scalars (log.jsonl, resumes included)

    @property
    def model_dir(self) -> Path:
        return self.checkpoint / MODEL_FOLDER


@dataclass(frozen=True)
class RunOptions:
    run_dir: Path
    device: str | None = None  # None: cuda if available
    precision: str = "fp32"  # fp32 (CPU, tests) or bf16 mixed precision (GPUs, through FSDP2)
    activation_checkpointing: bool = False
    resume: bool = False
    export_dtype: str = "bf16"  # dtype of exported DiT shards (the official ones are bf16)
    progress: bool = True

    @property
    def export_torch_dtype(self) -> torch.dtype:
        return PRECISIONS[self.export_dtype]


def check_start_model(model_dir: Path, wav2vec_dir: Path, widths: dict[str, int]) -> None:
    """CheckpointError (one line) unless the folder pair is a complete official layout whose DiT takes
    the cached conditions: checked before any network is loaded, and the export links its encoders."""
    check_condition_widths(validate_dit(model_dir), widths, model_dir)
    validate_model_dir(model_dir, wav2vec_dir)


def load_for_training(model_dir: Path, world: TrainWorld, options: RunOptions, trainable: bool) -> FlashTalkDiT:
    """The DiT of `model_dir` ready to train (float32 master weights) or frozen (compute dtype)."""
    checkpointing = options.activation_checkpointing
    if not world.sharded:
        dit = prepare_dit(load_dit(model_dir, device=world.device, dtype=torch.float32), world,
                          options.precision, checkpointing, trainable)
    else:
        dit = prepare_dit(meta_dit(model_dir), world, options.precision, checkpointing, trainable)
        dit.to_empty(device=world.device)
        full = {}
        if world.is_leader:
            dtype = torch.float32 if trainable else PRECISIONS[options.precision]
            full = load_dit(model_dir, device="cpu", dtype=dtype).state_dict()
        set_model_state_dict(dit, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    dit.set_attention_backend(None, compute_dtype=PRECISIONS[options.precision])
    return dit


def host_generator(seed: int, rank: int) -> torch.Generator:
    """Sigmas, dropout and training noise: one CPU stream per rank."""
    return torch.Generator().manual_seed(seed * 1000 + rank)


def device_generator(seed: int, rank: int, device: torch.device) -> torch.Generator:
    """The rollout's sampler draws, on the device like the streaming sampler's generator."""
    return torch.Generator(device=device).manual_seed(seed * 1000 + rank + 500)


class TrainingLog:
    """Per-step scalars: appended to RUN/log.jsonl every step and shown on a progress bar (leader).

    The file outlives resumes, so `history()` is the whole run's: a step that was run again after
    a crash (it came after the last checkpoint) counts once, with its last values.
    """

    def __init__(self, run_dir: Path, world: TrainWorld, total: int, start: int, desc: str, progress: bool):
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(run_dir) / LOG_FILE
        self.world = world
        self.bar = tqdm(total=total, initial=start, desc=desc, unit="step",
                        disable=not (progress and world.is_leader))

    def record(self, step: int, values: dict[str, float], show: bool) -> None:
        """values are this rank's; the log holds their mean over the ranks (a collective)."""
        mean = {k: self.world.mean(v) for k, v in values.items()}
        self.bar.update(1)
        if self.world.is_leader:
            if show:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in mean.items()})
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, **mean}) + "\n")

    def history(self) -> dict[str, list[float]]:
        """name -> values in step order (leader; empty elsewhere)."""
        if not self.path.is_file():
            return {}
        by_step = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            by_step[entry.pop("step")] = entry
        history: dict[str, list[float]] = {}
        for step in sorted(by_step):
            for k, v in by_step[step].items():
                history.setdefault(k, []).append(v)
        return history

    def close(self) -> None:
        self.bar.close()
