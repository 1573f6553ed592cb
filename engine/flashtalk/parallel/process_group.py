"""The process groups of one multi-GPU engine, built once by an explicit call and passed in.

torchrun (or `torch.distributed.run`) starts one process per GPU and sets RANK, WORLD_SIZE,
LOCAL_RANK and the rendezvous address; `init_rank_world` turns that environment into a
`RankWorld`. Nothing here runs at import time.

Two groups: `compute` (NCCL on GPUs, gloo on the CPU) carries the model's collectives and times out
after `timeout_s`, so a rank that hangs makes the others fail instead of waiting forever;
`commands` (gloo) carries the leader's small command messages. Its timeout is per process: the
leader's is `timeout_s` (a follower that stopped listening is an error), the followers' is
effectively infinite (an engine with no session is idle for as long as it likes).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

FOLLOWER_IDLE_TIMEOUT = timedelta(days=365)  # followers wait for the next command this long
RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")  # set by torchrun


def rank_environment_world_size() -> int | None:
    """The job's world size when torchrun's rank variables are all set (the job can be joined), else None."""
    if not all(name in os.environ for name in RANK_VARIABLES):
        return None
    return int(os.environ["WORLD_SIZE"])


@dataclass(frozen=True)
class RankWorld:
    """This process's place in the engine: rank 0 leads (socket, session), the others follow."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    compute: dist.ProcessGroup
    commands: dist.ProcessGroup

    @property
    def is_leader(self) -> bool:
        return self.rank == 0


def init_rank_world(device_type: str, timeout_s: float) -> RankWorld:
    """Join the torchrun job: one GPU per local rank (NCCL), or the CPU (gloo) for tests."""
    if rank_environment_world_size() is None:
        raise RuntimeError("not started by torchrun: RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* are not set")
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    timeout = timedelta(seconds=timeout_s)
    if device_type == "cuda":
        os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # NVLink multicast stays off (KINDS.md)
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=timeout, device_id=device)
    else:
        device = torch.device(device_type)
        dist.init_process_group("gloo", timeout=timeout)
    command_timeout = timeout if rank == 0 else FOLLOWER_IDLE_TIMEOUT
    commands = dist.new_group(backend="gloo", timeout=command_timeout)
    return RankWorld(rank, world_size, local_rank, device, dist.group.WORLD, commands)


def close_rank_world() -> None:
    """Leave the job (every rank calls it once, at a clean shutdown)."""
    if dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class SequenceParallelGroups:
    """A world of `ulysses_degree * ring_degree` ranks arranged for sequence parallelism.

    Ulysses groups are runs of consecutive ranks (their token chunks form one contiguous block),
    ring groups take one rank of each Ulysses group (the ranks holding the same heads).
    """

    world: dist.ProcessGroup
    rank: int
    world_size: int
    ulysses_degree: int
    ring_degree: int
    ulysses: dist.ProcessGroup | None  # None when ulysses_degree == 1
    ring: dist.ProcessGroup | None  # None when ring_degree == 1
    ring_ranks: tuple[int, ...]  # global ranks of this rank's ring group, in ring order

    @property
    def ulysses_rank(self) -> int:
        return self.rank % self.ulysses_degree

    @property
    def ring_rank(self) -> int:
        return self.rank // self.ulysses_degree


def usp_degrees(world_size: int, num_heads: int, ulysses_degree: int | None = None) -> tuple[int, int]:
    """(Ulysses degree, ring degree): gcd(world, heads) and the rest, unless overridden."""
    u = math.gcd(world_size, num_heads) if ulysses_degree is None else ulysses_degree
    if u < 1 or world_size % u or num_heads % u:
        raise ValueError(f"Ulysses degree {u} must divide the world size {world_size} and the {num_heads} heads")
    return u, world_size // u


def sequence_parallel_groups(world: dist.ProcessGroup, num_heads: int,
                             ulysses_degree: int | None = None) -> SequenceParallelGroups:
    """Ulysses over gcd(world, heads) ranks, ring over the rest (xDiT's USP split).

    Every rank must call this with the same arguments (new_group is collective). `ulysses_degree`
    overrides the split (it must divide both the world size and the head count), e.g. to test ring
    attention on two GPUs.
    """
    size, rank = dist.get_world_size(world), dist.get_rank(world)
    u, r = usp_degrees(size, num_heads, ulysses_degree)
    ulysses = ring = None
    ring_ranks: tuple[int, ...] = (rank,)
    if u > 1:
        for i in range(r):
            ranks = list(range(i * u, (i + 1) * u))
            group = dist.new_group(ranks)
            if rank in ranks:
                ulysses = group
    if r > 1:
        for j in range(u):
            ranks = list(range(j, size, u))
            group = dist.new_group(ranks)
            if rank in ranks:
                ring, ring_ranks = group, tuple(ranks)
    return SequenceParallelGroups(world, rank, size, u, r, ulysses, ring, ring_ranks)
