"""`flashtalk serve`: run the engine on a socket until SIGTERM/SIGINT.

With `--gpus N` (N > 1) for a backend that spans ranks, the command re-runs itself under torchrun
on N local ranks (engine/cli/torchrun_launch.py); `torchrun --nproc-per-node N [--nnodes ...] -m
engine serve --backend flashtalk ...` does the same by hand (several hosts too). Rank 0 serves
the socket, the other ranks follow it.
"""
from __future__ import annotations

import argparse
import math
import signal
import sys

from engine.backends import backend_class, create_backend
from engine.backends.base import Backend, BackendError
from engine.cli.common import UserError, add_backend_options, backend_options
from engine.cli.parent_watch import watch_parent
from engine.cli.torchrun_launch import (
    arm_exit_timer,
    exit_on_stop_signals,
    launched_by_torchrun,
    rank_label,
    relaunch_under_torchrun,
)
from engine.protocol.address import default_address
from engine.protocol.engine_state import WARMING_UP_LINE, ready_line
from engine.server import EngineServer, EngineServerError, ServerConfig


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve the engine on a local socket")
    p.add_argument("--socket", default=default_address(),
                   help="ipc://PATH (default) or tcp://127.0.0.1:PORT")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a tcp address that is not loopback (prints a warning)")
    p.add_argument("--client-timeout", type=float, default=10.0,
                   help="seconds of silence after which a session's client counts as gone")
    p.add_argument("--warm-up", action=argparse.BooleanOptionalAction, default=None,
                   help="run two silent chunks and measure the quality profiles before `ready`, so the "
                        "first session starts as fast as later ones (default: on for a GPU backend)")
    p.add_argument("--parent-pid", type=int, metavar="PID",
                   help="stop (as on SIGTERM) once process PID is gone; the studio passes its own pid")
    add_backend_options(p, "serve")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.client_timeout < math.inf:  # nan fails both: it would keep a vanished client forever
        raise UserError(f"--client-timeout must be a positive number of seconds, not {args.client_timeout}")
    options = backend_options(args)
    ranked = launched_by_torchrun()
    if options.gpus > 1 and not ranked:
        try:
            spans_ranks = backend_class(args.backend).spans_ranks
        except BackendError as exc:
            raise UserError(str(exc)) from None
        if spans_ranks:
            relaunch_under_torchrun(options.gpus, _serve_argv())
    if args.parent_pid is not None:  # before the model loads (minutes): an orphan stops meanwhile too
        watch_parent(args.parent_pid)
    try:
        backend = create_backend(args.backend, options)
    except BackendError as exc:
        raise UserError(f"{rank_label()}{exc}") from None
    except RuntimeError as exc:  # on a follower: joining the other ranks failed
        if not rank_label():
            raise
        raise _lost_ranks(exc) from None
    if not backend.is_leader:
        return _follow(backend)
    config = ServerConfig(address=args.socket, backend=args.backend, backend_options=options,
                          allow_remote=args.allow_remote, client_timeout_s=args.client_timeout)
    try:
        server = EngineServer(config, backend)
        address = server.bind()
    except (BackendError, EngineServerError) as exc:
        raise UserError(str(exc)) from None
    warm = backend.warms_up_by_default if args.warm_up is None else args.warm_up
    if warm and not _warm_up(server, ranked):
        return 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: _stop(server, ranked))
    print(ready_line(address), flush=True)
    server.serve_forever()
    return 0


class _StopDuringWarmUp(Exception):
    pass


def _warm_up(server: EngineServer, ranked: bool) -> bool:
    """Warm the backend before `ready`; False when SIGTERM/SIGINT came first (files cleaned up)."""
    def interrupt(*_):
        raise _StopDuringWarmUp
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, interrupt)
    print(WARMING_UP_LINE, file=sys.stderr, flush=True)
    try:
        seconds = server.backend.warm_up()
    except _StopDuringWarmUp:
        _stop(server, ranked)
        server.shutdown()
        return False
    except BackendError as exc:
        server.shutdown()
        raise UserError(f"warm-up failed: {exc}") from None
    if seconds:
        print(f"warm-up: {seconds:.1f} s", file=sys.stderr, flush=True)
    return True


def _stop(server: EngineServer, ranked: bool) -> None:
    server.stop_event.set()
    if ranked:  # torchrun stops every rank when one fails: never wait on a dead peer
        arm_exit_timer()


def _serve_argv() -> list[str]:
    """This command's own arguments, `serve` first, to run again under torchrun."""
    if "serve" not in sys.argv:
        raise UserError("start a multi-GPU engine with: torchrun --nproc-per-node N -m engine serve "
                        "--backend flashtalk ...")
    return sys.argv[sys.argv.index("serve"):]


def _follow(backend: Backend) -> int:
    """A rank other than 0: run the leader's calls until it shuts the engine down."""
    exit_on_stop_signals()  # torchrun is stopping the job
    try:
        backend.follow()
    except BackendError as exc:
        raise UserError(f"{rank_label()}{exc}") from None
    except RuntimeError as exc:
        raise _lost_ranks(exc) from None
    return 0


def _lost_ranks(exc: RuntimeError) -> UserError:
    """A follower's collective failed: a peer died or timed out."""
    return UserError(f"{rank_label()}lost the other ranks ({str(exc).splitlines()[0][:160]})")
