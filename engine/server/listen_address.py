"""Where the engine listens: the address checks, and the files it puts there (socket, token)."""
from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import zmq

from engine.protocol.address import ipc_path, make_private_dir, token_path, write_token
from engine.protocol.codec import encode
from engine.protocol.messages import Heartbeat

PROBE_MS = 300  # a live engine answers a probe of its socket well within this


class EngineServerError(RuntimeError):
    """Cannot start serving; one line."""


def check_address(address: str, allow_remote: bool) -> None:
    """Refuse addresses we do not serve, and tcp beyond loopback unless `allow_remote`."""
    if address.startswith("tcp://"):
        host = address[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
        loopback = host == "localhost" or _is_loopback(host)
        if not loopback and not allow_remote:
            raise EngineServerError(
                f"refusing to listen on {host}: only loopback is safe; forward the socket over SSH, "
                "or pass --allow-remote if you really mean to expose the engine")
        if not loopback:
            print(f"warning: engine reachable from the network on {address}; anyone with the "
                  "token can drive it", file=sys.stderr)
    elif not address.startswith("ipc://"):
        raise EngineServerError(f"unsupported address {address!r}: use ipc://PATH or tcp://127.0.0.1:PORT")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ListenFiles:
    """The socket file and the token file of one engine."""

    def __init__(self, address: str, context: zmq.Context):
        self.address = address
        self._ctx = context

    def prepare(self) -> None:
        """Before binding: a private folder, and the socket path free."""
        sock = ipc_path(self.address)
        if sock is not None:
            make_private_dir(sock.parent)
            if sock.exists():
                self._remove_if_dead(sock)

    def claim(self) -> str:
        """After binding: write a fresh token; the token."""
        token, _ = write_token(self.address)
        return token

    def remove(self) -> None:
        sock = ipc_path(self.address)
        if sock is not None:
            sock.unlink(missing_ok=True)
        token_path(self.address).unlink(missing_ok=True)

    def _remove_if_dead(self, path: Path) -> None:
        probe = self._ctx.socket(zmq.DEALER)
        probe.setsockopt(zmq.LINGER, 0)
        try:
            probe.connect(f"ipc://{path}")
            probe.send_multipart(encode(Heartbeat()), zmq.NOBLOCK)
            alive = probe.poll(PROBE_MS)
        except zmq.ZMQError:
            alive = False
        finally:
            probe.close(0)
        if alive:
            raise EngineServerError(f"an engine is already serving ipc://{path}: stop it or choose "
                                    "another --socket")
        path.unlink(missing_ok=True)
