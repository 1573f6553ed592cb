"""Where an engine listens and where its auth token lives.

The token is a random secret in a 0600 file inside a 0700 folder beside the socket: whoever can
read it may drive the avatar, nobody else can.
"""
from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path

DEFAULT_TCP_PORT = 47600


def runtime_dir() -> Path:
    """Per-user private folder for sockets and tokens."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        folder = Path(base) / "flashtalk"
    else:
        uid = os.getuid() if hasattr(os, "getuid") else os.getlogin()
        folder = Path(tempfile.gettempdir()) / f"flashtalk-{uid}"
    return folder


def default_address() -> str:
    if sys.platform == "win32":
        return f"tcp://127.0.0.1:{DEFAULT_TCP_PORT}"
    return f"ipc://{runtime_dir() / 'engine.sock'}"


def ipc_path(address: str) -> Path | None:
    return Path(address[len("ipc://"):]) if address.startswith("ipc://") else None


def token_path(address: str) -> Path:
    """The token file of an address: `<socket>.token` for ipc, a per-port file for tcp."""
    sock = ipc_path(address)
    if sock is not None:
        return sock.with_name(sock.name + ".token")
    if address.startswith("tcp://"):
        host_port = address[len("tcp://"):].replace(":", "-").replace("*", "any")
        return runtime_dir() / f"tcp-{host_port}.token"
    raise ValueError(f"unsupported engine address {address!r}: use ipc://PATH or tcp://HOST:PORT")


def make_private_dir(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)


def write_token(address: str) -> tuple[str, Path]:
    """Create a fresh token file (0600, created atomically with that mode)."""
    path = token_path(address)
    make_private_dir(path.parent)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.replace(tmp, path)
    return token, path


def read_token(address: str, token_file: str | Path | None = None) -> str:
    path = Path(token_file) if token_file else token_path(address)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no token file at {path}: is an engine serving {address}? "
            "Start one with `flashtalk serve`, or pass --token-file") from None
