"""The studio's one state, as every part of the window shows it: the preview's overlay, the
summary line, the engine panel and the Start button all render the same `StudioStatus`."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class StudioState(StrEnum):
    STOPPED = "stopped"  # no engine: not started yet, or stopped by the user
    STARTING = "starting"  # the engine process starts, or the studio connects to a remote one
    WARMING_UP = "warming up"  # the engine runs its first silent chunks before it says ready
    READY = "ready"  # the engine runs; no session (no portrait yet, or the last one was refused)
    PREPARING = "preparing"  # the engine prepares the portrait for a session
    RUNNING = "running"  # live: frames arrive and play
    CATCHING_UP = "catching up"  # running, but the playout ran dry and waits to refill
    ENDED = "ended"  # the engine ended the session (a file played to its end) and its last frame was shown
    RESTARTING = "restarting"  # the engine stopped unexpectedly (or the link to it broke): it comes back by itself
    FAILED = "failed"  # the engine or the session cannot go on; `detail` says why and what to do


ACTIVE = (StudioState.RUNNING, StudioState.CATCHING_UP)  # a session plays: the summary shows its numbers


@dataclass(frozen=True)
class StudioStatus:
    state: StudioState
    detail: str = ""  # one line: what is going on, or for FAILED the reason

    @property
    def text(self) -> str:
        """"failed: the engine refused its options: ..." / "starting: starting the puppet engine"."""
        return f"{self.state}: {self.detail}" if self.detail else str(self.state)

    @property
    def overlay(self) -> str:
        """What the preview writes over the picture ("" while frames play)."""
        return "" if self.state is StudioState.RUNNING else self.text

    @property
    def engine_running(self) -> bool:
        """An engine is wanted and not failed: the Start button reads "Stop"."""
        return self.state not in (StudioState.STOPPED, StudioState.FAILED)
