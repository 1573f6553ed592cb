"""An engine over several GPUs runs as one process per GPU under torchrun; this is how the CLI gets there.

`serve --gpus N` re-runs itself under torchrun on N local ranks (`relaunch_under_torchrun`);
`torchrun --nproc-per-node N [--nnodes ...] -m engine serve ...` does the same by hand. torchrun
then owns the ranks: it forwards SIGTERM/SIGINT to them and, when one dies, stops the others and
exits non-zero. A rank that stops never waits on a dead peer: `arm_exit_timer` ends it regardless.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

TORCHRUN_MODULE = "torch.distributed.run"
TORCHRUN_MARK = "TORCHELASTIC_RUN_ID"  # set by torchrun's agent in every process it starts
EXIT_GRACE_S = 5.0  # after SIGTERM, a rank stuck in a collective is ended this much later


def launched_by_torchrun() -> bool:
    """True inside a process that torchrun (torch.distributed.run) started."""
    return TORCHRUN_MARK in os.environ


def rank_label() -> str:
    """'rank N: ' for a torchrun process other than rank 0 (so N ranks' errors tell apart), else ''."""
    rank = os.environ.get("RANK", "0") if launched_by_torchrun() else "0"
    return "" if rank == "0" else f"rank {rank}: "


def torchrun_argv(nproc: int, engine_args: list[str]) -> list[str]:
    """The command line that runs `python -m engine <engine_args>` on `nproc` local ranks."""
    return [sys.executable, "-m", TORCHRUN_MODULE, "--standalone", f"--nproc-per-node={nproc}",
            "-m", "engine", *engine_args]


def relaunch_under_torchrun(nproc: int, engine_args: list[str]) -> None:
    """Replace this process by torchrun running the same engine command on `nproc` ranks."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default, set here to silence its warning
    argv = torchrun_argv(nproc, engine_args)
    os.execv(argv[0], argv)


def arm_exit_timer(seconds: float = EXIT_GRACE_S) -> None:
    """Hard-exit later if a clean shutdown is stuck (e.g. in a collective with a dead rank)."""
    timer = threading.Timer(seconds, os._exit, args=(1,))
    timer.daemon = True
    timer.start()


def exit_on_stop_signals() -> None:
    """A follower rank: SIGTERM/SIGINT mean torchrun is stopping the job; leave at once."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os._exit(1))
