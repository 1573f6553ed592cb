"""Where an engine listens, where its auth token lives, and which of those files may be trusted.

The token is a random secret in a 0600 file: whoever can read it may drive the avatar. A folder
that another local user owns or may write to could hand a client that user's token and socket (the
portrait and the voice would go to them) or let them swap the engine's socket for their own, so the
engine and its clients check every folder and file before they write or trust one, and refuse with
one line. The default folder (`runtime_dir()`) must be a 0700 folder of our own; a folder named by
`--socket` must at least be one that nobody else can change (ours or root's, and writable by others
only with the sticky bit, like /tmp).
"""
from __future__ import annotations

import os
import secrets
import stat
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

DEFAULT_TCP_PORT = 47600
PRIVATE_DIR_MODE = 0o700
TOKEN_FILE_MODE = 0o600


class UntrustedPath(PermissionError):
    """A folder, token or socket another local user could control; str() is one line."""


def runtime_dir() -> Path:
    """Per-user private folder for sockets and tokens (a path only: see `make_private_dir`)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        return Path(base) / "flashtalk"
    uid = os.getuid() if hasattr(os, "getuid") else os.getlogin()
    return Path(tempfile.gettempdir()) / f"flashtalk-{uid}"


def default_address() -> str:
    if sys.platform == "win32":
        return f"tcp://127.0.0.1:{DEFAULT_TCP_PORT}"
    return f"ipc://{runtime_dir() / 'engine.sock'}"


def is_abstract(address: str) -> bool:
    """`ipc://@name`: a Linux abstract socket, with no file and reachable by every local user."""
    return address.startswith("ipc://@")


def ipc_path(address: str) -> Path | None:
    """The socket file of an ipc address; None for tcp and for abstract sockets (no file)."""
    if not address.startswith("ipc://") or is_abstract(address):
        return None
    return Path(address[len("ipc://"):])


def token_path(address: str) -> Path:
    """`<socket>.token` beside an ipc socket file; in `runtime_dir()` for tcp and abstract sockets."""
    sock = ipc_path(address)
    if sock is not None:
        return sock.with_name(sock.name + ".token")
    if is_abstract(address):
        return runtime_dir() / f"abstract-{quote(address[len('ipc://@'):], safe='')}.token"
    if address.startswith("tcp://"):
        host_port = address[len("tcp://"):].replace(":", "-").replace("*", "any")
        return runtime_dir() / f"tcp-{host_port}.token"
    raise ValueError(f"unsupported engine address {address!r}: use ipc://PATH or tcp://HOST:PORT")


# -- checks ----------------------------------------------------------------------------------------

def _mode(st: os.stat_result) -> str:
    return f"mode {stat.S_IMODE(st.st_mode):o}"


def check_private_dir(folder: Path) -> None:
    """`folder` is a real folder (no link), ours, that nobody else can enter."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        raise UntrustedPath(f"{folder} does not exist: start the engine first") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UntrustedPath(f"{folder} is not a folder: remove it, or set XDG_RUNTIME_DIR to a private folder")
    if os.name == "posix" and (st.st_uid != os.geteuid() or st.st_mode & 0o077):
        raise UntrustedPath(f"{folder} is not a private folder of yours (owner uid {st.st_uid}, {_mode(st)}): "
                            "another user may be posing as the engine; remove it, or set XDG_RUNTIME_DIR "
                            "to a private folder")


def check_trusted_dir(folder: Path) -> None:
    """Nobody but us (and root) can rename or replace what we put in `folder`."""
    if os.name != "posix":
        return
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        raise UntrustedPath(f"{folder} does not exist") from None
    foreign = st.st_uid not in (0, os.geteuid())
    shared = st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX
    if foreign or shared:
        why = f"it belongs to uid {st.st_uid}" if foreign else f"other users may write there ({_mode(st)})"
        raise UntrustedPath(f"refusing {folder}: {why}, so another user could swap the engine's socket "
                            "or token; choose a --socket in a folder of your own")


def check_engine_folder(folder: Path) -> None:
    """The folder of a socket or token: our private one if it is `runtime_dir()`, else trusted."""
    if folder == runtime_dir():
        check_private_dir(folder)
    else:
        check_trusted_dir(folder)


def make_private_dir(folder: Path) -> None:
    """Create `folder` as our own 0700 folder, or check that the one already there is exactly that.

    Created exclusively and never chmod-ed: a folder another user made first is refused, not adopted.
    """
    try:
        os.mkdir(folder, PRIVATE_DIR_MODE)
    except FileExistsError:
        pass
    except FileNotFoundError:  # a missing parent: new folders all the way down
        os.makedirs(folder.parent, exist_ok=True)
        os.mkdir(folder, PRIVATE_DIR_MODE)
    check_private_dir(folder)


def prepare_engine_folder(folder: Path) -> None:
    """Before the engine writes there: the runtime folder, or a missing one, becomes a private folder
    of ours; a folder the user already has is used as it is (never chmod-ed), if it can be trusted."""
    if folder == runtime_dir() or not os.path.lexists(folder):
        make_private_dir(folder)
    else:
        check_trusted_dir(folder)


def check_owned_socket(path: Path) -> bool:
    """True when a socket of ours sits at `path`, False when nothing does; anything else is refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(st.st_mode):
        raise UntrustedPath(f"{path} exists and is not a socket, so no engine listens there: use another "
                            "socket path")
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise UntrustedPath(f"the socket {path} belongs to another user (uid {st.st_uid}), who may be "
                            "posing as the engine: use a socket path in a folder of your own")
    return True


# -- the token -------------------------------------------------------------------------------------

def new_token() -> str:
    """A fresh secret for one engine's lifetime (made before it binds: its handshake checks it)."""
    return secrets.token_urlsafe(32)


def write_token(address: str, token: str) -> Path:
    """Write `token` to the address's token file (0600, created exclusively with that mode, then
    moved in place); on any failure nothing of it is left behind."""
    path = token_path(address)
    prepare_engine_folder(path.parent)
    # A name nobody can guess: a stale file (a crashed engine that had our pid) or a link planted
    # there never collides with it, and O_EXCL | O_NOFOLLOW would refuse one anyway.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), TOKEN_FILE_MODE)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")  # a full disk fails here (at close): the half-made file goes
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_token(address: str, token_file: str | Path | None = None) -> str:
    """The engine's token, once its folder and file prove to be ours and private."""
    path = Path(token_file) if token_file else token_path(address)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no token file at {path}: is an engine serving {address}? "
            "Start one with `flashtalk serve`, or pass --token-file") from None
    except OSError as exc:  # ELOOP: a symbolic link, which anyone could have pointed anywhere
        raise UntrustedPath(f"refusing the token file {path}: {exc.strerror}") from None
    with os.fdopen(fd) as fh:
        st = os.fstat(fh.fileno())
        if os.name == "posix":
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                raise UntrustedPath(f"refusing the token file {path}: it belongs to uid {st.st_uid}, not "
                                    "you; another user may be posing as the engine")
            if st.st_mode & 0o077:
                raise UntrustedPath(f"refusing the token file {path}: others may read it ({_mode(st)}); "
                                    "restart the engine for a fresh one")
            check_engine_folder(path.parent)
        return fh.read().strip()
