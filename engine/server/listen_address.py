"""Where the engine listens: the address checks, and the files it puts there (socket, token).

Nothing already at the socket path is touched unless it provably is a dead socket of ours (a
socket, owned by us, and nobody answers a probe). Folders the user already has are used as they
are, never chmod-ed; the runtime folder and any folder we have to create are private folders of
our own (engine.protocol.address). At shutdown only the files this engine made are removed,
recognised by their inode: an engine that took over a path meanwhile keeps its own.
"""
from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

import zmq

from avkit.disk_space import DISK_FULL_ERRNOS
from engine.protocol.address import (
    UntrustedPath,
    check_owned_socket,
    ipc_path,
    prepare_engine_folder,
    token_path,
    write_token,
)
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


def listen_error(what: str, exc: OSError | zmq.ZMQError) -> EngineServerError:
    """One line for a failure to make the socket or the token file; a full disk says what to do."""
    reason = zmq.strerror(exc.errno) if isinstance(exc, zmq.ZMQError) else exc.strerror
    if exc.errno in DISK_FULL_ERRNOS:
        return EngineServerError(f"the disk is full: cannot {what} ({reason}); free some disk space "
                                 "or choose a --socket on another file system")
    return EngineServerError(f"cannot {what}: {reason}")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class ListenFiles:
    """The socket file and the token file of one engine: made safely, removed only if still ours."""

    def __init__(self, address: str, context: zmq.Context):
        self.address = address
        self._ctx = context
        self._made: dict[Path, tuple[int, int] | None] = {}

    def prepare(self) -> None:
        """Before binding: a folder we may write in, and the socket path free."""
        sock = ipc_path(self.address)
        folder = (sock or token_path(self.address)).parent  # tcp and abstract sockets: the runtime folder
        try:
            prepare_engine_folder(folder)
            if sock is not None and check_owned_socket(sock):
                self._remove_if_dead(sock)
        except UntrustedPath as exc:
            raise EngineServerError(str(exc)) from None
        except OSError as exc:
            raise EngineServerError(f"cannot use {folder} for the engine's socket: {exc.strerror}") from None

    def claim(self) -> str:
        """After binding: remember our socket, write a fresh token; the token."""
        sock = ipc_path(self.address)
        if sock is not None:
            self._made[sock] = _file_id(sock)
        try:
            token, path = write_token(self.address)
        except UntrustedPath as exc:
            raise EngineServerError(str(exc)) from None
        except OSError as exc:
            raise listen_error(f"write the token file {token_path(self.address)}", exc) from None
        self._made[path] = _file_id(path)
        return token

    def remove(self) -> None:
        for path, made in self._made.items():
            if made is not None and _file_id(path) == made:
                path.unlink(missing_ok=True)
        self._made.clear()

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
