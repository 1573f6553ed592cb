"""Whether this session has a screen for the studio window (asked before Qt starts)."""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping

DISPLAY_VARIABLES = ("WAYLAND_DISPLAY", "DISPLAY")
NO_DISPLAY_FIX = ("run it in a desktop session (or over ssh -X), or set QT_QPA_PLATFORM=offscreen for a "
                  "headless run")


def display_variables(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The display variables that are set, as "NAME=value"."""
    return [f"{name}={environ[name]}" for name in DISPLAY_VARIABLES if environ.get(name)]


def has_display(environ: Mapping[str, str] = os.environ, platform: str = sys.platform) -> bool:
    """Only Linux can lack one: a Windows or macOS user session always has a screen."""
    return not platform.startswith("linux") or bool(display_variables(environ))
