"""`flashtalk serve`: run the engine on a socket until SIGTERM/SIGINT."""
from __future__ import annotations

import argparse
import signal

from engine.backends.base import BackendError
from engine.cli.common import UserError, add_backend_options, backend_options
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
    add_backend_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = ServerConfig(address=args.socket, backend=args.backend,
                          backend_options=backend_options(args), allow_remote=args.allow_remote,
                          client_timeout_s=args.client_timeout)
    try:
        server = EngineServer(config)
        address = server.bind()
    except (BackendError, EngineServerError) as exc:
        raise UserError(str(exc)) from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: server.stop_event.set())
    print(f"ready {address}", flush=True)
    server.serve_forever()
    return 0
