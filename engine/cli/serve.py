"""`flashtalk serve`: run the engine on a socket until SIGTERM/SIGINT.

With `--backend flashtalk --gpus N` (N > 1) the command re-runs itself under torchrun on N local
ranks; `torchrun --nproc-per-node N [--nnodes ...] -m engine serve --backend flashtalk ...` does
the same by hand (several hosts too). Rank 0 serves the socket, the other ranks follow it.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

from engine.backends.base import BackendError
from engine.cli.common import UserError, add_backend_options, backend_options
from engine.cli.parent_watch import watch_parent
from engine.protocol.address import default_address
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
    add_backend_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    ranked = False
    if args.backend == "flashtalk":  # torch is imported only for this backend
        from engine.backends.flashtalk_ranks import relaunch_under_torchrun
        from engine.flashtalk.parallel.process_group import launched_by_torchrun
        ranked = launched_by_torchrun()
        if args.gpus > 1 and not ranked:
            relaunch_under_torchrun(args.gpus, _serve_argv())
    if ranked and int(os.environ["RANK"]) != 0:
        return _follow(args)
    if args.parent_pid is not None:
        watch_parent(args.parent_pid)
    config = ServerConfig(address=args.socket, backend=args.backend,
                          backend_options=backend_options(args), allow_remote=args.allow_remote,
                          client_timeout_s=args.client_timeout)
    try:
        server = EngineServer(config)
        address = server.bind()
    except (BackendError, EngineServerError) as exc:
        raise UserError(str(exc)) from None
    warm = server.backend.warms_up_by_default if args.warm_up is None else args.warm_up
    if warm and not _warm_up(server, ranked):
        return 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: _stop(server, ranked))
    print(f"ready {address}", flush=True)
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
    print("warming up (two silent chunks, then one measured chunk per quality profile size)",
          file=sys.stderr, flush=True)
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
        from engine.backends.flashtalk_ranks import arm_exit_timer
        arm_exit_timer()


def _serve_argv() -> list[str]:
    """This command's own arguments, `serve` first, to run again under torchrun."""
    if "serve" not in sys.argv:
        raise UserError("start a multi-GPU engine with: torchrun --nproc-per-node N -m engine serve "
                        "--backend flashtalk ...")
    return sys.argv[sys.argv.index("serve"):]


def _follow(args: argparse.Namespace) -> int:
    """A rank other than 0: load the same model, then run the leader's calls until shutdown."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os._exit(1))  # torchrun is stopping the job
    from engine.backends.flashtalk import FlashTalkBackend

    rank = os.environ["RANK"]
    try:
        backend = FlashTalkBackend(backend_options(args))
        backend.follow()
    except BackendError as exc:
        raise UserError(f"rank {rank}: {exc}") from None
    except RuntimeError as exc:  # a collective failed: a peer died or timed out
        raise UserError(f"rank {rank}: lost the other ranks ({str(exc).splitlines()[0][:160]})") from None
    return 0
