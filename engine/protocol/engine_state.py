"""The states of an engine as the studio shows them, and the lines `flashtalk serve` prints to say so.

`serve` prints `ready ADDR` on stdout once it accepts clients; a backend that warms up prints
`warming up ...` on stderr before that. A supervisor (the studio's) reads those lines; a script
may too.
"""
from __future__ import annotations

from enum import StrEnum


class EngineState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"  # the child engine process is starting
    WARMING_UP = "warming up"  # it runs its first silent chunks before it says ready
    READY = "ready"  # it accepts clients
    CONNECTING = "connecting"  # to an engine running elsewhere (attach)
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    RESTARTING = "restarting"  # the child engine stopped unexpectedly; it is started again after a pause
    FAILED = "failed"  # it cannot start: restarting would fail the same way


READY_PREFIX = "ready "
WARMING_UP_PREFIX = "warming up"
WARMING_UP_LINE = f"{WARMING_UP_PREFIX} (two silent chunks, then one measured chunk per quality profile size)"


def ready_line(address: str) -> str:
    """What `serve` prints on stdout once clients can connect to `address`."""
    return f"{READY_PREFIX}{address}"


def ready_address(line: str) -> str | None:
    """The address of a `ready ADDR` line; None for any other line."""
    if not line.startswith(READY_PREFIX):
        return None
    return line[len(READY_PREFIX):].strip() or None


def is_warming_up(line: str) -> bool:
    return line.startswith(WARMING_UP_PREFIX)
