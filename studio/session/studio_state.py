"""What the studio's session is doing, as the video view and the summary bar say it."""
from __future__ import annotations

from enum import StrEnum


class StudioState(StrEnum):
    NO_ENGINE = "no engine"
    WAITING_FOR_PORTRAIT = "waiting for a portrait"  # no portrait yet, or the engine refused it
    OPENING = "opening"  # the engine prepares the portrait
    LIVE = "live"
    CATCHING_UP = "catching up"  # the playout ran dry and waits to refill
    ENDED = "ended"  # the engine ended the session and its last frame was shown
    SESSION_FAILED = "session failed"
    ENGINE_RESTARTING = "engine restarting"
    RECONNECTING = "reconnecting"  # to an attached engine
