"""Run a function on N CPU processes joined by a gloo process group (torch.multiprocessing spawn).

The function runs as `fn(rank, world_size, *args)` in every process after `init_process_group`;
rank 0's return value comes back to the test (through a file: a pipe would fill up while the
parent waits for the processes to end). Any rank's exception fails the test with its text.
"""
from __future__ import annotations

import os
import pickle
import socket
import tempfile
import traceback
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world_size: int, port: int, fn, args: tuple, result_path: str, init: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        if init:
            dist.init_process_group("gloo", rank=rank, world_size=world_size,
                                    timeout=timedelta(seconds=TIMEOUT_S))
        value = fn(rank, world_size, *args)
        if rank == 0:
            with open(result_path, "wb") as f:
                pickle.dump(value, f)
        if dist.is_initialized():
            # Every rank's collectives are done before any rank tears its group down: a rank that
            # left early closed its gloo pairs under a peer still using them, and the peer's gloo
            # thread aborted the process ("terminate called without an active exception"). A group
            # the function broke on purpose (a timed-out collective) fails the barrier at once.
            try:
                dist.barrier()
            except RuntimeError:
                pass
    except BaseException:  # the test shows any rank's failure
        traceback.print_exc()
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_on_gloo_world(world_size: int, fn, *args, init: bool = True):
    """fn(rank, world_size, *args) on `world_size` processes -> rank 0's result.

    init=False leaves joining to fn (torchrun's environment variables are set either way).
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rank0.pickle")
        mp.start_processes(_entry, args=(world_size, free_port(), fn, args, path, init), nprocs=world_size,
                           join=True, start_method="spawn")
        with open(path, "rb") as f:
            return pickle.load(f)
