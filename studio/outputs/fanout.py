"""The one point where generated frames + their audio leave the session: every output plugs in here.

Outputs get chunks in timeline order as they arrive (not at presentation time), so a recording
holds every frame even when the preview had to skip some. Outputs that a person watches live
beside the voice (`follows_display`: the virtual camera) get each frame when the preview shows
it instead, so they stay in sync with the audio that is heard.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Output(Protocol):
    name: str

    def write(self, frames: np.ndarray, audio: np.ndarray) -> None:
        """frames [N, H, W, 3] uint8 and the audio they show, float32 [N * 640] at 16 kHz."""

    def close(self, on_closed) -> None:
        """Finish (off the UI thread); on_closed(error_message_or_empty) when done."""


class DisplayOutput(Protocol):
    name: str
    follows_display: bool  # True

    def show(self, index: int, frame: np.ndarray) -> None:
        """Frame `index` (uint8 RGB [H, W, 3]) is presented now (called on the UI thread, must not block)."""

    def close(self, on_closed) -> None:
        """As Output.close."""


def _follows_display(output) -> bool:
    return bool(getattr(output, "follows_display", False))


class OutputFanout:
    def __init__(self):
        self._outputs: list[Output | DisplayOutput] = []
        self.errors: list[str] = []

    def add(self, output: Output | DisplayOutput) -> None:
        self._outputs.append(output)

    def remove(self, output: Output | DisplayOutput) -> bool:
        """Take one output out (the caller closes it); False when it was not plugged in."""
        if output in self._outputs:
            self._outputs.remove(output)
            return True
        return False

    @property
    def outputs(self) -> list[Output | DisplayOutput]:
        return list(self._outputs)

    def write(self, frames: np.ndarray, audio: np.ndarray) -> None:
        for out in self._outputs:
            if not _follows_display(out):
                out.write(frames, audio)

    def show(self, index: int, frame: np.ndarray) -> None:
        """The preview presents frame `index` now: display-following outputs send it too."""
        for out in self._outputs:
            if _follows_display(out):
                out.show(index, frame)

    def close_all(self, on_all_closed) -> None:
        """Close every output; on_all_closed(errors) once all have finished (any thread)."""
        pending = list(self._outputs)
        self._outputs.clear()
        if not pending:
            on_all_closed([])
            return
        left = [len(pending)]

        def closed(error: str) -> None:
            if error:
                self.errors.append(error)
            left[0] -= 1
            if left[0] == 0:
                on_all_closed(list(self.errors))

        for out in pending:
            out.close(closed)
