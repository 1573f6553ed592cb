"""Seconds as people read a player's clock: 0:07, 12:34, 1:02:03."""
from __future__ import annotations


def clock_text(seconds: float) -> str:
    s = int(max(seconds, 0.0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
