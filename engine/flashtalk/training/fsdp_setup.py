"""Scale-out of training: one process per GPU (torchrun), FSDP2, bf16 mixed precision, checkpointing.

Every DiT block is its own `fully_shard` unit (its parameters are gathered just before it runs
and freed after), the root holds the embeddings and head. Mixed precision keeps float32 master
weights and optimizer states sharded over the ranks and computes in bf16 (params cast per unit),
reducing gradients in float32; the DiT's own float32 sections (modulation, norms, head) upcast as
they do at inference. Activation checkpointing (composable, so parameter names do not change)
keeps only each block's input and recomputes the block in backward. Without torchrun a single
process trains unsharded in float32 (the CPU toy); bf16 on one GPU still goes through FSDP2 on a
world of one, so one code path runs from 1 to N GPUs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed._composable import checkpoint as checkpoint_activations
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.parallel.process_group import rank_environment_world_size

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
COLLECTIVE_TIMEOUT = timedelta(minutes=30)  # a 14B checkpoint save or a first step can take minutes


@dataclass
class TrainWorld:
    """This process's place in a training job, and the mesh FSDP shards over (None: unsharded)."""

    rank: int
    world_size: int
    device: torch.device
    mesh: DeviceMesh | None

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.mesh is not None

    def mean(self, value: float) -> float:
        """The mean of a scalar over the ranks (the value itself when alone)."""
        if not dist.is_initialized():
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t) / self.world_size

    def barrier(self) -> None:
        if dist.is_initialized():
            dist.barrier()


def join_train_world(device: str | None, precision: str) -> TrainWorld:
    """torchrun: join the job (NCCL on GPUs, gloo on CPUs), shard over all ranks. Alone: bf16 makes a
    world of one (FSDP2 is how mixed precision runs); fp32 stays unsharded."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    device_type = torch.device(device).type if device else ("cuda" if torch.cuda.is_available() else "cpu")
    if rank_environment_world_size() is not None:  # a torchrun job: its rank variables are set
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = torch.device(device_type, int(os.environ["LOCAL_RANK"])) if device_type == "cuda" \
            else torch.device(device_type)
        if device_type == "cuda":
            os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # NVLink multicast stays off (KINDS.md)
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device_type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
        return TrainWorld(rank, world_size, local, init_device_mesh(device_type, (world_size,)))
    local = torch.device(device) if device else torch.device(device_type)
    if precision == "bf16":
        if not dist.is_initialized():
            backend = "nccl" if local.type == "cuda" else "gloo"
            if local.type == "cuda":
                torch.cuda.set_device(local)
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        return TrainWorld(0, 1, local, init_device_mesh(local.type, (1,)))
    return TrainWorld(0, 1, local, None)


def leave_train_world(finished: bool) -> None:
    """Tear the process group down; after a finished run the ranks first wait for each other (a
    rank leaving first closes its gloo pairs under a peer still using them, which aborts it)."""
    if dist.is_initialized():
        if finished and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def prepare_dit(dit: FlashTalkDiT, world: TrainWorld, precision: str, activation_checkpointing: bool,
                trainable: bool) -> FlashTalkDiT:
    """Wrap `dit` (float32 master weights, on any device or meta) for training, in place.

    A frozen network (the teacher) is kept in the compute dtype and needs no master copy.
    """
    compute = PRECISIONS[precision]
    dit.requires_grad_(trainable).train(trainable)
    if not trainable:
        torch.nn.Module.to(dit, compute)  # diffusers' own .to() warns about fp32 modules the DiT does not have
    if activation_checkpointing and trainable:
        for block in dit.blocks:
            checkpoint_activations(block)
    if world.sharded:
        policy = MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=torch.float32) if trainable \
            else MixedPrecisionPolicy()
        for block in dit.blocks:
            fully_shard(block, mesh=world.mesh, mp_policy=policy)
        fully_shard(dit, mesh=world.mesh, mp_policy=policy)
    return dit
