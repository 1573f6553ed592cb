"""The verdicts both doctors print: `flashtalk doctor` (the engine's machine) and
`flashtalk-studio --doctor` (the desktop's microphone, cameras, speech, display).

One shape for both, as text lines and as JSON, so a script reads either the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

OK, WARNING, PROBLEM = "ok", "warning", "problem"
NAME_WIDTH = 15
STATUS_WIDTH = 8


@dataclass
class CheckResult:
    name: str
    status: str  # OK | WARNING | PROBLEM
    detail: str
    fix: str = ""  # the one command (or step) that fixes it; empty when nothing needs fixing


def check_lines(results: list[CheckResult]) -> list[str]:
    """One line per check, and a `fix:` line under each one that is not ok."""
    lines = []
    for r in results:
        lines.append(f"  {r.status:<{STATUS_WIDTH}} {r.name:<{NAME_WIDTH}} {r.detail}")
        if r.fix and r.status != OK:
            lines.append(f"  {'':<{STATUS_WIDTH}} {'':<{NAME_WIDTH}} fix: {r.fix}")
    return lines
