"""Problems the user has to act on, kept until they are solved or dismissed.

A status-bar line vanishes after seconds and is cut off at the window's edge; a problem stays in
the problems panel, in plain words, with the commands that fix it ready to copy. Each kind of
problem has a key: a new one replaces the old one of the same kind, and solving it (the virtual
camera opens, a file loads) takes it away.
"""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal


@dataclass(frozen=True)
class Problem:
    key: str  # its kind, e.g. "virtual_camera", "audio_file", "engine"
    text: str  # what happened, in the user's words (a sentence or two)
    fix: str = ""  # what to do about it, in words
    commands: tuple[str, ...] = ()  # shell commands that fix it, each copied on its own
    detail: str = ""  # what the failing part said, for a bug report (shown on demand)


class ProblemsModel(QObject):
    changed = Signal(object)  # list[Problem], oldest first

    def __init__(self):
        super().__init__()
        self._problems: dict[str, Problem] = {}

    @property
    def problems(self) -> list[Problem]:
        return list(self._problems.values())

    def get(self, key: str) -> Problem | None:
        return self._problems.get(key)

    def report(self, problem: Problem) -> None:
        if self._problems.get(problem.key) == problem:
            return
        self._problems.pop(problem.key, None)
        self._problems[problem.key] = problem
        self.changed.emit(self.problems)

    def solve(self, key: str) -> None:
        """The problem of this kind is gone (or the user dismissed it)."""
        if self._problems.pop(key, None) is not None:
            self.changed.emit(self.problems)
