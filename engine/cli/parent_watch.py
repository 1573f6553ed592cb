"""Stop a child engine once the program that started it is gone.

A studio that crashes or is killed cannot stop its engine, which would keep its socket (and,
for flashtalk, its GPUs) for nobody. The studio passes its pid with `serve --parent-pid`; the
engine then stops itself, cleanly, the way SIGTERM stops it.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

PERIOD_S = 0.5


def _gone_check(pid: int):
    """A direct child watches its parent id (this also sees a parent that died but was never
    reaped); an indirect one (rank 0 under torchrun) asks whether the process still exists."""
    if os.getppid() == pid:
        return lambda: os.getppid() != pid

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # it exists, owned by someone else
            return False
        return False
    return gone


def watch_parent(pid: int, period_s: float = PERIOD_S) -> threading.Thread | None:
    """SIGTERM this process once `pid` is gone; None where it cannot be watched (not POSIX)."""
    if os.name != "posix":
        return None
    gone = _gone_check(pid)

    def run() -> None:
        while not gone():
            time.sleep(period_s)
        os.kill(os.getpid(), signal.SIGTERM)
        try:  # stderr is often a pipe to the program that just died
            print(f"the program that started this engine (pid {pid}) is gone: stopping", file=sys.stderr,
                  flush=True)
        except OSError:
            pass

    thread = threading.Thread(target=run, name="parent-watch", daemon=True)
    thread.start()
    return thread
