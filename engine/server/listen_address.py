"""Where the engine listens: the address checks, and the files it puts there (socket, token).

Nothing already at the socket path is touched unless it provably is a dead socket of ours (a
socket, owned by us, and the kernel refuses a connection to it: nobody listens). Folders the user
already has are used as they are, never chmod-ed; the runtime folder and any folder we have to
create are private folders of our own (engine.protocol.address). At shutdown only the files this
engine made are removed, recognised by their inode: an engine that took over a path meanwhile
keeps its own.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import socket
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

PROBE_S = 0.3  # a live engine's kernel takes a connection to its socket well within this


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

    def __init__(self, address: str):
        self.address = address
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

    def claim(self, token: str) -> None:
        """After binding: remember our socket, write the token file."""
        sock = ipc_path(self.address)
        if sock is not None:
            self._made[sock] = _file_id(sock)
        try:
            path = write_token(self.address, token)
        except UntrustedPath as exc:
            raise EngineServerError(str(exc)) from None
        except OSError as exc:
            raise listen_error(f"write the token file {token_path(self.address)}", exc) from None
        self._made[path] = _file_id(path)

    def remove(self) -> None:
        for path, made in self._made.items():
            if made is not None and _file_id(path) == made:
                path.unlink(missing_ok=True)
        self._made.clear()

    def _remove_if_dead(self, path: Path) -> None:
        """A plain connection to the socket, no ZeroMQ: a live engine's kernel takes it (the engine
        would refuse a ZeroMQ probe without the token in its handshake, and say nothing)."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(PROBE_S)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:  # nobody listens: a socket left by an engine that died
            path.unlink(missing_ok=True)
            return
        except OSError as exc:
            if exc.errno != errno.EAGAIN and not isinstance(exc, TimeoutError):  # a full backlog: alive
                raise EngineServerError(f"cannot tell whether an engine serves ipc://{path} "
                                        f"({exc.strerror}): stop it or choose another --socket") from None
        finally:
            probe.close()
        raise EngineServerError(f"an engine is already serving ipc://{path}: stop it or choose "
                                "another --socket")
